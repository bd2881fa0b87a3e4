"""Where a sanic-realtime server spends its time during fan-out bursts (py-spy).

Runs ``bench/fanout.py`` (sanic-realtime and websockets.broadcast, K=1 bursts), attaches
``py-spy record --nonblocking`` to the sanic-realtime server process for the whole run,
and prints a summary of the samples: the share of time the event loop was idle, then the
lines with the most self time and the functions with the most inclusive time among the
busy samples. ``--nonblocking`` does not pause the server to sample it, so the profile
costs it little (a sample can then be slightly inconsistent, which does not matter for
shares of a few thousand samples).

Usage (py-spy needs ptrace rights: root, or CAP_SYS_PTRACE):
    python bench/profile.py                         # 5000 clients, 3 timed bursts
    python bench/profile.py --clients 1000 --runs 5 --raw /tmp/profile.txt

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


def find_server(parent: int, timeout: float) -> int:
    """PID of fanout.py's sanic-realtime server (a child of ``parent``)."""
    pid = servers.find_child(parent, (b"--serve", b"sanic-realtime"), timeout)
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
    args = parser.parse_args()
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        raise SystemExit("py-spy is not installed: pip install 'sanic-realtime[bench]'")
    raw = args.raw or tempfile.mkstemp(prefix="profile-", suffix=".txt")[1]
    cmd = [
        sys.executable,
        os.path.join(HERE, "fanout.py"),
        *("--clients", str(args.clients), "--runs", str(args.runs)),
        "--no-ceiling",
        "--no-reference",
    ]
    print("command:", " ".join(["python", "bench/profile.py", *sys.argv[1:]]))
    print("runs:", " ".join(["python", "bench/fanout.py", *cmd[2:]]), flush=True)
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    server = find_server(bench.pid, 120)
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
    table = out[out.find("server   ") :].split("\n\n")[0] if "server   " in out else out[-2000:]
    print("\n" + table + "\n")
    if recorder.returncode not in (0, None) and not os.path.getsize(raw):
        raise SystemExit(f"py-spy failed: {err.strip()[-500:]}")
    print(f"py-spy raw profile of the sanic-realtime server (pid {server}): {raw}")
    summarize(raw, args.top)
    return bench.returncode or 0


if __name__ == "__main__":
    sys.exit(main())
