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
                 fan-out over two processes without a second CPU to run them (not in
                 the default ``--setups``).

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
    events, 600 s), and the route ``POST /bench/burst?events=E&yield_every=K[&channel=c]
    [&concurrency=C][&batch=B]``,
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
    others are idle. E = ``--deliveries / N`` (default 500,000 / N). Each K is measured
    at each ``--concurrency`` C (default 1 and 50): at C > 1 the burst route runs C tasks,
    task j publishing seq j, j+C, j+2C, ... one ``await rt.publish`` at a time, and the
    burst ends when all are done (its seq values may arrive in any order, so the
    inspecting client checks each burst's set of seq values; the ids must still be one
    epoch with consecutive offsets); the publish-only loop after it runs at the same C.
    After each C=1 publish-only loop, when the servers' package has ``publish_many``, the
    same events go through ``await rt.publish_many("idle", [("tick", data), ...])`` in
    batches of ``--batch`` (100): its events/s.

Steady
    At ``--steady-clients`` (1000), after the bursts: ``--steady-rounds`` (3) rounds, in
    each every server in turn (rotating order) publishes ``--steady-rate`` (100) events/s
    for ``--steady-seconds`` (5) on a fixed schedule, each event carrying its publish
    time; latency = the generator's receive time - that time, on every
    ``--sample-every``-th (10th) client (compare.py's steady phase). Per setup: medians
    of the rounds' achieved rate, p50, p99, max; lost deliveries; p99 / memory's.

Goals
    The last lines print issue 22's goals from this run's figures, redis-1w against
    memory: (a) burst ratio at 1000 (>= 0.85) and 100 (>= 0.5) clients, K=1, C=1; (b) the
    C=1 publish-only loop >= 20,000 events/s and (c) the C=50 one >= 50,000 (median over
    all its runs, both client counts); (d) steady p99 <= 1.5x memory's with nothing lost
    and the rate achieved; (f) publish_many events/s (no goal). Each server's
    ``/bench/info`` says which ``sanic_realtime`` it imported (printed at the start):
    ``PYTHONPATH=<a worktree>`` runs the bench against that tree's package.

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
    python bench/redis_fanout.py                # 100,1000 clients, K=1, C=1,50, 3 rows (~5 min)
    python bench/redis_fanout.py --setups memory,redis-1w,redis-2w,redis-2w-cpu0 --runs 5
    python bench/redis_fanout.py --quick        # 200 clients, 100k deliveries per burst
"""

from __future__ import annotations

import argparse
import asyncio
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
from harness.target import Run, Step, Target

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
DEFAULT_SETUPS = ["memory", "redis-1w", "redis-2w"]

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


async def steady(
    args: argparse.Namespace, started: list[Target], steps: dict[str, list[Step]]
) -> None:
    """``--steady-rounds`` rounds; in each, every server in turn publishes
    ``--steady-rate`` events/s for ``--steady-seconds`` (rotating order)."""
    live = [(n, t) for n, t in zip(args.setups, started, strict=True) if not t.problems]
    for i in range(args.steady_rounds):
        shift = i % len(live) if live else 0
        for name, target in live[shift:] + live[:shift]:
            await asyncio.sleep(0.5)
            step = await target.steady(
                args.steady_rate, args.steady_seconds, args.sample_every, args.grace
            )
            steps.setdefault(name, []).append(step)
            print(
                f"  steady {target.label:<24} N={target.clients} {args.steady_rate:g} ev/s "
                f"round {i + 1}: achieved {step.achieved:.1f}, p50 {step.pct(0.5) * 1000:.2f} ms, "
                f"p99 {step.pct(0.99) * 1000:.2f} ms, max {step.pct(1.0) * 1000:.1f} ms, "
                f"lost {step.lost}, srv {step.srv_cpu:.0%}"
                + (f" PROBLEM {step.problem}" if step.problem else ""),
                flush=True,
            )


async def bench_clients(
    clients: int,
    args: argparse.Namespace,
    rows: list[Row],
    targets: list[Target],
    prefix: str,
    probe: RedisProbe | None,
    steps: dict[str, list[Step]],
) -> None:
    events = options.events_for(args, clients)
    buffer_size = options.buffer_for(args, events)
    started = [
        make_target(SETUPS[n], clients, buffer_size, args, f"{prefix}-{n}-{clients}", probe)
        for n in args.setups
    ]

    many: dict[str, bool] = {}

    async def publish_only(row: Row, target: Target, run: Run) -> None:
        batch = args.batch if row.concurrency == 1 and many.get(row.key) else 0
        try:
            await target.publish_only(
                args.publish_events, row.yield_every, run, row.concurrency, batch
            )
        except Exception as e:
            raise RuntimeError(f"publish only: {e!r}") from e

    def note(run: Run) -> str:
        evalsha = f", evalsha {run.evalsha_us:.1f} us/call" if run.evalsha_us is not None else ""
        text = f" | publish only {run.publish_only:,.0f} events/s{evalsha}"
        if run.publish_many is not None:
            text += f" | publish_many {run.publish_many:,.0f} events/s"
        return text

    async with runner.serving(started, targets):
        for name, t in zip(args.setups, started, strict=True):
            if not t.problems:
                sizes = ", ".join(f"pid {pid}: {g.size}" for pid, g in sorted(t.groups.items()))
                print(f"  {t.label:<24} N={clients}: clients per worker process: {sizes}")
                served = await t.server.info()
                many[name] = bool(served.get("publish_many"))
                print(
                    f"  {t.label:<24} imports {served.get('package')} "
                    f"(publish_many: {'yes' if many[name] else 'no'})"
                )
        for every in args.yield_every:
            for c in args.concurrency:
                block = [
                    Row(n, SETUPS[n].label, clients, events, every, concurrency=c)
                    for n in args.setups
                ]
                rows.extend(block)
                pairs = list(zip(block, started, strict=True))
                await runner.measure(pairs, args.runs, after=publish_only, note=note)
                for row, t in pairs:
                    row.rss_kb = t.peak_rss_kb()
                    row.per_worker = sorted((g.size for g in t.groups.values()), reverse=True)
        if clients == args.steady_clients and args.steady_rate:
            await steady(args, started, steps)


def _base(rows: list[Row], r: Row) -> Row | None:
    """The memory row of the same client count, K and C."""
    return next(
        (
            b
            for b in rows
            if b.key == "memory"
            and b.clients == r.clients
            and b.yield_every == r.yield_every
            and b.concurrency == r.concurrency
        ),
        None,
    )


def _median(r: Row, value: Callable[[Run], float]) -> float:
    return statistics.median(value(x) for x in r.runs)


def _many(r: Row, cpu: bool = False) -> list[float]:
    values = [x.publish_many_cpu_us if cpu else x.publish_many for x in r.runs]
    return [v for v in values if v is not None]


def _median_many(r: Row) -> float:
    return statistics.median(_many(r))


def print_steady(steps: dict[str, list[Step]], args: argparse.Namespace) -> None:
    if not steps:
        return
    print(
        f"steady {args.steady_rate:g} events/s to {args.steady_clients} clients, "
        f"{args.steady_seconds:g} s per round, {args.steady_rounds} rounds; latency = receive "
        f"time - publish time on every {args.sample_every}th client; medians of the rounds"
    )

    def med(name: str, value: Callable[[Step], float]) -> float:
        return statistics.median(value(s) for s in steps[name])

    def p99(s: Step) -> float:
        return s.pct(0.99) * 1000

    base = steps.get("memory")
    report.table(
        [
            Col("setup", 25, lambda n: SETUPS[n].label, left=True),
            Col("achieved", 9, lambda n: f"{med(n, lambda s: s.achieved):.1f}"),
            Col("p50", 9, lambda n: f"{med(n, lambda s: s.pct(0.5) * 1000):.2f}ms"),
            Col("p99", 10, lambda n: f"{med(n, p99):.2f}ms"),
            Col(
                "p99 min..max",
                14,
                lambda n: report.spread([p99(s) for s in steps[n]], ".2f"),
                True,
                2,
            ),
            Col("max", 10, lambda n: f"{med(n, lambda s: s.pct(1.0) * 1000):.1f}ms"),
            Col("lost", 6, lambda n: str(sum(s.lost for s in steps[n]))),
            Col("srv%", 6, lambda n: f"{med(n, lambda s: s.srv_cpu):.0%}"),
            Col(
                "p99 vs memory",
                14,
                lambda n: report.ratio(med(n, p99), med("memory", p99)) if base else "",
            ),
            Col(
                "problems",
                0,
                lambda n: "; ".join(s.problem for s in steps[n] if s.problem),
                left=True,
                gap=2,
            ),
        ],
        list(steps),
    )
    print()


def print_goals(rows: list[Row], steps: dict[str, list[Step]], args: argparse.Namespace) -> None:
    """Issue 22's speed goals, from this run's figures (redis-1w against memory)."""
    print("issue 22's goals (redis-1w = the Redis backplane, one worker; same run):")

    def line(goal: str, figure: str, met: bool | None) -> None:
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"  {goal:<58} {figure:<46} {verdict}")

    def row(key: str, clients: int, c: int) -> Row | None:
        return next(
            (
                r
                for r in rows
                if r.key == key
                and r.clients == clients
                and r.concurrency == c
                and r.yield_every == 1
                and r.runs
            ),
            None,
        )

    for clients, want in ((1000, 0.85), (100, 0.5)):
        mine, base = row("redis-1w", clients, 1), row("memory", clients, 1)
        if mine and base:
            ratio = mine.median / base.median
            line(
                f"(a) burst N={clients}, K=1: redis-1w / memory >= {want}",
                f"{ratio:.2f}x ({mine.median:,.0f} / {base.median:,.0f})",
                ratio >= want,
            )
        else:
            line(f"(a) burst N={clients}, K=1: redis-1w / memory >= {want}", "not measured", None)
    for c, want, name in (
        (1, 20_000, "(b) one publishing loop"),
        (50, 50_000, "(c) 50 publishers"),
    ):
        candidates = [r for r in rows if r.key == "redis-1w" and r.concurrency == c and r.runs]
        if candidates:
            values = [x.publish_only for r in candidates for x in r.runs]
            med = statistics.median(values)
            line(
                f"{name}, publish only: events/s >= {want:,}",
                f"{med:,.0f} ({report.spread(values)})",
                med >= want,
            )
        else:
            line(f"{name}, publish only: events/s >= {want:,}", "not measured", None)
    mine_s, base_s = steps.get("redis-1w"), steps.get("memory")
    title = f"(d) steady {args.steady_rate:g} ev/s x {args.steady_clients}: p99 <= 1.5x memory"
    if mine_s and base_s:
        p_mine = statistics.median(s.pct(0.99) for s in mine_s)
        p_base = statistics.median(s.pct(0.99) for s in base_s)
        kept = all(s.lost == 0 and s.achieved >= 0.98 * s.rate and not s.problem for s in mine_s)
        line(
            title,
            f"{p_mine / p_base:.2f}x ({p_mine * 1000:.2f} / {p_base * 1000:.2f} ms)"
            + ("" if kept else ", FELL BEHIND"),
            kept and p_mine <= 1.5 * p_base,
        )
    else:
        line(title, "not measured", None)
    many = [x.publish_many for r in rows if r.key == "redis-1w" for x in r.runs]
    values = [v for v in many if v is not None]
    line(
        f"(f) publish_many, batches of {args.batch}: events/s (no goal)",
        f"{statistics.median(values):,.0f} ({report.spread(values)})" if values else "not measured",
        None,
    )
    print()


def print_report(
    rows: list[Row], targets: list[Target], steps: dict[str, list[Step]], args: argparse.Namespace
) -> None:
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
            Col("C", 3, lambda r: str(r.concurrency)),
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

    def publish_vs_memory(r: Row) -> str:
        base = _base(rows, r)
        if r.key == "memory" or base is None or not base.runs:
            return ""
        return report.ratio(
            _median(r, lambda x: x.publish_only), _median(base, lambda x: x.publish_only)
        )

    def evalsha(r: Row) -> str:
        us = [x.evalsha_us for x in r.runs if x.evalsha_us is not None]
        return f"{statistics.median(us):.1f}" if us else "-"

    report.table(
        [
            report.label_col("publishing loop", 25),
            Col("clients", 7, lambda r: str(r.clients)),
            Col("K", 3, lambda r: r.k),
            Col("C", 3, lambda r: str(r.concurrency)),
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
            Col("vs memory", 10, publish_vs_memory),
        ],
        [r for r in rows if r.runs],
    )
    many = [r for r in rows if r.runs and any(x.publish_many is not None for x in r.runs)]
    if many:
        print()
        report.table(
            [
                report.label_col(f"publish_many, batches of {args.batch}", 32),
                Col("clients", 7, lambda r: str(r.clients)),
                Col("events/s", 10, lambda r: f"{_median_many(r):,.0f}"),
                Col("min..max", 19, lambda r: report.spread(_many(r)), True, 2),
                Col(
                    "srv CPU us/event",
                    17,
                    lambda r: f"{statistics.median(_many(r, cpu=True)):,.1f}",
                ),
                Col(
                    "vs publish loop",
                    16,
                    lambda r: report.ratio(_median_many(r), _median(r, lambda x: x.publish_only)),
                ),
            ],
            many,
        )
    print()
    print_steady(steps, args)
    report.checks(targets, rows, title="checks, per server (all its bursts):")
    print()
    print(LEGEND)
    print()
    print_goals(rows, steps, args)


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
    steps: dict[str, list[Step]] = {}
    deleted = 0
    try:
        for clients in args.clients:
            await bench_clients(clients, args, rows, targets, prefix, probe, steps)
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                deleted = await probe.delete(f"{prefix}-*")
            await probe.close()
    print()
    print_report(rows, targets, steps, args)
    if probe is not None:
        print(f"\nRedis clean-up: deleted {deleted} keys matching {prefix}-*")
    print(f"total time {time.monotonic() - t0:.0f} s")
    if report.sources_changed(source):
        return 1
    bad_steps = any(s.problem or s.lost for ss in steps.values() for s in ss)
    return 1 if report.failed(rows, targets) or bad_steps else 0


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
    options.add_bursts(parser, clients=[100, 1000], deliveries=500_000, timeout=60.0)
    parser.add_argument(
        "--concurrency",
        type=options.int_list,
        default=[1, 50],
        help="publishing tasks in the server per burst and publish-only loop (each awaits "
        "its own publishes); comma-separated (default 1,50)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="events per publish_many call in the publish_many loop after each C=1 "
        "publish-only loop, where the package has publish_many (0 = none; default 100)",
    )
    parser.add_argument(
        "--steady-clients",
        type=int,
        default=1000,
        help="the client count (one of --clients) of the steady phase (default 1000)",
    )
    parser.add_argument(
        "--steady-rate", type=float, default=100.0, help="events/s (0 = no steady phase)"
    )
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    parser.add_argument("--steady-rounds", type=int, default=3)
    parser.add_argument("--sample-every", type=int, default=10)
    parser.add_argument("--grace", type=float, default=3.0)
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
    if not all(args.concurrency):
        parser.error("--concurrency must be at least 1")
    if args.batch < 0:
        parser.error("--batch must not be negative")
    if args.steady_rate < 0 or args.steady_seconds <= 0 or args.steady_rounds < 1:
        parser.error("--steady-rate >= 0, --steady-seconds > 0, --steady-rounds >= 1")
    if args.sample_every < 1:
        parser.error("--sample-every must be at least 1")
    servers.raise_nofile()
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
