"""sanic-realtime side by side with its peers: burst fan-out, steady rate, idle memory, filter cost.

One command runs every measurement of the issue "Fan-out at the speed limit", prints one
table per measurement with the ratios of sanic-realtime to each peer (for the filter
cost, of each filtered row to the unfiltered one), and writes
``docs/benchmarks-fanout.png`` (deliveries/s vs clients, one line per server).

Servers (each a real server in its own subprocess, pinned to CPU 0; uvloop everywhere)
    sanic-realtime      ``bench/fanout.py``'s server: Sanic + ``Realtime`` (memory backplane),
                        ``await rt.publish("bench", "tick", data)`` per event.
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

Load generator: ``bench/fanout.py``'s raw ``asyncio.Protocol`` clients on uvloop, pinned to
CPU 1 (frame headers parsed, frames counted; client 0 checks every seq and the order).

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
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fanout

HERE = os.path.abspath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS = ("websockets", "sanic-hub", "sanic-gather", "socketio")
SERVERS = ("sanic-realtime", *PEERS)
fanout.LABEL.update(
    {"sanic-hub": "sanic hub", "sanic-gather": "sanic gather", "socketio": "python-socketio"}
)
METHOD = {"sanic-realtime": "POST", "sanic-hub": "POST", "sanic-gather": "POST"}
PATH = {"socketio": "/socket.io/?EIO=4&transport=websocket"}


def label(kind: str) -> str:
    """Servers by kind; the raw server as a whole is the reference/ceiling server."""
    return "raw (bare write ref)" if kind == "raw" else fanout.LABEL[kind]


# =========================================================================== peer servers


def _envelope(state: dict[str, int], data: dict[str, Any]) -> dict[str, Any]:
    state["offset"] += 1
    return {
        "type": "tick",
        "channel": "bench",
        "id": f"peer:{state['offset']}",
        "timestamp": fanout._timestamp(),
        "data": data,
    }


def _data(i: int, pt: float | None = None) -> dict[str, Any]:
    if pt is None:
        return {"seq": i, "payload": fanout.PAYLOAD}
    return {"seq": i, "pt": pt, "payload": fanout.PAYLOAD}


def serve_sanic_peer(port: int, mode: str) -> None:
    """Sanic's own WebSocket support and a hand-written hub (the app a user would write)."""
    import msgspec
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse
    from sanic.response import json as json_response

    app = Sanic("bench_" + mode.replace("-", "_"))
    app.config.AUTO_EXTEND = False
    clients: set[Any] = set()
    encode = msgspec.json.Encoder().encode
    state = {"offset": 0}

    if mode == "sanic-hub":

        async def send_all(frame: str) -> None:
            for ws in list(clients):
                await ws.send(frame)

    else:

        async def send_all(frame: str) -> None:
            await asyncio.gather(*(ws.send(frame) for ws in clients))

    @app.websocket("/ws/bench")
    async def feed(request: Request, ws: Any) -> None:
        clients.add(ws)
        try:
            hello = {"type": "connection_established", "timestamp": fanout._timestamp()}
            await ws.send(encode({**hello, "data": {}}).decode())
            await ws.wait_for_connection_lost()
        finally:
            clients.discard(ws)

    @app.post("/bench/burst")
    async def burst(request: Request) -> HTTPResponse:
        events = int(request.args.get("events", "1"))
        every = int(request.args.get("yield_every", "1"))
        recipients = 0
        t_start = time.monotonic()
        for i in range(events):
            recipients += len(clients)
            await send_all(encode(_envelope(state, _data(i))).decode())
            if every and (i + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return json_response({"t_start": t_start, "t_end": t_end, "recipients": recipients})

    @app.post("/bench/steady")
    async def steady(request: Request) -> HTTPResponse:
        rate, duration = fanout.steady_args({k: request.args.get(k) for k in request.args})

        async def publish(i: int, pt: float) -> None:
            await send_all(encode(_envelope(state, _data(i, pt))).decode())

        return json_response(await fanout.steady_loop(publish, rate, duration))

    @app.get("/bench/info")
    async def info(request: Request) -> HTTPResponse:
        return json_response({**fanout._info(), "clients": len(clients)})

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def serve_socketio(port: int) -> None:
    """python-socketio 5 on aiohttp (uvloop), emitting to everyone."""
    import socketio
    import uvloop
    from aiohttp import web

    # always_connect: the "40" answer goes out before the connect handler's welcome.
    sio = socketio.AsyncServer(async_mode="aiohttp", always_connect=True)
    app = web.Application()
    sio.attach(app)
    connected: set[str] = set()
    state = {"offset": 0}

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        connected.add(sid)
        hello = {"type": "connection_established", "timestamp": fanout._timestamp()}
        await sio.emit("connection_established", {**hello, "data": {}}, to=sid)

    @sio.event
    async def disconnect(sid: str, *args: Any) -> None:
        connected.discard(sid)

    async def burst(request: web.Request) -> web.Response:
        events = int(request.query.get("events", "1"))
        every = int(request.query.get("yield_every", "1"))
        recipients = 0
        t_start = time.monotonic()
        for i in range(events):
            recipients += len(connected)
            await sio.emit("tick", _envelope(state, _data(i)))
            if every and (i + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return web.json_response({"t_start": t_start, "t_end": t_end, "recipients": recipients})

    async def steady(request: web.Request) -> web.Response:
        rate, duration = fanout.steady_args(dict(request.query))

        async def publish(i: int, pt: float) -> None:
            await sio.emit("tick", _envelope(state, _data(i, pt)))

        return web.json_response(await fanout.steady_loop(publish, rate, duration))

    async def info(request: web.Request) -> web.Response:
        return web.json_response({**fanout._info(), "clients": len(connected)})

    app.router.add_get("/bench/burst", burst)
    app.router.add_get("/bench/steady", steady)
    app.router.add_get("/bench/info", info)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        await asyncio.Event().wait()

    uvloop.run(main())


# =========================================================================== measurements


def make_target(
    kind: str, clients: int, buffer_size: int, timeout: float, **options: Any
) -> fanout.Target:
    """A Target for ``kind``; ``options``: fanout.Target's keyword arguments (path_of,
    share, channel, title, ...), over the kind's defaults."""
    defaults: dict[str, Any] = {
        "script": HERE,
        "method": METHOD.get(kind, "GET"),
        "path": PATH.get(kind, "/ws/bench"),
        "eio": kind == "socketio",
    }
    return fanout.Target(kind, clients, buffer_size, timeout, False, **{**defaults, **options})


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_budget() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (soft if soft != resource.RLIM_INFINITY else 1 << 20) - 500


async def start_all(kinds: list[str], clients: int, buffer_size: int, args: Any) -> dict:
    return await start_targets(
        {kind: make_target(kind, clients, buffer_size, args.timeout) for kind in kinds}
    )


async def start_targets(started: dict[str, fanout.Target]) -> dict[str, fanout.Target]:
    """Connect each target's clients, one target after the other; a target that fails to
    start keeps the reason in its ``problems``."""
    for target in started.values():
        try:
            await target.start()
        except Exception as e:
            target.problems.append(f"start: {type(e).__name__}: {e}")
            if target.server.proc.poll() is not None:
                target.problems.append(f"server log tail:\n{target.server.tail()}")
    return started


async def finish(started: dict[str, fanout.Target], targets: list[fanout.Target]) -> None:
    for target in started.values():
        if not target.problems:
            try:
                await target.check()
            except Exception as e:
                target.problems.append(f"check: {type(e).__name__}: {e}")
        targets.append(target)
        await target.stop()


async def warm_up(
    pairs: list[tuple[fanout.Row, fanout.Target]],
) -> list[tuple[fanout.Row, fanout.Target, fanout.Run]]:
    """One untimed burst of E/4 events per row; the rows that passed, with that burst."""
    live = []
    for r, target in pairs:
        if target.problems:
            r.problems.append("server did not start")
            continue
        warm = await target.burst(max(1, r.events // 4), r.yield_every)
        if isinstance(warm, str):
            r.problems.append(f"warm-up: {warm}")
            continue
        live.append((r, target, warm))
    return live


async def interleaved(
    pairs: list[tuple[fanout.Row, fanout.Target]],
    runs: int,
    phase: str,
    note: Callable[[fanout.Run], str] | None = None,
) -> None:
    """``runs`` timed bursts per row, one row after the other in an order rotated each
    round, so that a slow stretch of the machine hits every row alike."""
    for i in range(runs):
        shift = i % len(pairs) if pairs else 0
        for r, target in pairs[shift:] + pairs[:shift]:
            if r.problems:
                continue
            outcome = await target.burst(r.events, r.yield_every)
            if isinstance(outcome, str):
                r.problems.append(f"run {i + 1}: {outcome}")
                continue
            r.runs.append(outcome)
            print(
                f"  {phase} {r.label:<20} N={r.clients:<5} run {i + 1}: "
                f"{outcome.rate:>10,.0f} deliveries/s ({outcome.elapsed:.3f} s, "
                f"srv {outcome.srv_cpu:.0%}, gen {outcome.gen_cpu:.0%}"
                + (note(outcome) if note else "")
                + ")",
                flush=True,
            )


async def phase_burst(args: Any, rows: list[fanout.Row], targets: list[fanout.Target]) -> None:
    kinds = [*SERVERS, "raw"]
    for clients in args.clients:
        events = max(10, round(args.deliveries / clients))
        buffer_size = max(4096, 2 * events)
        per_group = max(1, fd_budget() // clients)
        groups = [kinds[i : i + per_group] for i in range(0, len(kinds), per_group)]
        for group in groups:
            started = await start_all(group, clients, buffer_size, args)
            try:
                block = [fanout.Row(k, clients, events, 1) for k in group]
                if "raw" in group:  # the raw server gives two rows: K=1 and K=0
                    block.append(fanout.Row("raw", clients, events, 0))
                rows.extend(block)
                live = await warm_up([(r, started[r.kind]) for r in block])
                for r, _, warm in live:
                    # A slow server gets fewer events (at least 10) so that a timed burst
                    # lasts about --max-burst-seconds at its warm-up rate.
                    fit = round(warm.rate * args.max_burst_seconds / clients)
                    r.events = min(events, max(10, fit))
                await interleaved([(r, t) for r, t, _ in live], args.runs, "burst")
            finally:
                await finish(started, targets)


@dataclass
class Step:
    rate: float
    events: int = 0
    achieved: float = 0.0
    late_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    srv_cpu: float = 0.0
    gen_cpu: float = 0.0
    problem: str = ""

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]

    def ok(self, p99_ms: float) -> bool:
        return (
            not self.problem
            and self.lost == 0
            and bool(self.latencies)
            and self.pct(0.99) * 1000 <= p99_ms
            and self.achieved >= 0.98 * self.rate
        )


async def steady(t: fanout.Target, rate: float, args: Any) -> Step:
    step = Step(rate)
    n = max(1, round(rate * args.steady_seconds))
    step.events = n
    base = t.counter.total
    sampled = [c for c in t.conns if c.index % args.sample_every == 0]
    for c in sampled:
        c.latency = []
    info0 = await t.info()
    cpu0, w0 = time.process_time(), time.monotonic()
    waiter = t.counter.expect(base + n * t.clients)
    query = f"/bench/steady?rate={rate:g}&duration={args.steady_seconds:g}"
    if t.channel:
        query += f"&channel={t.channel}"
    try:
        answer = await fanout.http(
            t.server.port, t.server.method, query, timeout=args.steady_seconds * 4 + 60
        )
    except Exception as e:
        step.problem = f"{query}: {type(e).__name__}: {e}"
        return step
    t.bursts.append(n)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(waiter, args.grace)
    cpu1, w1 = time.process_time(), time.monotonic()
    info1 = await t.info()
    for c in sampled:
        step.latencies.extend(c.latency or [])
        c.latency = None
    step.latencies.sort()
    step.lost = n * t.clients - (t.counter.total - base)
    step.achieved = answer["achieved"]
    step.late_ms = answer["late_ms"]
    step.srv_cpu = (info1["cpu"] - info0["cpu"]) / (w1 - w0)
    step.gen_cpu = (cpu1 - cpu0) / (w1 - w0)
    if t.counter.lost_connections or t.counter.closes:
        step.problem = (
            f"connections lost: {t.counter.lost_connections}, close frames: {len(t.counter.closes)}"
        )
    return step


async def phase_steady(
    args: Any, results: dict[str, list[Step]], targets: list[fanout.Target]
) -> None:
    started = await start_all(list(SERVERS), args.steady_clients, 4096, args)
    try:
        live = [k for k in SERVERS if not started[k].problems]
        for k in SERVERS:
            results[k] = []
        for j, rate in enumerate(sorted(args.rates)):
            shift = j % len(live) if live else 0
            for kind in live[shift:] + live[:shift]:
                step = await steady(started[kind], rate, args)
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
    finally:
        await finish(started, targets)


@dataclass
class Idle:
    kind: str
    clients: int
    before_kb: int = 0
    after_kb: int = 0
    run: fanout.Run | None = None
    step: Step | None = None
    pings: int = 0  # WebSocket pings the clients received (and answered) during the phase
    problem: str = ""

    @property
    def kb_per_conn(self) -> float:
        return (self.after_kb - self.before_kb) / self.clients


async def phase_idle(args: Any, results: list[Idle], targets: list[fanout.Target]) -> None:
    for kind in [*SERVERS, "raw"]:
        row = Idle(kind, args.idle_clients)
        results.append(row)
        options: dict[str, Any] = {}
        if kind == "sanic-realtime":
            # As a deployment has it: filtered subscriptions (10 distinct filters that every
            # event matches, as in the filters phase) and heartbeats that actually happen.
            options = {"path_of": _filter_path(all_match_filter), "channel": fanout.FILTER_CHANNEL}
            os.environ["BENCH_HEARTBEAT"] = f"{args.idle_heartbeat:g}"
        try:
            target = make_target(kind, args.idle_clients, 4096, args.timeout, **options)
        finally:
            os.environ.pop("BENCH_HEARTBEAT", None)
        started = {kind: target}
        try:
            await target.server.wait_ready()
            await asyncio.sleep(0.5)
            row.before_kb = rss_kb(target.server.proc.pid)
            t0 = time.monotonic()
            await target.start()
            await asyncio.sleep(2.0)
            row.after_kb = rss_kb(target.server.proc.pid)
            print(
                f"  idle {label(kind):<20} N={args.idle_clients}: connected in "
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
                        f"  idle {label(kind):<20} N={args.idle_clients}: one burst of "
                        f"{args.idle_events} events: {outcome.rate:,.0f} deliveries/s",
                        flush=True,
                    )
            if args.idle_rate and kind != "raw":
                await asyncio.sleep(1.0)
                step = row.step = await steady(target, args.idle_rate, args)
                print(
                    f"  idle {label(kind):<20} N={args.idle_clients}: steady "
                    f"{args.idle_rate:g} ev/s: achieved {step.achieved:.1f}, "
                    f"p50 {step.pct(0.5) * 1000:.1f} ms, p99 {step.pct(0.99) * 1000:.1f} ms, "
                    f"lost {step.lost}" + (f" PROBLEM {step.problem}" if step.problem else ""),
                    flush=True,
                )
            row.pings = target.counter.pings
        except Exception as e:
            row.problem = f"{type(e).__name__}: {e}"
            target.problems.append(row.problem)
        finally:
            await finish(started, targets)


#: Every event's component is one of these (c0..c9); ``c10`` never occurs.
COMPONENT_LIST = ",".join(f"c{k}" for k in range(fanout.COMPONENTS))


def all_match_filter(k: int) -> str:
    """The query of the k-th (0..9) of 10 distinct filters that every event matches: each
    of the 5 ``level`` thresholds (every event is ``critical``), with component c0..c9 or
    c0..c10 (every event's component is among c0..c9)."""
    extra = "" if k < len(fanout.LEVELS) else f",c{fanout.COMPONENTS}"
    level = fanout.LEVELS[k % len(fanout.LEVELS)]
    return f"component={COMPONENT_LIST}{extra}&level={level}"


def one_in_ten_filter(k: int) -> str:
    return f"component=c{k}"


def _one_in_ten_share(index: int, events: int) -> range:
    """Client j (component=c{j % 10}) gets the events i with i % 10 == j % 10."""
    return range(index % fanout.COMPONENTS, events, fanout.COMPONENTS)


def _filter_path(query_of: Callable[[int], str] | None) -> Callable[[int], str]:
    base = f"/ws/{fanout.FILTER_CHANNEL}"
    if query_of is None:
        return lambda j: base
    return lambda j: f"{base}?{query_of(j % fanout.COMPONENTS)}"


@dataclass
class FilterRow(fanout.Row):
    """One row of the filters phase: sanic-realtime, N clients on the filtered channel."""

    name: str = ""
    groups: int = 1  # distinct filters (the hub's groups) among the N clients
    per_event: int = 0  # recipients of each event

    @property
    def label(self) -> str:
        return self.name

    @property
    def us_per_delivery(self) -> list[float]:
        """Per run: the server's CPU seconds in the timed window / deliveries, in µs."""
        return [x.srv_cpu / x.rate * 1e6 for x in self.runs]


def filter_rows(clients: int, events: int) -> list[tuple[FilterRow, dict[str, Any]]]:
    """The three rows and their Targets' options. Rows 1 and 2 publish ``events`` events
    to all N clients; row 3 publishes 10 x ``events`` events, each to N/10 clients, so that
    every row's burst has the same number of deliveries."""
    n10 = fanout.COMPONENTS
    specs: list[tuple[str, Callable[[int], str] | None, Any]] = [
        ("no filter", None, None),
        ("10 filters, all match", all_match_filter, None),
        ("10 filters, 1 in 10 match", one_in_ten_filter, _one_in_ten_share),
    ]
    out = []
    for name, query_of, share in specs:
        row_events = events if share is None else events * n10
        row = FilterRow("sanic-realtime", clients, row_events, 1, name=name)
        row.groups = 1 if query_of is None else min(clients, n10)
        row.per_event = clients if share is None else clients // n10
        options = {
            "path_of": _filter_path(query_of),
            "share": share,
            "channel": fanout.FILTER_CHANNEL,
            "title": f"sanic-realtime [{name}]",
        }
        out.append((row, options))
    return out


async def phase_filters(args: Any, rows: list[FilterRow], targets: list[fanout.Target]) -> None:
    """One sanic-realtime server per row, side by side when the fd budget allows (their
    timed bursts interleaved in a rotating order), else one group after the other."""
    clients = args.filter_clients
    events = max(10, round(args.filter_deliveries / clients))
    specs = filter_rows(clients, events)
    buffer_size = max(4096, 2 * max(r.events for r, _ in specs))
    per_group = max(1, fd_budget() // clients)
    for first in range(0, len(specs), per_group):
        group = specs[first : first + per_group]
        started = await start_targets(
            {
                r.name: make_target("sanic-realtime", clients, buffer_size, args.timeout, **kw)
                for r, kw in group
            }
        )
        try:
            rows.extend(r for r, _ in group)
            live = await warm_up([(r, started[r.name]) for r, _ in group])

            def note(run: fanout.Run) -> str:
                return f", srv {run.srv_cpu / run.rate * 1e6:.3f} µs/delivery"

            await interleaved([(r, t) for r, t, _ in live], args.runs, "filters", note)
        finally:
            await finish(started, targets)


# =========================================================================== report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def print_burst(rows: list[fanout.Row], args: Any) -> None:
    print(
        "== 1. Burst fan-out: deliveries/s (median of runs), K=1 (one event per loop turn); "
        "reference rows: bare write = one transport.write per frame per client (K=1), "
        "generator ceiling = each client's whole burst in one write (K=0)"
    )
    header = (
        f"{'server':<20}{'clients':>8}{'events':>7}{'deliveries/s':>14}  {'min..max':<22}"
        f"{'lag':>7}{'srv%':>6}{'gen%':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.runs:
            rates = [x.rate for x in r.runs]
            spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
            lag = round(statistics.median(x.lag for x in r.runs) * 1000)
            srv = statistics.median(x.srv_cpu for x in r.runs)
            gen = statistics.median(x.gen_cpu for x in r.runs)
            cols = f"{r.median:>14,.0f}  {spread:<22}{lag:>5}ms{srv:>6.0%}{gen:>6.0%}"
        else:
            cols = f"{'FAILED':>14}"
        name = r.label
        print(f"{name:<23}{r.clients:>5}{r.events:>7}{cols}")
    print()
    print("ratio sanic-realtime / peer (medians):")
    print(f"{'clients':>8}" + "".join(f"{label(p):>22}" for p in PEERS))
    for n in args.clients:
        med = {r.kind: r.median for r in rows if r.clients == n}
        mine = med.get("sanic-realtime", 0.0)
        print(f"{n:>8}" + "".join(f"{_ratio(mine, med.get(p, 0.0)):>22}" for p in PEERS))
    print()


def sustained(steps: list[Step], p99_ms: float) -> float:
    best = 0.0
    for s in steps:
        if not s.ok(p99_ms):
            break
        best = s.rate
    return best


def print_steady(results: dict[str, list[Step]], args: Any) -> None:
    print(
        f"== 2. Steady rate to {args.steady_clients} clients, {args.steady_seconds:g} s per "
        f"rate; latency on every {args.sample_every}th client"
    )
    header = (
        f"{'server':<20}{'rate':>6}{'achieved':>9}{'late':>9}{'p50':>8}{'p99':>8}{'max':>8}"
        f"{'samples':>9}{'lost':>8}{'srv%':>6}{'gen%':>6}  ok"
    )
    print(header)
    print("-" * len(header))
    for kind, steps in results.items():
        for s in steps:
            ms = [f"{s.pct(q) * 1000:>6.1f}ms" for q in (0.5, 0.99, 1.0)]
            print(
                f"{label(kind):<20}{s.rate:>6g}{s.achieved:>9.1f}{s.late_ms:>7.0f}ms"
                f"{ms[0]:>8}{ms[1]:>8}{ms[2]:>8}{len(s.latencies):>9}{s.lost:>8}"
                f"{s.srv_cpu:>6.0%}{s.gen_cpu:>6.0%}  {'yes' if s.ok(args.p99_ms) else 'NO'}"
                + (f"  {s.problem}" if s.problem else "")
            )
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
        if kind != "sanic-realtime":
            extra = f"; rate ratio {_ratio(mine, best)}"
            if at and mine_first:
                ratio = _ratio(mine_first.pct(0.99), p99 / 1000)
                extra += f", p99 at {first:g} ev/s ratio {ratio} (below 1 = sanic-realtime lower)"
        top = f"{best:g} ev/s" if best else f"none (< {first:g})"
        print(f"  {label(kind):<20} sustained {top:<14} p99 at {first:g} ev/s {p99:.1f} ms{extra}")
    print()


def print_idle(results: list[Idle], args: Any) -> None:
    if not results:
        return
    n = results[0].clients
    print(f"== 3. {n} idle connections per server process (one server at a time)")
    rate_now = next((r.step.rate for r in results if r.step), 0.0)
    header = (
        f"{'server':<20}{'RSS ready':>10}{f'RSS +{n}':>12}{'KB/conn':>9}"
        f"{'events':>8}{'deliveries/s (1 burst)':>24}{'srv%':>6}{'gen%':>6}"
        + (f"  steady {rate_now:g} ev/s: achieved, p50, p99, lost" if rate_now else "")
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = f"{r.run.rate:,.0f}" if r.run else "FAILED"
        srv = f"{r.run.srv_cpu:.0%}" if r.run else ""
        gen = f"{r.run.gen_cpu:.0%}" if r.run else ""
        kb = f"{r.kb_per_conn:.1f}" if r.after_kb else "?"
        events = r.run and round(r.run.rate * r.run.elapsed / r.clients)
        st = r.step
        steady_cols = (
            f"  {st.achieved:.1f}, {st.pct(0.5) * 1000:.1f} ms, {st.pct(0.99) * 1000:.1f} ms,"
            f" {st.lost}" + (f" PROBLEM {st.problem[:120]}" if st.problem else "")
            if st
            else ""
        )
        print(
            f"{label(r.kind):<20}{r.before_kb / 1024:>8.1f}MB{r.after_kb / 1024:>10.1f}MB"
            f"{kb:>9}{events or '':>8}{rate:>24}{srv:>6}{gen:>6}{steady_cols}"
            + (f"  PROBLEM {r.problem[:200]}" if r.problem else "")
        )
    pings = ", ".join(f"{label(r.kind)} {r.pings}" for r in results)
    print(
        "sanic-realtime: clients on /ws/filtered with 10 distinct filters that match every "
        f"event; heartbeat_interval {args.idle_heartbeat:g} s (client_timeout 3x)\n"
        f"pings received and answered by the clients during the phase: {pings}"
    )
    mine = next((r for r in results if r.kind == "sanic-realtime"), None)
    if mine and mine.after_kb:
        print("ratios of sanic-realtime: KB/conn and deliveries/s")
        for r in results:
            if r.kind in PEERS and r.after_kb:
                print(
                    f"  vs {label(r.kind):<20} KB/conn {_ratio(mine.kb_per_conn, r.kb_per_conn)}"
                    f", deliveries/s "
                    f"{_ratio(mine.run.rate if mine.run else 0, r.run.rate if r.run else 0)}"
                )
    print()


def print_filters(rows: list[FilterRow], args: Any) -> None:
    if not rows:
        return
    n = rows[0].clients
    print(
        f"== 4. Filter cost: sanic-realtime, {n} clients on the channel "
        f"'{fanout.FILTER_CHANNEL}', K=1; medians of {args.runs} runs; srv µs/delivery = "
        "server CPU (user+sys) in the timed window / deliveries"
    )
    header = (
        f"{'row':<27}{'filters':>8}{'recip/ev':>9}{'events':>7}{'deliveries/s':>14}"
        f"  {'min..max':<22}{'srv µs/deliv':>13}  {'min..max':<13}{'ratio':>7}"
        f"{'srv%':>6}{'gen%':>6}"
    )
    print(header)
    print("-" * len(header))
    base = statistics.median(rows[0].us_per_delivery) if rows[0].runs else 0.0
    for r in rows:
        filters = r.groups if r.name != "no filter" else 0
        lead = f"{r.label:<27}{filters:>8}{r.per_event:>9}{r.events:>7}"
        if not r.runs:
            print(f"{lead}{'FAILED':>14}")
            continue
        rates = [x.rate for x in r.runs]
        us = r.us_per_delivery
        mid = statistics.median(us)
        srv = statistics.median(x.srv_cpu for x in r.runs)
        gen = statistics.median(x.gen_cpu for x in r.runs)
        print(
            f"{lead}{r.median:>14,.0f}  {f'{min(rates):,.0f}..{max(rates):,.0f}':<22}"
            f"{mid:>13.3f}  {f'{min(us):.3f}..{max(us):.3f}':<13}{_ratio(mid, base):>7}"
            f"{srv:>6.0%}{gen:>6.0%}"
        )
    print(
        "ratio = the row's srv µs/delivery / the no-filter row's (1.00x: filters add nothing "
        "per delivery)"
    )
    path = f"/ws/{fanout.FILTER_CHANNEL}"
    print(
        f"client j connects to (k = j % {fanout.COMPONENTS}; every event has component "
        f"c<seq % {fanout.COMPONENTS}> and level {fanout.LEVELS[-1]}):"
    )
    print(f"  no filter                  {path}")
    for k in range(fanout.COMPONENTS):
        print(f"  10 filters, all match      k={k}: {path}?{all_match_filter(k)}")
    print(f"  10 filters, 1 in 10 match  {path}?component=c<k>")
    print(
        "row 3 publishes 10x the events (same deliveries per burst); each connection gets 1 "
        "event in 10,\n  so fewer frames share each coalesced write: its cost per delivery "
        "is not only filter evaluation"
    )
    print()


def print_checks(targets: list[fanout.Target]) -> None:
    print("checks, per server process:")
    for t in targets:
        c = t.counter
        closes = ",".join(sorted({str(code) for _, code, _ in c.closes})) or "none"
        order = {True: "ok", False: "WRONG", None: "n/a"}[t.order_ok]
        line = (
            f"  {t.title or label(t.kind):<20} N={t.clients:<5} events={sum(t.bursts)}: "
            f"lost={t.lost} "
            f"extra={t.extra} closes={len(c.closes)} ({closes}) dropped conns="
            f"{c.lost_connections} client-0 order {order}; first event {t.frame_size} bytes"
        )
        if t.stats is not None:
            line += (
                f"; messages_dropped={t.stats.get('messages_dropped')} "
                f"slow_disconnects={t.stats.get('slow_disconnects')}"
            )
        print(line)
        for p in t.problems:
            print(f"    PROBLEM: {p[:500]}")
    print()


def plot(rows: list[fanout.Row], idle: list[Idle], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for kind, k in [*((s, 1) for s in SERVERS), ("raw", 1), ("raw", 0)]:
        pts = sorted(
            (r.clients, r.median) for r in rows if r.kind == kind and r.yield_every == k and r.runs
        )
        style: dict[str, Any] = {}
        name = label(kind)
        if kind == "raw":
            style = {"linestyle": ":" if k else "--", "color": "grey" if k else "black"}
            name = "bare write (reference)" if k else "generator ceiling (not a server)"
        lines = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, **style)
        one = next((r for r in idle if r.kind == kind and r.run and k), None)
        if one is not None:
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
    print(f"plot written: {os.path.relpath(path, ROOT)}")


PEER_VERSIONS = (
    "sanic",
    "websockets",
    "uvloop",
    "msgspec",
    "python-socketio",
    "python-engineio",
    "aiohttp",
)


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    return "?"


async def orchestrate(args: Any) -> int:
    pinned = fanout._pin(fanout.CLIENT_CPU) if (os.cpu_count() or 1) > 1 else False
    t_start = time.monotonic()
    print("sanic-realtime vs peers: burst fan-out, steady rate, idle memory, filter cost")
    print(f"command: {' '.join(['python', *sys.argv])}")
    cpu = _cpu_model()
    release = platform.release()
    print(f"machine: nproc={os.cpu_count()}, {cpu}, {platform.machine()}, Linux {release}")
    print(f"python {platform.python_version()}; {fanout._versions(PEER_VERSIONS)}")
    source = fanout._source_digest()
    print(f"sanic_realtime sources: sha256 {source}{fanout._git()}")
    print("pinning: servers on CPU 0, load generator on CPU 1" if pinned else "pinning: NOT pinned")
    print(f"generator fd budget: {fd_budget()} connections at once")
    print()
    rows: list[fanout.Row] = []
    steady_results: dict[str, list[Step]] = {}
    idle: list[Idle] = []
    filter_results: list[FilterRow] = []
    targets: list[fanout.Target] = []
    if "burst" in args.only:
        await phase_burst(args, rows, targets)
    if "steady" in args.only:
        await phase_steady(args, steady_results, targets)
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
    print_checks(targets)
    if rows and args.plot:
        os.makedirs(os.path.dirname(args.plot), exist_ok=True)
        title = (
            f"Fan-out of one server process (CPU 0) to N clients (generator on CPU 1); "
            f"median of {args.runs} bursts, K=1\n{os.cpu_count()} CPUs, {cpu}"
        )
        plot(rows, idle, args.plot, title)
    print(f"total time {time.monotonic() - t_start:.0f} s")
    if fanout._source_digest() != source:
        print("WARNING: the sanic_realtime sources changed during this run. Run again.")
        return 1
    failed = any(r.problems or not r.runs for r in [*rows, *filter_results])
    return 1 if failed or any(t.failed for t in targets) else 0


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> int:
    global PEERS, SERVERS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=fanout._int_list, default=[100, 1000, 5000])
    parser.add_argument("--deliveries", type=int, default=300_000, help="per timed burst")
    parser.add_argument(
        "--max-burst-seconds",
        type=float,
        default=6.0,
        help="fewer events (>= 10) for a server whose warm-up rate predicts a longer burst",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steady-clients", type=int, default=1000)
    parser.add_argument(
        "--rates", type=_floats, default=[100, 125, 150, 200, 300, 400, 600, 800, 1200]
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
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--only",
        default="burst,steady,idle,filters",
        help="comma-separated: burst,steady,idle,filters",
    )
    parser.add_argument(
        "--plot",
        default=os.path.join(ROOT, "docs", "benchmarks-fanout.png"),
        help="PNG path ('' = none)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to run next to sanic-realtime (default {','.join(PEERS)})",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--buffer-size", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args()
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {','.join(PEERS)}")
    PEERS, SERVERS = peers, ("sanic-realtime", *peers)
    fanout._raise_nofile()
    if args.serve:
        if (os.cpu_count() or 1) > 1:
            fanout._pin(fanout.SERVER_CPU)
        if args.serve == "sanic-realtime":
            fanout.serve_sanic(args.port, args.buffer_size)
        elif args.serve == "websockets":
            fanout.serve_websockets(args.port)
        elif args.serve == "raw":
            fanout.serve_raw(args.port)
        elif args.serve in ("sanic-hub", "sanic-gather"):
            serve_sanic_peer(args.port, args.serve)
        elif args.serve == "socketio":
            serve_socketio(args.port)
        else:
            parser.error(f"unknown server {args.serve}")
        return 0
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = args.only - {"burst", "steady", "idle", "filters"}
    if unknown:
        parser.error(f"unknown --only {sorted(unknown)}; choose from burst,steady,idle,filters")
    if args.filter_clients < 1:
        parser.error("--filter-clients must be at least 1")
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
