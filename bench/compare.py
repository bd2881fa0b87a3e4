"""sanic-realtime side by side with its peers: burst fan-out, steady rate, idle memory, filter cost.

One command runs every measurement of the issue "Fan-out at the speed limit", prints one
table per measurement with the ratios of sanic-realtime to each peer (for the filter
cost, of each filtered row to the unfiltered one), and writes
``docs/benchmarks-fanout.png`` (deliveries/s vs clients, one line per server).

Servers (each a real server in its own subprocess, pinned to CPU 0; uvloop everywhere;
the programs are in ``bench/harness/apps.py``)
    sanic-realtime      ``bench/fanout.py``'s server: Sanic + ``Realtime`` (memory backplane),
                        ``await rt.publish("bench", "tick", data)`` per event.
    sanic-realtime redis  the same server with the Redis backplane (``--redis-url``, default
                        ``redis://127.0.0.1:6379/0``; each server its own key prefix
                        ``bench-<random>-<n>``, deleted at the end; ``--redis-url ''``: no
                        such row): one ``publish`` = one script call in Redis, awaited,
                        then the local fan-out. In the burst and steady phases only, with
                        its ratio to the memory row.
    websockets          ``bench/fanout.py``'s peer: websockets 17 ``serve`` +
                        ``broadcast(connections, frame, text=True)`` per event.
    sanic hub           Sanic's own ``@app.websocket`` handler adds ``ws`` to a set; publish =
                        ``for ws in list(clients): await ws.send(frame_str)``.
    sanic gather        the same, publish = ``await asyncio.gather(*(ws.send(frame_str) for
                        ws in clients))``.
    python-socketio     python-socketio 5 ``AsyncServer(async_mode="aiohttp")`` on aiohttp;
                        publish = ``await sio.emit("tick", data)`` to everyone. The load
                        generator speaks Engine.IO v4 over the websocket transport
                        (``/socket.io/?EIO=4&transport=websocket``: ``0{...}`` open -> ``40``
                        -> ``40{...}``; ``2`` ping -> ``3`` pong) and counts ``42[...]``
                        frames only.
    generator ceiling   ``bench/fanout.py``'s raw server writing each client's whole burst at
                        once: how fast the load generator can count (not a peer).
    Every server sends one welcome text message per connection, then the same JSON envelope
    per event (type, channel, id, timestamp, data = {"seq", ["pt",] "payload": 150 x "x"});
    python-socketio carries that envelope as the event's argument.

Load generator: ``bench/fanout.py``'s raw ``asyncio.Protocol`` clients on uvloop
(``bench/harness/loadgen.py``), pinned to CPU 1 (frame headers parsed, frames counted;
client 0 checks every seq and the order).

Measurements
    1. Burst (``--clients``, default 100,1000,5000): deliveries/s = E x N / (first publish ->
       last frame counted), E = ``--deliveries`` / N, one ``await asyncio.sleep(0)`` per event
       (K=1); 1 warm-up burst of E/4, then ``--runs`` timed bursts per server, interleaved
       in a rotating order; median and min..max. A server whose warm-up rate predicts a
       burst longer than ``--max-burst-seconds`` (6) gets fewer events (at least 10): the
       ``events`` column. Reference rows from the raw server: ``bare write (ref)``, one
       ``transport.write`` per frame per client (K=1), and ``generator ceiling``, each
       client's whole burst in one write (K=0). The generator's file-descriptor limit
       decides how many servers hold their N clients at once: larger N are run in groups.
    2. Steady (``--steady-clients``, default 1000): the server publishes R events/s for
       ``--steady-seconds`` on a fixed schedule (event i due at t0 + i/R), each event
       carrying its publish time ``pt`` (server's ``time.monotonic()``; CLOCK_MONOTONIC is
       system-wide on Linux). Latency = the generator's receive time (one clock reading per
       socket read) - pt, for every delivery to every ``--sample-every``-th client.
       achieved = (events - 1) / (last publish - first publish): below R, the server's loop
       fell behind its schedule (the latency, measured from the actual publish, does not
       show that). lost = deliveries not counted ``--grace`` s after the loop ended.
       The rates in ``--rates`` are tried in increasing order, all servers at one rate
       before the next (rotating order); a server stops at its first failing rate.
       "sustained" = p99 <= ``--p99-ms`` (50), nothing lost, achieved >= 98% of R.
    3. Idle memory and size (``--idle-clients``, default 10000): one server at a time; its
       VmRSS (``/proc/PID/status``) when ready, and again 2 s after N clients have their
       welcome; KB per connection = difference / N. Then one burst of ``--idle-events``
       events (K=1) to the N clients: deliveries/s at that size (one run, not a median),
       and a steady ``--idle-rate`` events/s (default 10, i.e. 100,000 deliveries/s) for
       ``--steady-seconds``: achieved, p50, p99, lost, as in 2. sanic-realtime runs as a
       deployment would: its clients subscribe through the 10 distinct all-match filters
       of phase 4 on ``filtered``, and its heartbeat runs every ``--idle-heartbeat`` s
       (default 5, the example app's is 30; client_timeout 3x) so that pings really
       happen during the phase; the table's footer counts the pings the clients answered.
    4. Filter cost (``--filter-clients``, default 5000; sanic-realtime only, the peers have
       no filters): does a channel whose N subscribers are spread over 10 distinct filters
       cost about as much per delivery as one without filters? The hub groups subscribers
       by filter and evaluates each distinct filter once per event, not once per
       subscriber. The server's second channel ``filtered`` declares ``component`` (eq)
       and ``level`` (min, order debug, info, warn, error, critical); event i's data is
       ``{"seq": i, "component": "c<i % 10>", "level": "critical", "payload": ...}`` (the
       same for every row). Three rows, each its own server process with N clients on
       ``/ws/filtered``; client j's query, with k = j % 10 (N/10 clients per filter):
         no filter                   none (one group; every event reaches all N);
         10 filters, all match       k = 0..4: ``component=c0,c1,...,c9&level=<L>`` and
                                     k = 5..9: ``component=c0,c1,...,c9,c10&level=<L>``,
                                     L = debug, info, warn, error, critical for k % 5 =
                                     0..4: 10 distinct filters (10 groups), two checks each,
                                     that every event passes: the deliveries equal row 1's,
                                     so the difference is the cost of the filters;
         10 filters, 1 in 10 match   ``component=c<k>``: event i reaches the N/10 clients
                                     with k = i % 10.
       Each row: K=1 bursts (one ``await asyncio.sleep(0)`` per event, as in 1.); E =
       ``--filter-deliveries`` / N events for rows 1 and 2, 10 x E for row 3, so every
       burst has the same number of deliveries. 1 warm-up burst of E/4 (row 3: 10 x E/4),
       then ``--runs`` timed bursts per row, interleaved in a rotating order (the three
       servers run side by side when the generator's fd budget holds 3 x N connections).
       Per client, the generator checks the exact number of frames (row 3: client j gets
       the seq values i with i % 10 == k) and client 0 the order of its seq values.
       deliveries/s = counted deliveries / (first publish -> last frame counted); srv
       µs/delivery = the server's CPU time (user+sys, from just before the burst request
       to just after the last frame is counted) / deliveries; ratio = a row's median µs
       per delivery / the no-filter row's. Row 3 is not only filter evaluation: each
       connection gets 1 event in 10, so adaptive coalescing (which groups a connection's
       queued frames into one write, lingering at most 4 loop iterations) puts fewer frames
       in each write: about 5 in rows 1 and 2, 1 in row 3 (write syscalls counted with
       strace at N=1000: 4.8, 4.5 and 1.0 frames per write), and the per-event costs
       (encoding, framing, history) are spread over N/10 recipients instead of N.

Usage
    python bench/compare.py                       # everything, about 10 minutes
    python bench/compare.py --clients 100,1000 --runs 3 --rates 100,200 --idle-clients 2000
    python bench/compare.py --only burst          # burst,steady,idle,filters (comma-separated)
    python bench/compare.py --only filters --filter-clients 5000 --runs 3 --plot ''
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import args as options
from harness import report, runner, servers
from harness.apps import COMPONENTS, FILTER_CHANNEL, LEVELS
from harness.report import Col
from harness.runner import Row
from harness.servers import row_label
from harness.target import Run, Step, Target

PEERS = ("websockets", "sanic-hub", "sanic-gather", "socketio")
REDIS = "sanic-realtime-redis"
REDIS_URL = "redis://127.0.0.1:6379/0"
PHASES = ("burst", "steady", "idle", "filters")
PEER_VERSIONS = ("python-socketio", "python-engineio", "aiohttp")


def kinds(args: argparse.Namespace, redis: bool = True) -> tuple[str, ...]:
    """sanic-realtime, its Redis row (unless --redis-url '' or not ``redis``) and the
    peers chosen with --peers."""
    own = ("sanic-realtime", REDIS) if redis and args.redis_url else ("sanic-realtime",)
    return (*own, *args.peers)


def label(kind: str) -> str:
    return servers.KINDS[kind].label


def make_target(
    kind: str,
    clients: int,
    buffer_size: int,
    args: argparse.Namespace,
    env: dict[str, str] | None = None,
    **extra: Any,
) -> Target:
    if kind == REDIS:  # its own key prefix per server: bench-<random>-<n>
        args.redis_servers += 1
        prefix = f"{args.redis_prefix}-{args.redis_servers}"
        env = {**(env or {}), "BENCH_BACKPLANE": args.redis_url, "BENCH_PREFIX": prefix}
    return Target.app(kind, clients, buffer_size, timeout=args.timeout, env=env, **extra)


def in_groups(items: list[Any], clients: int) -> list[list[Any]]:
    """``items`` in groups whose servers' clients fit the generator's fd budget at once."""
    per_group = max(1, servers.fd_budget() // clients)
    return [items[i : i + per_group] for i in range(0, len(items), per_group)]


# =========================================================================== measurements


async def phase_burst(args: argparse.Namespace, rows: list[Row], targets: list[Target]) -> None:
    for clients in args.clients:
        events = options.events_for(args, clients)
        buffer_size = options.buffer_for(args, events)

        def fit(row: Row, warm: Run, events: int = events, clients: int = clients) -> None:
            # A slow server gets fewer events (at least 10) so that a timed burst lasts
            # about --max-burst-seconds at its warm-up rate.
            row.events = min(events, max(10, round(warm.rate * args.max_burst_seconds / clients)))

        for group in in_groups([*kinds(args), "raw"], clients):
            started = {k: make_target(k, clients, buffer_size, args) for k in group}
            async with runner.serving(list(started.values()), targets):
                block = [Row(k, row_label(k, 1), clients, events, 1) for k in group]
                if "raw" in group:  # the raw server gives two rows: K=1 and K=0
                    block.append(Row("raw", row_label("raw", 0), clients, events, 0, k="-"))
                rows.extend(block)
                pairs = [(r, started[r.key]) for r in block]
                await runner.measure(pairs, args.runs, phase="burst", fit=fit)


async def phase_steady(
    args: argparse.Namespace, results: dict[str, list[Step]], targets: list[Target]
) -> None:
    started = {k: make_target(k, args.steady_clients, 4096, args) for k in kinds(args)}
    async with runner.serving(list(started.values()), targets):
        live = [k for k, t in started.items() if not t.problems]
        for k in started:
            results[k] = []
        for j, rate in enumerate(sorted(args.rates)):
            shift = j % len(live) if live else 0
            for kind in live[shift:] + live[:shift]:
                step = await started[kind].steady(
                    rate, args.steady_seconds, args.sample_every, args.grace
                )
                results[kind].append(step)
                print(
                    f"  steady {label(kind):<20} N={args.steady_clients} {rate:g} ev/s: "
                    f"achieved {step.achieved:.1f}, p50 {step.pct(0.5) * 1000:.1f} ms, "
                    f"p99 {step.pct(0.99) * 1000:.1f} ms, max {step.pct(1.0) * 1000:.1f} ms, "
                    f"lost {step.lost}, srv {step.srv_cpu:.0%}, gen {step.gen_cpu:.0%}"
                    + (f" PROBLEM {step.problem}" if step.problem else ""),
                    flush=True,
                )
            live = [k for k in live if results[k][-1].ok(args.p99_ms)]
            if not live:
                break
            await asyncio.sleep(1.0)  # let the stragglers of a failed rate drain


@dataclass
class Idle:
    kind: str
    clients: int
    before_kb: int = 0
    after_kb: int = 0
    run: Run | None = None
    step: Step | None = None
    pings: int = 0  # WebSocket pings the clients received (and answered) during the phase
    problem: str = ""

    @property
    def label(self) -> str:
        return row_label(self.kind, 1)

    @property
    def kb_per_conn(self) -> float:
        return (self.after_kb - self.before_kb) / self.clients


async def idle_one(row: Idle, target: Target, args: argparse.Namespace) -> None:
    await target.ready()
    await asyncio.sleep(0.5)
    row.before_kb = servers.rss_kb(target.server.proc.pid)
    t0 = time.monotonic()
    await target.connect()
    await asyncio.sleep(2.0)
    row.after_kb = servers.rss_kb(target.server.proc.pid)
    print(
        f"  idle {row.label:<20} N={row.clients}: connected in "
        f"{time.monotonic() - t0 - 2:.1f} s, RSS {row.before_kb / 1024:.1f} -> "
        f"{row.after_kb / 1024:.1f} MB = {row.kb_per_conn:.1f} KB/connection",
        flush=True,
    )
    if args.idle_events:
        outcome = await target.burst(args.idle_events, 1)
        if isinstance(outcome, str):
            row.problem = outcome
        else:
            row.run = outcome
            print(
                f"  idle {row.label:<20} N={row.clients}: one burst of "
                f"{args.idle_events} events: {outcome.rate:,.0f} deliveries/s",
                flush=True,
            )
    if args.idle_rate and row.kind != "raw":
        await asyncio.sleep(1.0)
        step = row.step = await target.steady(
            args.idle_rate, args.steady_seconds, args.sample_every, args.grace
        )
        print(
            f"  idle {row.label:<20} N={row.clients}: steady "
            f"{args.idle_rate:g} ev/s: achieved {step.achieved:.1f}, "
            f"p50 {step.pct(0.5) * 1000:.1f} ms, p99 {step.pct(0.99) * 1000:.1f} ms, "
            f"lost {step.lost}" + (f" PROBLEM {step.problem}" if step.problem else ""),
            flush=True,
        )
    row.pings = target.counter.pings


async def phase_idle(args: argparse.Namespace, results: list[Idle], targets: list[Target]) -> None:
    for kind in [*kinds(args, redis=False), "raw"]:
        row = Idle(kind, args.idle_clients)
        results.append(row)
        env: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if kind == "sanic-realtime":
            # As a deployment has it: filtered subscriptions (10 distinct filters that every
            # event matches, as in the filters phase) and heartbeats that actually happen.
            extra = {"path_of": _filter_path(all_match_filter), "channel": FILTER_CHANNEL}
            env = {"BENCH_HEARTBEAT": f"{args.idle_heartbeat:g}"}
        target = make_target(kind, args.idle_clients, 4096, args, env, **extra)
        async with runner.serving([target], targets, connect=False):
            try:
                await idle_one(row, target, args)
            except Exception as e:
                row.problem = f"{type(e).__name__}: {e}"
                target.problems.append(row.problem)


#: Every event's component is one of these (c0..c9); ``c10`` never occurs.
COMPONENT_LIST = ",".join(f"c{k}" for k in range(COMPONENTS))


def all_match_filter(k: int) -> str:
    """The query of the k-th (0..9) of 10 distinct filters that every event matches: each
    of the 5 ``level`` thresholds (every event is ``critical``), with component c0..c9 or
    c0..c10 (every event's component is among c0..c9)."""
    extra = "" if k < len(LEVELS) else f",c{COMPONENTS}"
    level = LEVELS[k % len(LEVELS)]
    return f"component={COMPONENT_LIST}{extra}&level={level}"


def one_in_ten_filter(k: int) -> str:
    return f"component=c{k}"


def one_in_ten_share(index: int, events: int) -> range:
    """Client j (component=c{j % 10}) gets the events i with i % 10 == j % 10."""
    return range(index % COMPONENTS, events, COMPONENTS)


def _filter_path(query_of: Callable[[int], str] | None) -> Callable[[int], str]:
    base = f"/ws/{FILTER_CHANNEL}"
    if query_of is None:
        return lambda j: base
    return lambda j: f"{base}?{query_of(j % COMPONENTS)}"


@dataclass
class FilterRow(Row):
    """One row of the filters phase: sanic-realtime, N clients on the filtered channel."""

    groups: int = 1  # distinct filters (the hub's groups) among the N clients
    per_event: int = 0  # recipients of each event

    @property
    def us_per_delivery(self) -> list[float]:
        """Per run: the server's CPU seconds in the timed window / deliveries, in µs."""
        return [x.srv_cpu / x.rate * 1e6 for x in self.runs]


def filter_rows(clients: int, events: int) -> list[tuple[FilterRow, dict[str, Any]]]:
    """The three rows and their Targets' options. Rows 1 and 2 publish ``events`` events
    to all N clients; row 3 publishes 10 x ``events`` events, each to N/10 clients, so that
    every row's burst has the same number of deliveries."""
    specs: list[tuple[str, Callable[[int], str] | None, Any]] = [
        ("no filter", None, None),
        ("10 filters, all match", all_match_filter, None),
        ("10 filters, 1 in 10 match", one_in_ten_filter, one_in_ten_share),
    ]
    out = []
    for name, query_of, share in specs:
        row_events = events if share is None else events * COMPONENTS
        row = FilterRow(name, name, clients, row_events, 1)
        row.groups = 1 if query_of is None else min(clients, COMPONENTS)
        row.per_event = clients if share is None else clients // COMPONENTS
        target_options = {
            "path_of": _filter_path(query_of),
            "share": share,
            "channel": FILTER_CHANNEL,
            "title": f"sanic-realtime [{name}]",
        }
        out.append((row, target_options))
    return out


async def phase_filters(
    args: argparse.Namespace, rows: list[FilterRow], targets: list[Target]
) -> None:
    """One sanic-realtime server per row, side by side when the fd budget allows (their
    timed bursts interleaved in a rotating order), else one group after the other."""
    clients = args.filter_clients
    events = max(10, round(args.filter_deliveries / clients))
    specs = filter_rows(clients, events)
    buffer_size = max(4096, 2 * max(r.events for r, _ in specs))

    def note(run: Run) -> str:
        return f", srv {run.srv_cpu / run.rate * 1e6:.3f} µs/delivery"

    for group in in_groups(specs, clients):
        started = {
            r.key: make_target("sanic-realtime", clients, buffer_size, args, **kw)
            for r, kw in group
        }
        async with runner.serving(list(started.values()), targets):
            rows.extend(r for r, _ in group)
            pairs: list[tuple[Row, Target]] = [(r, started[r.key]) for r, _ in group]
            await runner.measure(pairs, args.runs, phase="filters", note=note)


# =========================================================================== report


def print_burst(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        "== 1. Burst fan-out: deliveries/s (median of runs), K=1 (one event per loop turn); "
        "reference rows: bare write = one transport.write per frame per client (K=1), "
        "generator ceiling = each client's whole burst in one write (K=0)"
    )
    cols = [
        report.label_col("server", 20),
        Col("clients", 8, lambda r: str(r.clients)),
        Col("events", 7, lambda r: str(r.events)),
        *report.rate_cols(22),
        report.lag_col(7),
        report.SRV,
        report.GEN,
    ]
    report.table(cols, rows)
    print()
    redis = REDIS in kinds(args)
    print(
        "ratio sanic-realtime / peer (medians)"
        + (
            "; redis / memory = sanic-realtime with the Redis backplane / with memory"
            if redis
            else ""
        )
        + ":"
    )
    print(
        f"{'clients':>8}"
        + "".join(f"{label(p):>22}" for p in args.peers)
        + (f"{'redis / memory':>22}" if redis else "")
    )
    for n in args.clients:
        med = {r.key: r.median for r in rows if r.clients == n and r.yield_every == 1}
        mine = med.get("sanic-realtime", 0.0)
        print(
            f"{n:>8}"
            + "".join(f"{report.ratio(mine, med.get(p, 0.0)):>22}" for p in args.peers)
            + (f"{report.ratio(med.get(REDIS, 0.0), mine):>22}" if redis else "")
        )
    print()


def sustained(steps: list[Step], p99_ms: float) -> float:
    best = 0.0
    for s in steps:
        if not s.ok(p99_ms):
            break
        best = s.rate
    return best


def _ms(q: float) -> Col[tuple[str, Step]]:
    return Col({0.5: "p50", 0.99: "p99", 1.0: "max"}[q], 8, lambda x: f"{x[1].pct(q) * 1000:.1f}ms")


def print_steady(results: dict[str, list[Step]], args: argparse.Namespace) -> None:
    print(
        f"== 2. Steady rate to {args.steady_clients} clients, {args.steady_seconds:g} s per "
        f"rate; latency on every {args.sample_every}th client"
    )
    cols: list[Col[tuple[str, Step]]] = [
        Col("server", 20, lambda x: label(x[0]), left=True),
        Col("rate", 6, lambda x: f"{x[1].rate:g}"),
        Col("achieved", 9, lambda x: f"{x[1].achieved:.1f}"),
        Col("late", 9, lambda x: f"{x[1].late_ms:.0f}ms"),
        _ms(0.5),
        _ms(0.99),
        _ms(1.0),
        Col("samples", 9, lambda x: str(len(x[1].latencies))),
        Col("lost", 8, lambda x: str(x[1].lost)),
        Col("srv%", 6, lambda x: f"{x[1].srv_cpu:.0%}"),
        Col("gen%", 6, lambda x: f"{x[1].gen_cpu:.0%}"),
        Col(
            "ok",
            3,
            lambda x: (
                ("yes" if x[1].ok(args.p99_ms) else "NO")
                + (f"  {x[1].problem}" if x[1].problem else "")
            ),
            left=True,
            gap=2,
        ),
    ]
    report.table(cols, [(kind, s) for kind, steps in results.items() for s in steps])
    print()
    first = min(args.rates)
    print(
        f"highest rate sustained (p99 <= {args.p99_ms:g} ms, nothing lost, achieved >= 98%) "
        f"among {','.join(f'{r:g}' for r in sorted(args.rates))} ev/s; ratios of sanic-realtime:"
    )
    mine = sustained(results.get("sanic-realtime", []), args.p99_ms)
    mine_first = next((s for s in results.get("sanic-realtime", []) if s.rate == first), None)
    for kind, steps in results.items():
        best = sustained(steps, args.p99_ms)
        at = next((s for s in steps if s.rate == first), None)
        p99 = at.pct(0.99) * 1000 if at else float("nan")
        extra = ""
        if kind == REDIS:
            extra = f"; rate ratio redis / memory {report.ratio(best, mine)}"
            if at and mine_first:
                ratio = report.ratio(p99 / 1000, mine_first.pct(0.99))
                extra += f", p99 at {first:g} ev/s redis / memory {ratio}"
        elif kind != "sanic-realtime":
            extra = f"; rate ratio {report.ratio(mine, best)}"
            if at and mine_first:
                ratio = report.ratio(mine_first.pct(0.99), p99 / 1000)
                extra += f", p99 at {first:g} ev/s ratio {ratio} (below 1 = sanic-realtime lower)"
        top = f"{best:g} ev/s" if best else f"none (< {first:g})"
        print(f"  {label(kind):<20} sustained {top:<14} p99 at {first:g} ev/s {p99:.1f} ms{extra}")
    print()


def _first_line(text: str, limit: int = 200) -> str:
    return text.strip().splitlines()[0][:limit] if text.strip() else ""


def _idle_steady(r: Idle) -> str:
    st = r.step
    if st is None:
        return ""
    text = (
        f"{st.achieved:.1f}, {st.pct(0.5) * 1000:.1f} ms, {st.pct(0.99) * 1000:.1f} ms, {st.lost}"
    )
    return text + (f" PROBLEM {_first_line(st.problem, 120)}" if st.problem else "")


def print_idle(results: list[Idle], args: argparse.Namespace) -> None:
    if not results:
        return
    n = results[0].clients
    print(f"== 3. {n} idle connections per server process (one server at a time)")
    rate_now = next((r.step.rate for r in results if r.step), 0.0)
    steady_title = f"steady {rate_now:g} ev/s: achieved, p50, p99, lost" if rate_now else ""
    cols: list[Col[Idle]] = [
        Col("server", 20, lambda r: r.label, left=True),
        Col("RSS ready", 10, lambda r: f"{r.before_kb / 1024:.1f}MB"),
        Col(f"RSS +{n}", 12, lambda r: f"{r.after_kb / 1024:.1f}MB"),
        Col("KB/conn", 9, lambda r: f"{r.kb_per_conn:.1f}" if r.after_kb else "?"),
        Col(
            "events",
            8,
            lambda r: f"{round(r.run.rate * r.run.elapsed / r.clients)}" if r.run else "",
        ),
        Col("deliveries/s (1 burst)", 24, lambda r: f"{r.run.rate:,.0f}" if r.run else "FAILED"),
        Col("srv%", 6, lambda r: f"{r.run.srv_cpu:.0%}" if r.run else ""),
        Col("gen%", 6, lambda r: f"{r.run.gen_cpu:.0%}" if r.run else ""),
        Col(steady_title, 0, _idle_steady, left=True, gap=2),
        Col(
            "",
            0,
            lambda r: f"PROBLEM {_first_line(r.problem)}" if r.problem else "",
            left=True,
            gap=2,
        ),
    ]
    report.table(cols, results)
    pings = ", ".join(f"{r.label} {r.pings}" for r in results)
    print(
        "sanic-realtime: clients on /ws/filtered with 10 distinct filters that match every "
        f"event; heartbeat_interval {args.idle_heartbeat:g} s (client_timeout 3x)\n"
        f"pings received and answered by the clients during the phase: {pings}"
    )
    mine = next((r for r in results if r.kind == "sanic-realtime"), None)
    if mine and mine.after_kb:
        print("ratios of sanic-realtime: KB/conn and deliveries/s")
        for r in results:
            if r.kind in args.peers and r.after_kb:
                rates = report.ratio(
                    mine.run.rate if mine.run else None, r.run.rate if r.run else None
                )
                print(
                    f"  vs {r.label:<20} KB/conn {report.ratio(mine.kb_per_conn, r.kb_per_conn)}"
                    f", deliveries/s {rates}"
                )
    print()


def print_filters(rows: list[FilterRow], args: argparse.Namespace) -> None:
    if not rows:
        return
    n = rows[0].clients
    print(
        f"== 4. Filter cost: sanic-realtime, {n} clients on the channel "
        f"'{FILTER_CHANNEL}', K=1; medians of {args.runs} runs; srv µs/delivery = "
        "server CPU (user+sys) in the timed window / deliveries"
    )
    base = statistics.median(rows[0].us_per_delivery) if rows[0].runs else 0.0

    def us(r: FilterRow) -> float | None:
        return statistics.median(r.us_per_delivery) if r.runs else None

    cols: list[Col[FilterRow]] = [
        Col("row", 27, lambda r: r.label, left=True),
        Col("filters", 8, lambda r: str(r.groups if r.key != "no filter" else 0)),
        Col("recip/ev", 9, lambda r: str(r.per_event)),
        Col("events", 7, lambda r: str(r.events)),
        *report.rate_cols(22),
        Col("srv µs/deliv", 13, lambda r: f"{us(r):.3f}" if r.runs else ""),
        Col("min..max", 13, lambda r: report.spread(r.us_per_delivery, ".3f"), left=True, gap=2),
        Col("ratio", 7, lambda r: report.ratio(us(r), base) if r.runs else ""),
        report.SRV,
        report.GEN,
    ]
    report.table(cols, rows)
    print(
        "ratio = the row's srv µs/delivery / the no-filter row's (1.00x: filters add nothing "
        "per delivery)"
    )
    path = f"/ws/{FILTER_CHANNEL}"
    print(
        f"client j connects to (k = j % {COMPONENTS}; every event has component "
        f"c<seq % {COMPONENTS}> and level {LEVELS[-1]}):"
    )
    print(f"  no filter                  {path}")
    for k in range(COMPONENTS):
        print(f"  10 filters, all match      k={k}: {path}?{all_match_filter(k)}")
    print(f"  10 filters, 1 in 10 match  {path}?component=c<k>")
    print(
        "row 3 publishes 10x the events (same deliveries per burst); each connection gets 1 "
        "event in 10,\n  so fewer frames share each coalesced write: its cost per delivery "
        "is not only filter evaluation"
    )
    print()


def plot(
    rows: list[Row], idle: list[Idle], path: str, title: str, args: argparse.Namespace
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for kind, k in [*((s, 1) for s in kinds(args)), ("raw", 1), ("raw", 0)]:
        pts = sorted(
            (r.clients, r.median) for r in rows if r.key == kind and r.yield_every == k and r.runs
        )
        style: dict[str, Any] = {}
        name = label(kind)
        if kind == "raw":
            style = {"linestyle": ":" if k else "--", "color": "grey" if k else "black"}
            name = "bare write (reference)" if k else "generator ceiling (not a server)"
        lines = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, **style)
        one = next((r for r in idle if r.kind == kind and r.run and k), None)
        if one is not None and one.run is not None:
            ax.plot(
                [one.clients],
                [one.run.rate],
                marker="o",
                markerfacecolor="none",
                linestyle="none",
                color=lines[0].get_color(),
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connected clients (one server process)")
    ax.set_ylabel("deliveries/s")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if idle:
        ax.annotate(
            f"hollow markers at {idle[0].clients}: one burst, not a median",
            xy=(0.01, 0.01),
            xycoords="axes fraction",
            fontsize=7,
        )
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot written: {os.path.relpath(path, report.ROOT)}")


async def orchestrate(args: argparse.Namespace) -> int:
    pinned = servers.pin_generator()
    t0 = time.monotonic()
    source = report.header(
        "sanic-realtime vs peers: burst fan-out, steady rate, idle memory, filter cost",
        packages=PEER_VERSIONS,
        pinning=f"servers on CPU {servers.SERVER_CPU}, load generator on CPU "
        f"{servers.GENERATOR_CPU}"
        if pinned
        else "NOT pinned (needs 2 CPUs and sched_setaffinity)",
    )
    print(f"generator fd budget: {servers.fd_budget()} connections at once")
    probe: servers.RedisProbe | None = None
    if args.redis_url and {"burst", "steady"} & set(args.only):
        probe = servers.RedisProbe(args.redis_url)
        try:
            info = await probe.server()
        except Exception as e:
            print(
                f"Redis at {args.redis_url} is not reachable ({e}); --redis-url '' runs without it"
            )
            await probe.close()
            return 1
        print(
            f"sanic-realtime redis: redis-server {info['redis_version']} at {args.redis_url}, "
            f"key prefix {args.redis_prefix}-*"
        )
    print()
    rows: list[Row] = []
    steady_results: dict[str, list[Step]] = {}
    idle: list[Idle] = []
    filter_results: list[FilterRow] = []
    targets: list[Target] = []
    try:
        if "burst" in args.only:
            await phase_burst(args, rows, targets)
        if "steady" in args.only:
            await phase_steady(args, steady_results, targets)
    finally:
        if probe is not None:
            deleted = 0
            with contextlib.suppress(Exception):
                deleted = await probe.delete(f"{args.redis_prefix}-*")
            await probe.close()
            print(f"Redis clean-up: deleted {deleted} keys matching {args.redis_prefix}-*")
    if "idle" in args.only:
        await phase_idle(args, idle, targets)
    if "filters" in args.only:
        await phase_filters(args, filter_results, targets)
    print()
    if rows:
        print_burst(rows, args)
    if steady_results:
        print_steady(steady_results, args)
    print_idle(idle, args)
    print_filters(filter_results, args)
    report.event_loops(targets)
    report.checks(targets, [*rows, *filter_results], title="checks, per server process:")
    print()
    if rows and args.plot:
        os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
        title = (
            f"Fan-out of one server process (CPU 0) to N clients (generator on CPU 1); "
            f"median of {args.runs} bursts, K=1\n{os.cpu_count()} CPUs, {report.cpu_model()}"
        )
        plot(rows, idle, args.plot, title, args)
    print(f"total time {time.monotonic() - t0:.0f} s")
    if report.sources_changed(source):
        return 1
    return 1 if report.failed([*rows, *filter_results], targets) else 0


def _names(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {','.join(known)}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_bursts(
        parser,
        clients=[100, 1000, 5000],
        deliveries=300_000,
        timeout=120.0,
        yield_every=False,
        events=False,
        buffer_size=False,
        quick=False,
    )
    parser.add_argument(
        "--max-burst-seconds",
        type=float,
        default=6.0,
        help="fewer events (>= 10) for a server whose warm-up rate predicts a longer burst",
    )
    parser.add_argument("--steady-clients", type=int, default=1000)
    parser.add_argument(
        "--rates", type=options.float_list, default=[100, 125, 150, 200, 300, 400, 600, 800, 1200]
    )
    parser.add_argument("--steady-seconds", type=float, default=5.0)
    parser.add_argument("--sample-every", type=int, default=10)
    parser.add_argument("--grace", type=float, default=3.0)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--idle-clients", type=int, default=10_000)
    parser.add_argument("--idle-events", type=int, default=10, help="0 = no burst")
    parser.add_argument(
        "--idle-rate", type=float, default=10.0, help="steady ev/s at --idle-clients (0 = none)"
    )
    parser.add_argument(
        "--idle-heartbeat",
        type=float,
        default=5.0,
        help="sanic-realtime's heartbeat_interval (s) in the idle phase; client_timeout 3x",
    )
    parser.add_argument("--filter-clients", type=int, default=5000)
    parser.add_argument(
        "--filter-deliveries",
        type=int,
        default=1_000_000,
        help="deliveries per timed burst of each filters row",
    )
    parser.add_argument(
        "--only",
        type=lambda text: _names(text, PHASES, "--only"),
        default=PHASES,
        help=f"comma-separated: {','.join(PHASES)}",
    )
    parser.add_argument(
        "--plot",
        default=os.path.join(report.ROOT, "docs", "benchmarks-fanout.png"),
        help="PNG path ('' = none)",
    )
    parser.add_argument(
        "--redis-url",
        default=REDIS_URL,
        help="the Redis of the 'sanic-realtime redis' row in the burst and steady phases "
        f"(default {REDIS_URL}; '' = no Redis row)",
    )
    parser.add_argument(
        "--peers",
        type=lambda text: _names(text, PEERS, "peers"),
        default=PEERS,
        help=f"comma-separated peers to run next to sanic-realtime (default {','.join(PEERS)})",
    )
    args = parser.parse_args()
    options.check_bursts(parser, args)
    for name in ("steady_clients", "idle_clients", "filter_clients", "sample_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    servers.raise_nofile()
    args.redis_prefix = f"bench-{secrets.token_hex(4)}"
    args.redis_servers = 0
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
