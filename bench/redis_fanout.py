"""Fan-out through the Redis backplane (1 and 2 Sanic workers) vs the memory backplane.

What is measured
    The same figure as ``bench/fanout.py``: event deliveries per second to N WebSocket
    clients, ``deliveries/s = E * N / elapsed``, where ``elapsed`` runs from the first
    ``publish`` of a burst of E events (``time.monotonic()`` in the publishing worker)
    until the load generator has counted all E * N frames (its own ``time.monotonic()``;
    CLOCK_MONOTONIC is one clock for every process on Linux). Each row is the median of
    ``--runs`` (default 3) timed bursts, with min..max, and for the Redis rows its ratio
    to the memory row measured in the same run. The rows (``--setups``):

    memory       sanic-realtime with the memory backplane, one process (``--single-process``),
                 pinned to CPU 0: the row of ``bench/fanout.py``.
    redis-1w     the Redis backplane, one process (``--single-process``), pinned to CPU 0.
                 Each ``publish`` runs one Lua script in Redis (offset, XADD to the
                 channel's stream, PUBLISH), awaits its reply, then delivers the event to
                 its own clients; its pub/sub copy comes back and is dropped as a
                 duplicate.
    redis-2w     the Redis backplane, 2 workers (``--workers 2``), NOT pinned: the workers
                 may use both CPUs (the load generator is pinned to CPU 1). The kernel
                 spreads the N connections over the workers as it likes (the output says
                 how many each got). The burst request lands on one worker, which
                 publishes and delivers to its own clients; the other worker gets every
                 event through Redis pub/sub and delivers it to its clients. All N clients
                 must get every event.
    redis-2w-cpu0  the same 2 workers, both pinned to CPU 0: the cost of splitting the
                 fan-out over two processes without a second CPU to run them.

    ``publish only``: after each timed burst, the same worker-side loop publishes
    ``--publish-events`` events to a channel nobody subscribes to (``idle``), so each
    publish is only the Redis round trip (memory: only the history append): events/s of
    the publishing loop. ``evalsha us/call`` is Redis's own execution time of the script
    (delta of ``INFO commandstats`` over that loop; it counts every client of this Redis).

Servers
    Every row is a real server in its own subprocess and session, started with the Sanic
    CLI: ``python -m sanic harness.apps:create_app --factory --host 127.0.0.1 --port P
    --no-access-logs --no-motd`` plus ``--single-process`` or ``--workers 2``; Sanic picks
    uvloop. The factory reads ``BENCH_BACKPLANE`` (``memory`` or a Redis URL),
    ``BENCH_PREFIX`` and ``BENCH_BUFFER`` from the environment and builds ``Sanic`` +
    ``Realtime(parse_config({...}))`` with channels ``bench`` and ``idle``,
    ``buffer_size`` = max(4096, 2E), ``slow_client: disconnect``, default history (1000
    events, 600 s), and the route ``POST /bench/burst?events=E&yield_every=K[&channel=c]``,
    which runs ``await rt.publish(c, "tick", {"seq": i, "payload": "x" * 150})`` E times
    in the worker that got the request (the same loop as in ``bench/fanout.py``). Each
    Redis server gets its own key prefix ``bench-<random>-<setup>``; every key under
    ``bench-<random>`` is deleted at the end (SCAN + DEL).

Load generator (this process, pinned to CPU 1)
    ``bench/fanout.py``'s (``bench/harness/loadgen.py``): one raw ``asyncio.Protocol`` per
    connection on uvloop that parses frame headers only. After
    the clients are connected, each client is mapped to the worker process that holds its
    server-side socket (``/proc/net/tcp`` + ``/proc/<pid>/fd``); the per-worker counts are
    checked against ``/admin/ws/stats`` ``by_worker``. Per worker, one client (the lowest
    index) decodes every frame and checks that the ``seq`` values of each burst arrive
    complete and in order and that the event ids are one epoch with consecutive offsets.
    Frames are also counted per worker, to give the time at which each worker's clients
    had everything (``done``). After each burst every client's count must equal ``1 +
    events published so far`` and the publishing worker's ``recipients`` must equal E x its
    clients. At the end: lost/extra frames, close frames, lost connections,
    ``messages_dropped`` / ``slow_disconnects`` from ``/admin/ws/stats``, each reachable
    worker's ``recovered_from_stream`` (``/ws/health``), and the warnings and errors in
    the servers' output.

Procedure
    All servers start side by side and get their N clients; for each K: one untimed
    warm-up burst of E/4 events per server, then ``--runs`` rounds in which each server
    gets one timed burst (and one publish-only loop), in an order rotated each round; the
    others are idle. E = ``--deliveries / N`` (default 1,000,000 / N).

Columns
    ``loop`` = the publishing loop (first publish to return), ``lag`` = last frame counted
    - end of that loop. ``srv%`` = CPU time (user+sys, from ``/proc/<pid>/stat``) of all
    the server's processes during the timed window / window (up to 200% with 2 workers).
    ``redis%`` = redis-server's CPU (``INFO cpu``) over the window: the whole server, so
    other clients of the same Redis would be counted too. ``gen%`` = the load generator.
    ``RSS MB`` = each worker's peak RSS (VmHWM) after the row's runs.

Caveats
    Loopback, one 2-CPU machine: redis-server (not pinned by this bench), the servers and
    the load generator share the CPUs, so the 2-worker row does not get a CPU per worker.
    With K=0 the memory backplane coalesces a whole burst into one write per connection;
    the Redis backplane awaits Redis at every publish, so it yields at every event anyway
    and does not coalesce: compare K=1 rows. See ``bench/fanout.py`` for the caveats of
    the method itself.

Usage
    python bench/redis_fanout.py                # 1000 clients, K=1, all four rows (~1.5 min)
    python bench/redis_fanout.py --setups memory,redis-1w,redis-2w --runs 5
    python bench/redis_fanout.py --quick        # 200 clients, 100k deliveries per burst
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness import args as options
from harness import report, runner, servers
from harness.report import Col
from harness.runner import Row
from harness.servers import RedisProbe, Server
from harness.target import Run, Target

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    redis: bool
    workers: int
    #: "server" = CPU 0 (like bench/fanout.py), "all" = every CPU.
    placement: str

    def cpus(self) -> set[int] | None:
        if not servers.can_pin():
            return None
        n = os.cpu_count() or 1
        return {servers.SERVER_CPU} if self.placement == "server" else set(range(n))

    def describe(self) -> str:
        cpus = self.cpus()
        where = "not pinned" if cpus is None else "CPUs " + ",".join(map(str, sorted(cpus)))
        mode = "--single-process" if self.workers == 1 else f"--workers {self.workers}"
        backplane = "redis" if self.redis else "memory"
        return f"{self.label}: {backplane} backplane, {mode}, {where}"


SETUPS = {
    s.name: s
    for s in (
        Setup("memory", "memory, 1 process", False, 1, "server"),
        Setup("redis-1w", "redis, 1 worker", True, 1, "server"),
        Setup("redis-2w", "redis, 2 workers", True, 2, "all"),
        Setup("redis-2w-cpu0", "redis, 2 workers, CPU0", True, 2, "server"),
    )
}
DEFAULT_SETUPS = list(SETUPS)

LEGEND = "\n".join(
    (
        report.DELIVERIES,
        "vs memory = this row's median / the memory row's median (same run)",
        "elapsed, loop, lag, srv%, redis%, gen% = medians; loop = the publishing worker's loop, "
        "first publish to return;",
        "  lag = last frame counted - end of that loop; srv% = all the server's processes "
        "(2 workers: up to 200%)",
        "clients/worker = connections per worker process (from /proc); RSS MB = each worker's "
        "peak RSS (VmHWM)",
        "done s (per run) = first publish -> last frame of the publishing worker's clients / of "
        "the other worker's",
        "fan-out: events/s = events / loop (the publishing worker); srv CPU us/event = CPU of "
        "all the server's processes",
        "  during the timed window / events",
        "publish only = the same loop on a channel without subscribers: events/s (memory: "
        "history append only;",
        "  redis: one EVALSHA round trip per event), and the server's CPU per event (/proc, "
        "10 ms ticks)",
        "evalsha us/call = Redis's own time per script call (INFO commandstats)",
    )
)


def make_target(
    setup: Setup,
    clients: int,
    buffer_size: int,
    args: argparse.Namespace,
    prefix: str,
    probe: RedisProbe | None,
) -> Target:
    env = {
        "BENCH_BACKPLANE": args.redis_url if setup.redis else "memory",
        "BENCH_PREFIX": prefix,
        "BENCH_BUFFER": str(buffer_size),
    }
    return Target(
        Server.cli(setup.label, setup.workers, setup.cpus(), env),
        clients,
        timeout=args.timeout,
        buffer_size=buffer_size,
        title=setup.label,
        per_worker=True,
        workers=setup.workers,
        check_ids=True,
        probe=probe,
        redis=setup.redis,
    )


async def bench_clients(
    clients: int,
    args: argparse.Namespace,
    rows: list[Row],
    targets: list[Target],
    prefix: str,
    probe: RedisProbe | None,
) -> None:
    events = options.events_for(args, clients)
    buffer_size = options.buffer_for(args, events)
    started = [
        make_target(SETUPS[n], clients, buffer_size, args, f"{prefix}-{n}-{clients}", probe)
        for n in args.setups
    ]

    async def publish_only(row: Row, target: Target, run: Run) -> None:
        try:
            await target.publish_only(args.publish_events, row.yield_every, run)
        except Exception as e:
            raise RuntimeError(f"publish only: {e!r}") from e

    def note(run: Run) -> str:
        evalsha = f", evalsha {run.evalsha_us:.1f} us/call" if run.evalsha_us is not None else ""
        return f" | publish only {run.publish_only:,.0f} events/s{evalsha}"

    async with runner.serving(started, targets):
        for t in started:
            if not t.problems:
                sizes = ", ".join(f"pid {pid}: {g.size}" for pid, g in sorted(t.groups.items()))
                print(f"  {t.label:<24} N={clients}: clients per worker process: {sizes}")
        for every in args.yield_every:
            block = [Row(n, SETUPS[n].label, clients, events, every) for n in args.setups]
            rows.extend(block)
            pairs = list(zip(block, started, strict=True))
            await runner.measure(pairs, args.runs, after=publish_only, note=note)
            for row, t in pairs:
                row.rss_kb = t.peak_rss_kb()
                row.per_worker = sorted((g.size for g in t.groups.values()), reverse=True)


def _base(rows: list[Row], r: Row) -> Row | None:
    """The memory row of the same client count and K."""
    return next(
        (
            b
            for b in rows
            if b.key == "memory" and b.clients == r.clients and b.yield_every == r.yield_every
        ),
        None,
    )


def _median(r: Row, value: Callable[[Run], float]) -> float:
    return statistics.median(value(x) for x in r.runs)


def print_report(rows: list[Row], targets: list[Target]) -> None:
    report.event_loops(targets)
    print()

    def vs_memory(r: Row) -> str:
        base = _base(rows, r)
        return report.ratio(r.median, base.median if base else None) if r.runs else ""

    report.table(
        [
            report.label_col("setup", 25),
            Col("clients", 7, lambda r: str(r.clients)),
            Col("events", 7, lambda r: str(r.events)),
            Col("K", 3, lambda r: r.k),
            *report.rate_cols(21),
            Col("vs memory", 10, vs_memory),
            dataclasses.replace(report.ELAPSED, width=9),
            report.LOOP,
            report.lag_col(7),
            report.SRV,
            report.REDIS,
            report.GEN,
            Col("clients/worker", 15, lambda r: "+".join(map(str, r.per_worker)) or "?", True, 2),
            report.rss_col("RSS MB", 8),
        ],
        rows,
    )
    print()

    def evalsha(r: Row) -> str:
        us = [x.evalsha_us for x in r.runs if x.evalsha_us is not None]
        return f"{statistics.median(us):.1f}" if us else "-"

    report.table(
        [
            report.label_col("publishing loop", 25),
            Col("clients", 7, lambda r: str(r.clients)),
            Col("K", 3, lambda r: r.k),
            Col(
                "fan-out: events/s",
                18,
                lambda r: f"{_median(r, lambda x: r.events / x.publish):,.0f}",
            ),
            Col(
                "srv CPU us/event",
                18,
                lambda r: f"{_median(r, lambda x: x.srv_cpu * x.elapsed / r.events * 1e6):,.0f}",
            ),
            Col(
                "publish only: events/s",
                24,
                lambda r: f"{_median(r, lambda x: x.publish_only):,.0f}",
            ),
            Col("min..max", 19, lambda r: report.spread([x.publish_only for x in r.runs]), True, 2),
            Col(
                "srv CPU us/event",
                17,
                lambda r: f"{_median(r, lambda x: x.publish_only_cpu_us):,.0f}",
            ),
            Col("evalsha us/call", 16, evalsha),
        ],
        [r for r in rows if r.runs],
    )
    print()
    report.checks(targets, rows, title="checks, per server (all its bursts):")
    print()
    print(LEGEND)


async def orchestrate(args: argparse.Namespace) -> int:
    pinned = servers.pin_generator()
    t0 = time.monotonic()
    prefix = f"bench-{secrets.token_hex(4)}"
    source = report.header(
        "fan-out through the Redis backplane vs the memory backplane",
        packages=("redis", "hiredis"),
        pinning=f"load generator on CPU {servers.GENERATOR_CPU}"
        if pinned
        else "NOT pinned (needs 2 CPUs and sched_setaffinity)",
    )
    probe: RedisProbe | None = None
    if any(SETUPS[s].redis for s in args.setups):
        probe = RedisProbe(args.redis_url)
        try:
            info = await probe.server()
        except Exception as e:
            print(f"Redis at {args.redis_url} is not reachable: {e}")
            await probe.close()
            return 1
        allowed = servers.status(int(info["process_id"]), "Cpus_allowed_list") or "?"
        print(
            f"redis-server {info['redis_version']} at {args.redis_url} (pid "
            f"{info['process_id']}, CPUs allowed {allowed}); key prefix {prefix}-*"
        )
    for name in args.setups:
        print(f"  {SETUPS[name].describe()}")
    buffer = args.buffer_size or "auto = max(4096, 2 x events)"
    print(
        f"per row: 1 warm-up burst of E/4 events, then {args.runs} timed bursts (each followed "
        f"by {args.publish_events} publish-only events), interleaved; buffer_size: {buffer}, "
        "slow_client: disconnect"
    )
    print()
    rows: list[Row] = []
    targets: list[Target] = []
    deleted = 0
    try:
        for clients in args.clients:
            await bench_clients(clients, args, rows, targets, prefix, probe)
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                deleted = await probe.delete(f"{prefix}-*")
            await probe.close()
    print()
    print_report(rows, targets)
    if probe is not None:
        print(f"\nRedis clean-up: deleted {deleted} keys matching {prefix}-*")
    print(f"total time {time.monotonic() - t0:.0f} s")
    if report.sources_changed(source):
        return 1
    return 1 if report.failed(rows, targets) else 0


def _setups(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SETUPS)}: {text!r}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fan-out deliveries/s through the Redis backplane (1 and 2 workers) vs "
        "the memory backplane. See the module docstring for the method."
    )
    options.add_bursts(parser, clients=[1000], deliveries=1_000_000, timeout=60.0)
    parser.add_argument(
        "--publish-events",
        type=int,
        default=5000,
        help="events of each publish-only loop (default 5000)",
    )
    parser.add_argument(
        "--setups",
        type=_setups,
        default=DEFAULT_SETUPS,
        help=f"rows, comma-separated, from {', '.join(SETUPS)} "
        f"(default {','.join(DEFAULT_SETUPS)})",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"default {REDIS_URL}")
    args = parser.parse_args()
    options.check_bursts(parser, args)
    if args.publish_events < 1:
        parser.error("--publish-events must be at least 1")
    servers.raise_nofile()
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
