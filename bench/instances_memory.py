"""Memory of template instances: is it bounded after 100,000 instances were used once?

Question
    ``orders.{order_id}`` makes every ``orders.<i>`` a channel of its own. A process keeps
    what it knows of an instance (``hub.instances``: when it was last used; with the memory
    backplane, its ``ChannelHistory`` in ``hub.backplane._histories``) until the instance
    is idle for longer than its template's ``history.ttl`` and has no local subscriber;
    idle ones are forgotten in bounded sweeps when a new instance is used, and at most
    ``max_channels`` (default 100,000) are kept at once. Does memory stay bounded when
    every instance is used once and never again, wave after wave?

Scenarios (each in a subprocess of its own, so each starts from a fresh process)
    short       history size 10, ttl ``--ttl`` (10 s: longer than a wave, so that all N
                are kept at its end), ``max_channels`` = N. Wave 1 publishes one event to
                each of N new instances ``orders.0`` .. ``orders.<N-1>``; the script waits
                past the ttl, then wave 2 publishes to N other new instances (whose uses
                sweep wave 1's), and so on for ``--waves`` waves. Memory after the last
                wave should be about memory after the first, and the kept count <= N.
    short+tm    the same with tracemalloc on (``--tracemalloc``): the Python heap
                allocated since the start and still alive, and, with ``--top``, the
                allocation sites that grew between the first and the last wave. It
                inflates RSS (its own tables) and slows publishing about 4x, so its RSS
                and rates are not the figures; ``all`` runs it with ttl
                ``--tracemalloc-ttl`` (30 s), longer than its slower waves.
    long        ttl 1 h and ``max_channels`` = N: N new instances fill the table; a new
                one is refused with TooManyChannels (503 too_many_channels) while a kept
                one is still published to; then the hub's monotonic clock is moved 1 h on
                (``Hub._monotonic``, a private attribute: the script cannot wait an hour)
                and N new instances take the place of the old ones.
    redis       ``--redis`` (default redis://127.0.0.1:6379/0, ``''``: skip) with a key
                prefix of its own (deleted at the end): the keys of the prefix and their
                ``MEMORY USAGE`` (summed over a sample, times the key count), Redis's
                ``used_memory`` (the whole server: other users of that Redis move it),
                and this process's RSS, per wave as in ``short``, for
                ``--redis-instances`` (20,000) instances per wave, published from
                ``--concurrency`` (64) tasks: a wave must take less than the ttl.

Measurement
    The app is served in-process with ``sanic_realtime.testing.serve_app`` (a real Sanic
    server on a free port, the hub and backplane started by its listeners), and events
    are published with ``await realtime.publish("orders.<i>", "order_update", {...})``,
    one after the other, with nobody subscribed. Each checkpoint runs ``gc.collect()``,
    then reads VmRSS and VmHWM from ``/proc/self/status``, ``len(hub.instances)``, and
    the histories the memory backplane keeps for instances. ``instances/s`` is N / the
    wave's wall time. Freed memory goes back to Python's allocator, which reuses it, so
    RSS is not expected to fall after a sweep, only to stop growing.

Usage
    python bench/instances_memory.py                       # every scenario, ~4 minutes
    python bench/instances_memory.py --instances 20000 --redis ''
    python bench/instances_memory.py --scenario short --tracemalloc --top 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import platform
import subprocess
import sys
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEMPLATE = "orders.{order_id}"
MIB = 1024 * 1024


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of this process, in bytes."""
    found: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) * 1024
    return found


@dataclass
class Point:
    label: str
    rss: int
    hwm: int
    traced: int | None
    instances: int
    histories: int | None
    extra: str = ""


class Meter:
    """Checkpoints of one scenario, printed as a table at the end."""

    def __init__(self, realtime: Any, *, traced: bool) -> None:
        self.realtime = realtime
        self.traced = traced
        self.points: list[Point] = []
        #: allocation site -> (bytes, blocks) at a checkpoint (not whole snapshots: a
        #: snapshot of a million traces would take hundreds of MiB of RSS itself)
        self.sites: dict[str, dict[str, tuple[int, int]]] = {}
        backplane = realtime.hub.backplane
        self._histories: dict[str, Any] | None = getattr(backplane, "_histories", None)
        self._static = len(self._histories) if self._histories is not None else 0

    def histories(self) -> int | None:
        if self._histories is None:
            return None
        return len(self._histories) - self._static

    def point(self, label: str, extra: str = "", *, snapshot: bool = False) -> Point:
        gc.collect()
        status = proc_status()
        traced = tracemalloc.get_traced_memory()[0] if self.traced else None
        if snapshot and self.traced:
            stats = tracemalloc.take_snapshot().statistics("lineno")
            self.sites[label] = {
                f"{os.path.relpath(st.traceback[0].filename, ROOT)}:{st.traceback[0].lineno}": (
                    st.size,
                    st.count,
                )
                for st in stats
            }
            del stats
            gc.collect()
        p = Point(
            label,
            status["VmRSS"],
            status["VmHWM"],
            traced,
            len(self.realtime.hub.instances),
            self.histories(),
            extra,
        )
        self.points.append(p)
        return p

    def print(self) -> None:
        start = self.points[0]
        head = f"  {'checkpoint':<34} {'RSS MiB':>8} {'ΔRSS':>7} {'peak':>7}"
        if self.traced:
            head += f" {'traced MiB':>10}"
        head += f" {'instances':>10} {'histories':>10}  notes"
        print(head)
        for p in self.points:
            line = (
                f"  {p.label:<34} {p.rss / MIB:8.1f} {(p.rss - start.rss) / MIB:+7.1f}"
                f" {p.hwm / MIB:7.1f}"
            )
            if self.traced and p.traced is not None:
                line += f" {p.traced / MIB:10.1f}"
            hist = "-" if p.histories is None else f"{p.histories:,}"
            line += f" {p.instances:>10,} {hist:>10}  {p.extra}"
            print(line.rstrip())


def make_realtime(n: int, ttl: str, size: int, backplane: str = "memory", prefix: str = "") -> Any:
    from sanic_realtime import Realtime
    from sanic_realtime.config import parse_config

    config: dict[str, Any] = {
        "channels": {TEMPLATE: {"history": {"size": size, "ttl": ttl}}},
        "max_channels": n,
        "backplane": backplane,
    }
    if prefix:
        config["redis"] = {"prefix": prefix}
    return Realtime(parse_config(config))


def make_app(realtime: Any, name: str) -> Any:
    from sanic import Sanic

    for logger in ("sanic.root", "sanic.server", "sanic.error", "sanic.access"):
        logging.getLogger(logger).setLevel(logging.ERROR)

    app = Sanic(name, configure_logging=False)  # no start-up banner
    app.config.ACCESS_LOG = False
    app.blueprint(realtime.blueprint)
    return app


async def wave(realtime: Any, first: int, n: int, concurrency: int = 1) -> tuple[float, int, int]:
    """Publish one event to each of ``orders.<first>`` .. ``orders.<first+n-1>``, from
    ``concurrency`` tasks (each its own share, in order); returns (seconds, refusals, the
    most instances kept at once)."""
    from sanic_realtime.exceptions import TooManyChannels

    instances = realtime.hub.instances
    publish = realtime.publish
    refused = 0
    most = len(instances)

    async def run(start: int) -> None:
        nonlocal refused, most
        for i in range(first + start, first + n, concurrency):
            try:
                await publish(f"orders.{i}", "order_update", {"order_id": i, "status": "paid"})
            except TooManyChannels:
                refused += 1
            if len(instances) > most:
                most = len(instances)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(k) for k in range(concurrency)))
    return time.perf_counter() - t0, refused, most


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f} instances/s ({seconds:.2f} s)"


def print_growth(meter: Meter, first: str, last: str, top: int, per: int = 0) -> None:
    """The allocation sites whose live memory changed most from ``first`` to ``last``
    (with ``per``: also per instance)."""
    if top <= 0 or first not in meter.sites or last not in meter.sites:
        return
    a, b = meter.sites[first], meter.sites[last]
    diff = {
        site: (
            b.get(site, (0, 0))[0] - a.get(site, (0, 0))[0],
            b.get(site, (0, 0))[1] - a.get(site, (0, 0))[1],
        )
        for site in a.keys() | b.keys()
    }
    rows = sorted(diff.items(), key=lambda kv: -abs(kv[1][0]))[:top]
    total = sum(d[0] for d in diff.values())
    print(f"  tracemalloc: {last!r} minus {first!r}: {total / 1024:+,.1f} KiB in all; top {top}:")
    for site, (size, count) in rows:
        each = f" {size / per:7.0f} B/instance" if per else ""
        print(f"    {size / 1024:+10.1f} KiB {count:+9,} blocks{each}  {site}")


# ------------------------------------------------------------------ scenarios


async def scenario_short(args: argparse.Namespace) -> None:
    from sanic_realtime.testing import serve_app

    n = args.instances
    realtime = make_realtime(n, f"{args.ttl:g}s", args.history_size)
    async with serve_app(make_app(realtime, "instances_short")):
        if args.tracemalloc:
            tracemalloc.start()
        meter = Meter(realtime, traced=args.tracemalloc)
        meter.point("start (server up)", snapshot=True)
        seconds, refused, most = await wave(realtime, 0, n)
        meter.point(
            "after wave 1",
            f"{rate(n, seconds)}, refused {refused}, most kept {most:,}",
            snapshot=True,
        )
        await asyncio.sleep(args.ttl + 0.5)
        meter.point(f"after waiting {args.ttl + 0.5:g} s (> ttl)", "no sweep yet: no new use")
        for w in range(2, args.waves + 1):
            seconds, refused, most = await wave(realtime, (w - 1) * n, n)
            meter.point(
                f"after wave {w}",
                f"{rate(n, seconds)}, refused {refused}, most kept {most:,}",
                snapshot=True,
            )
            if w < args.waves:
                await asyncio.sleep(args.ttl + 0.5)
        stats = realtime.stats()
        meter.print()
        kept = max(meter.points[1].instances, 1)
        per = (meter.points[1].rss - meter.points[0].rss) / kept
        print(f"  RSS growth per kept instance after wave 1: {per:,.0f} bytes")
        if args.tracemalloc:
            traced, kept = meter.points[1].traced or 0, meter.points[1].instances
            own = tracemalloc.get_tracemalloc_memory() / MIB
            print(
                f"  traced heap per kept instance after wave 1: {traced / max(kept, 1):,.0f} "
                f"bytes; tracemalloc's own memory now {own:.1f} MiB (in RSS, not traced)"
            )
        print(
            f"  stats: channel_instances={stats.get('channel_instances')} "
            f"published={dict(realtime.hub.published)}"
        )
        print_growth(meter, "start (server up)", "after wave 1", args.top, kept)
        print_growth(meter, "after wave 1", f"after wave {args.waves}", args.top)
        if args.tracemalloc:
            tracemalloc.stop()


async def scenario_long(args: argparse.Namespace) -> None:
    from sanic_realtime.exceptions import TooManyChannels
    from sanic_realtime.testing import serve_app

    n = args.instances
    realtime = make_realtime(n, "1h", args.history_size)
    hub = realtime.hub
    async with serve_app(make_app(realtime, "instances_long")):
        meter = Meter(realtime, traced=False)
        meter.point("start (server up)")
        seconds, refused, most = await wave(realtime, 0, n)
        meter.point("after wave 1 (table full)", f"{rate(n, seconds)}, refused {refused}")
        # One new instance more: refused, with the message the caller gets.
        t0 = time.perf_counter()
        try:
            await realtime.publish(f"orders.{n}", "order_update", {"order_id": n})
            first = "accepted (unexpected)"
        except TooManyChannels as e:
            first = f"refused: {e.code} {e.status}: {e}"
        first_ms = (time.perf_counter() - t0) * 1000
        print(f"  publish to orders.{n} (instance {n + 1:,}): {first}  [{first_ms:.1f} ms]")
        more = 1000
        t0 = time.perf_counter()
        _, refused_more, _ = await wave(realtime, n + 1, more)
        each = (time.perf_counter() - t0) / more * 1e6
        print(f"  {more} more new instances: {refused_more} refused ({each:.1f} µs each)")
        ok = await realtime.publish("orders.0", "order_update", {"order_id": 0})
        print(f"  publish to a kept instance (orders.0): accepted, id {ok.id}")
        meter.point("after the refusals")
        # An hour later (the hub's clock, not the wall's): the old instances are idle.
        real = hub._monotonic
        hub._monotonic = lambda: real() + 3601.0
        seconds, refused, most = await wave(realtime, 2 * n, n)
        meter.point(
            "after wave 2, clock +1 h",
            f"{rate(n, seconds)}, refused {refused}, most kept {most:,}",
        )
        meter.print()


async def scenario_redis(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from sanic_realtime.testing import serve_app

    n = args.redis_instances
    prefix = f"rt-bench-{uuid.uuid4().hex[:10]}"
    client = aioredis.Redis.from_url(args.redis)
    realtime = make_realtime(n, f"{args.ttl:g}s", args.history_size, args.redis, prefix)

    async def keys() -> list[bytes]:
        return [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]

    async def redis_figures() -> str:
        found = await keys()
        sample = found[:: max(1, len(found) // 200)][:200]
        sizes = [await client.memory_usage(k, samples=0) or 0 for k in sample]
        est = sum(sizes) / len(sizes) * len(found) if sizes else 0.0
        info = await client.info("memory")
        return (
            f"keys {len(found):,} (~{est / MIB:.1f} MiB by MEMORY USAGE); "
            f"used_memory {info['used_memory'] / MIB:.1f} MiB"
        )

    version = (await client.info("server"))["redis_version"]
    print(f"  Redis {version} at {args.redis}, prefix {prefix}")
    try:
        async with serve_app(make_app(realtime, "instances_redis")):
            meter = Meter(realtime, traced=False)
            meter.point("start (server up)", await redis_figures())
            for w in range(1, args.waves + 1):
                seconds, refused, _ = await wave(realtime, (w - 1) * n, n, args.concurrency)
                meter.point(
                    f"after wave {w}",
                    f"{rate(n, seconds)}, refused {refused}; {await redis_figures()}",
                )
                await asyncio.sleep(args.ttl + 1.0)
                meter.point(f"  {args.ttl + 1:g} s later (> ttl)", await redis_figures())
            meter.print()
    finally:
        found = await keys()
        for i in range(0, len(found), 1000):
            await client.delete(*found[i : i + 1000])
        left = len(await keys())
        print(f"  deleted {len(found):,} keys of {prefix}; {left} left")
        await client.aclose()


SCENARIOS = {"short": scenario_short, "long": scenario_long, "redis": scenario_redis}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--scenario",
        choices=["all", *SCENARIOS],
        default="all",
        help="all: short, short with tracemalloc, long and redis, each in a subprocess",
    )
    p.add_argument("--instances", type=int, default=100_000, help="N, and max_channels")
    p.add_argument("--waves", type=int, default=3, help="waves of N new instances (short, redis)")
    p.add_argument("--ttl", type=float, default=10.0, help="history.ttl in seconds (short, redis)")
    p.add_argument(
        "--tracemalloc-ttl",
        type=float,
        default=30.0,
        help="--ttl of the short+tm run of 'all' (tracemalloc slows a wave down ~4x)",
    )
    p.add_argument("--history-size", type=int, default=10)
    p.add_argument("--tracemalloc", action="store_true", help="trace the Python heap (short)")
    p.add_argument("--top", type=int, default=8, help="allocation sites to show (tracemalloc)")
    p.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis of the redis scenario; '' skips it",
    )
    p.add_argument("--redis-instances", type=int, default=20_000, help="N of the redis scenario")
    p.add_argument(
        "--concurrency", type=int, default=64, help="tasks publishing at once (redis only)"
    )
    return p


def header(args: argparse.Namespace) -> None:
    import sanic

    import sanic_realtime

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "sanic_realtime"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"machine: {cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}")
    print(
        f"sanic {sanic.__version__}; sanic_realtime from {Path(sanic_realtime.__file__).parent}"
        f" at {commit[:60]}{' (sanic_realtime/ modified)' if dirty else ''}"
    )
    print(
        f"N={args.instances:,} instances per wave, max_channels={args.instances:,}, "
        f"history size {args.history_size}, short ttl {args.ttl:g} s, waves {args.waves}"
    )


def main() -> int:
    args = parser().parse_args()
    if args.scenario != "all":
        asyncio.run(SCENARIOS[args.scenario](args))
        return 0
    header(args)
    runs: list[tuple[str, list[str]]] = [
        ("short", ["--scenario", "short"]),
        ("short+tm", ["--scenario", "short", "--tracemalloc", f"--ttl={args.tracemalloc_ttl}"]),
        ("long", ["--scenario", "long"]),
    ]
    if args.redis:
        runs.append(("redis", ["--scenario", "redis"]))
    common = [
        f"--instances={args.instances}",
        f"--waves={args.waves}",
        f"--ttl={args.ttl}",
        f"--history-size={args.history_size}",
        f"--top={args.top}",
        f"--redis={args.redis}",
        f"--redis-instances={args.redis_instances}",
        f"--concurrency={args.concurrency}",
    ]
    failed = 0
    for name, extra in runs:
        print(f"\n== {name}")
        sys.stdout.flush()
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, *common, *extra])
        failed += done.returncode != 0
        print(f"  ({time.perf_counter() - t0:.0f} s, exit {done.returncode})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
