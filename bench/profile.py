"""Where a sanic-realtime server spends its time during fan-out bursts (py-spy).

Runs ``bench/fanout.py`` (sanic-realtime and websockets.broadcast, K=1 bursts), attaches
``py-spy record --nonblocking`` to the sanic-realtime server process for the whole run,
and prints a summary of the samples: the share of time the event loop was idle, then the
lines with the most self time and the functions with the most inclusive time among the
busy samples. ``--nonblocking`` does not pause the server to sample it, so the profile
costs it little (a sample can then be slightly inconsistent, which does not matter for
shares of a few thousand samples).

``--redis``: runs ``bench/redis_fanout.py --setups redis-1w`` instead (the Redis backplane,
one ``--single-process`` worker: K=1 bursts at ``--concurrency`` C, each followed by its
publish-only loop) and profiles that worker.

Usage (py-spy needs ptrace rights: root, or CAP_SYS_PTRACE):
    python bench/profile.py                         # 5000 clients, 3 timed bursts
    python bench/profile.py --clients 1000 --runs 5 --raw /tmp/profile.txt
    python bench/profile.py --redis --clients 1000 --concurrency 1

The raw file (``--raw``) is py-spy's collapsed-stack format; flamegraph.pl or speedscope
turn it into a picture.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile

from harness import servers

HERE = os.path.dirname(os.path.abspath(__file__))

#: A frame whose self time is the event loop waiting for I/O: uvloop's run_forever is C
#: code, so py-spy attributes its idle time to the Python line that called it.
IDLE_MARKERS = ("_run_server_forever", "run_forever")
#: Frames below which everything runs (the script, Sanic's start-up): not worth listing.
WRAPPERS = (
    "<module>",
    "main",
    "serve_realtime",
    "_run_module_as_main",
    "_run_code",
    "StartupMixin.",
    "worker_serve",
    "_serve_http_1",
    "_run_server_forever",
)


def find_server(parent: int, timeout: float, redis: bool = False) -> int:
    """PID of fanout.py's sanic-realtime server, or of redis_fanout.py's redis-1w worker
    (a child of ``parent``)."""
    words = (
        (b"harness.apps:create_app", b"--single-process")
        if redis
        else (b"--serve", b"sanic-realtime")
    )
    pid = servers.find_child(parent, words, timeout)
    if pid is None:
        raise SystemExit("the sanic-realtime server did not start")
    return pid


def summarize(raw: str, top: int) -> None:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            if any(m in frames[-1] for m in IDLE_MARKERS):
                idle += n
                continue
            self_time[frames[-1]] += n
            for name in {f.split(" (")[0] for f in frames}:
                inclusive[name] += n
    busy = total - idle
    if not busy:
        raise SystemExit("no busy samples: did the bursts run?")
    print(f"samples: {total}; event loop idle (waiting for I/O): {idle / total:.0%}")
    print(f"\nself time, share of the {busy} busy samples (one line each):")
    for frame, n in self_time.most_common(top):
        print(f"  {n / busy:6.1%}  {frame}")
    print("\ninclusive time, share of busy samples (functions):")
    for name, n in inclusive.most_common(top + len(WRAPPERS)):
        if n / busy >= 0.01 and not name.startswith(WRAPPERS):
            print(f"  {n / busy:6.1%}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3, help="timed bursts per server")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--raw", default="", help="keep py-spy's raw output here")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="profile redis_fanout.py's redis-1w worker (the Redis backplane) instead",
    )
    parser.add_argument(
        "--concurrency",
        default="1",
        help="with --redis: redis_fanout.py's --concurrency (default 1)",
    )
    args = parser.parse_args()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        raise SystemExit("py-spy is not installed: pip install 'sanic-realtime[bench]'")
    raw = args.raw or tempfile.mkstemp(prefix="profile-", suffix=".txt")[1]
    script = "redis_fanout.py" if args.redis else "fanout.py"
    cmd = [
        sys.executable,
        os.path.join(HERE, script),
        *("--clients", str(args.clients), "--runs", str(args.runs)),
    ]
    if args.redis:
        cmd += ["--setups", "redis-1w", "--concurrency", args.concurrency, "--steady-rate", "0"]
    else:
        cmd += ["--no-ceiling", "--no-reference"]
    print("command:", " ".join(["python", "bench/profile.py", *sys.argv[1:]]))
    print("runs:", " ".join(["python", f"bench/{script}", *cmd[2:]]), flush=True)
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    server = find_server(bench.pid, 120, args.redis)
    spy_cmd = [spy, "record", "--nonblocking", "-r", str(args.rate), "-f", "raw"]
    recorder = subprocess.Popen(
        [*spy_cmd, "-o", raw, "-p", str(server)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, _ = bench.communicate()
    try:
        _, err = recorder.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        recorder.terminate()
        _, err = recorder.communicate()
    head = "setup   " if args.redis else "server   "
    end = "\nchecks," if args.redis else "\n\n"  # redis_fanout.py: both tables
    table = out[out.find(head) :].split(end)[0] if head in out else out[-2000:]
    print("\n" + table + "\n")
    if recorder.returncode not in (0, None) and not os.path.getsize(raw):
        raise SystemExit(f"py-spy failed: {err.strip()[-500:]}")
    print(f"py-spy raw profile of the sanic-realtime server (pid {server}): {raw}")
    summarize(raw, args.top)
    return bench.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
