"""Server CPU per delivery when every subscriber filters on its own value (issue 20, item 4).

Question
    10,000 subscribers on one channel, each with a distinct ``order_id`` equality filter,
    and events spread over those ids, so that each event reaches one subscriber: what
    does a delivery cost the server, against the same deliveries without a filter? Before
    the index of eq filters (``sanic_realtime/rooms.py``), fan-out evaluated every
    distinct filter of the room once per event: 10,000 evaluations per delivery.

Rows (one server process, the same N connections for every row)
    Client i connects once, to the general route, and subscribes to three channels:
    ``/ws?channels=orders,order.<i>,everyone&order_id=o<i>`` (``order_id`` is declared by
    ``orders`` only, so the other two are unfiltered). Event j of a burst carries
    ``{"seq": j, "order_id": "o<j % N>", "payload": 150 x "x"}`` in every row.

    filtered (a)     event j is published on ``orders``: N groups, one per distinct
                     filter; it matches client j % N only (1 delivery per event).
    channels (b)     event j is published on ``order.<j % N>``, a channel of its own per
                     client, without a filter (1 delivery per event). The baseline of
                     the goal: the same deliveries, the same event count and the same
                     per-event work (publish, encode, history, one write), routed by the
                     channel's name, a dict lookup, instead of by a filter.
    broadcast (c)    event j is published on ``everyone``: every client gets every event (N
                     deliveries per event). For context only: its per-event costs are
                     spread over N deliveries, and coalescing puts several frames in a
                     write, so it is not the same work per delivery as (a) and (b).

    Goal: srv µs/delivery of (a) within 1.5x of (b).

Measurement
    Each row: K=1 bursts (one ``await asyncio.sleep(0)`` per event, as events arriving in
    separate requests), ``--events`` events per burst in rows (a) and (b) (default 2 x N:
    each client gets 2), ``--broadcast-events`` in row (c) (default 10, i.e. 10 x N
    deliveries). One untimed warm-up burst of E/4, then ``--runs`` timed bursts per
    row, interleaved in a rotating order (``harness.runner``). srv µs/delivery = the
    server's CPU time (user+sys, ``getrusage`` in the server, read through
    ``/bench/info`` just before the burst request and just after the generator has
    counted the last frame) / deliveries. The generator checks every client's exact frame
    count after each burst, and client 0 the order of all its ``seq`` values at the end.

Old code
    The server imports ``sanic_realtime`` from ``PYTHONPATH`` when it is set (the harness
    puts ``bench/`` first, then ``PYTHONPATH``): ``git worktree add --detach /tmp/before
    <commit>`` and ``PYTHONPATH=/tmp/before python bench/filtered_fanout.py`` measure that
    commit's code with this script. The header prints which package each process imported.

Usage
    python bench/filtered_fanout.py                      # 10,000 clients, about 2 minutes
    python bench/filtered_fanout.py --clients 1000 --runs 1
    PYTHONPATH=/tmp/before python bench/filtered_fanout.py --events 2000   # the old code
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, cast

from harness import report, runner, servers
from harness.report import Col
from harness.runner import Row
from harness.servers import Server
from harness.target import Run, Target

ORDERS = "orders"
BROADCAST = "everyone"
FILTERED, CHANNELS, EVERYONE = "filtered", "channels", "broadcast"
MODES = (FILTERED, CHANNELS, EVERYONE)
LABELS = {
    FILTERED: "(a) distinct order_id filters",
    CHANNELS: "(b) a channel per client",
    EVERYONE: "(c) broadcast, no filter",
}


SCRIPT = os.path.abspath(__file__)


def own_channel(i: int) -> str:
    return f"order.{i}"


# =========================================================================== the server


def serve(port: int, buffer_size: int, ids: int) -> None:
    """sanic-realtime with ``orders`` (filter ``order_id``, eq), ``order.0`` ..
    ``order.<ids-1>`` and ``everyone``; ``/bench/burst?channel=<mode>`` publishes the mode's
    events (see the module docstring), ``/bench/info`` also names the package's file."""
    from harness.apps import PAYLOAD, answer, info
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse
    from sanic.response import json as json_response

    import sanic_realtime
    from sanic_realtime import Realtime
    from sanic_realtime.config import parse_config

    channels: dict[str, Any] = {ORDERS: {"filters": {"order_id": {}}}, BROADCAST: {}}
    channels.update({own_channel(i): {} for i in range(ids)})
    config = {
        "buffer_size": buffer_size,
        "slow_client": "disconnect",
        "max_clients": ids + 1000,
        "channels": channels,
    }
    rt = Realtime(parse_config(config))
    app = Sanic("filtered_fanout")
    app.config.AUTO_EXTEND = False
    app.config.RESPONSE_TIMEOUT = 3600  # a burst on the old code takes minutes
    app.blueprint(rt.blueprint)

    @app.post("/bench/burst")
    async def burst(request: Request) -> HTTPResponse:
        events = int(request.args.get("events", "1"))
        every = int(request.args.get("yield_every", "1"))
        mode = request.args.get("channel", FILTERED)
        publish = rt.publish
        recipients = 0
        t_start = time.monotonic()
        for j in range(events):
            k = j % ids
            data = {"seq": j, "order_id": f"o{k}", "payload": PAYLOAD}
            if mode == FILTERED:
                channel = ORDERS
            elif mode == CHANNELS:
                channel = own_channel(k)
            else:
                channel = BROADCAST
            recipients += (await publish(channel, "tick", data)).recipients
            if every and (j + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return json_response(answer(t_start, t_end, recipients))

    @app.get("/bench/info")
    async def bench_info(request: Request) -> HTTPResponse:
        return json_response(info(package=os.path.dirname(sanic_realtime.__file__)))

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


# =========================================================================== the target


def share_of(mode: str, clients: int) -> Any:
    """The seq values of a burst of ``events`` that client ``index`` gets in ``mode``."""
    if mode == EVERYONE:
        return lambda index, events: range(events)
    return lambda index, events: range(index, events, clients)


class Shared(Target):
    """One server and its N clients, with bursts of several modes: each burst's expected
    frames follow its own mode (``Target`` has one ``share`` for every burst)."""

    def __init__(self, server: Server, clients: int, **options: Any) -> None:
        super().__init__(server, clients, **options)
        self.modes: list[str] = []  # the mode of each burst, parallel to self.bursts
        self.shares = {mode: share_of(mode, clients) for mode in MODES}
        self.rss: list[int] = []  # peak RSS (kB) after the runs

    def expected(self, index: int) -> int:
        return 1 + sum(
            len(self.shares[m](index, b)) for b, m in zip(self.bursts, self.modes, strict=False)
        )

    async def burst_of(self, mode: str, events: int, yield_every: int) -> Run | str:
        self.channel = mode
        self.share = self.shares[mode]
        before = len(self.bursts)
        self.modes.append(mode)
        try:
            return await self.burst(events, yield_every)
        finally:
            if len(self.bursts) == before:  # the request failed: no burst
                self.modes.pop()

    async def check(self) -> None:
        """Target.check over one burst made of all of them, in order (its order check
        reads client 0's seq values through ``share``)."""
        parts = list(zip(self.bursts, self.modes, strict=True))
        shares = self.shares

        def whole(index: int, _events: int) -> list[int]:
            return [i for b, m in parts for i in shares[m](index, b)]

        self.bursts, self.modes, self.share = [sum(self.bursts)], [FILTERED], whole
        self.expected = lambda index: 1 + len(whole(index, 0))  # type: ignore[method-assign]
        await super().check()


class View:
    """What ``harness.runner`` needs of a row's target: the shared target, in one mode."""

    def __init__(self, target: Shared, mode: str) -> None:
        self.target = target
        self.mode = mode

    @property
    def problems(self) -> list[str]:
        return self.target.problems

    async def burst(self, events: int, yield_every: int) -> Run | str:
        return await self.target.burst_of(self.mode, events, yield_every)


@dataclass
class ModeRow(Row):
    per_event: int = 1  # recipients of each event

    @property
    def us_per_delivery(self) -> list[float]:
        return [x.srv_cpu / x.rate * 1e6 for x in self.runs]

    @property
    def us(self) -> float | None:
        return statistics.median(self.us_per_delivery) if self.runs else None


# =========================================================================== report


def print_table(rows: list[ModeRow], args: argparse.Namespace) -> None:
    n = rows[0].clients
    print(
        f"== server CPU per delivery: sanic-realtime, {n} clients (each subscribed to "
        f"{ORDERS} with order_id=o<i>, to {own_channel(0).replace('0', '<i>')} and to "
        f"{BROADCAST}), K=1; medians of {args.runs} runs"
    )
    by_mode = {r.key: r for r in rows}
    base = by_mode[CHANNELS].us if CHANNELS in by_mode else None
    cols: list[Col[ModeRow]] = [
        Col("row", 31, lambda r: r.label, left=True),
        Col("recip/ev", 9, lambda r: str(r.per_event)),
        Col("events", 7, lambda r: str(r.events)),
        *report.rate_cols(22),
        report.LOOP,
        Col("srv µs/deliv", 13, lambda r: f"{r.us:.3f}" if r.us is not None else ""),
        Col("min..max", 21, lambda r: report.spread(r.us_per_delivery, ".3f"), left=True, gap=2),
        Col("vs (b)", 7, lambda r: report.ratio(r.us, base)),
        report.SRV,
        report.GEN,
    ]
    report.table(cols, rows)
    print(
        "srv µs/deliv = the server's CPU time (user+sys) from just before the burst request "
        "to the last frame counted / deliveries"
    )
    print("vs (b) = the row's srv µs/deliv / row (b)'s (goal: (a) within 1.50x)")
    print()


# =========================================================================== orchestration


async def orchestrate(args: argparse.Namespace) -> int:
    import sanic_realtime

    pinned = servers.pin_generator()
    t0 = time.monotonic()
    source = report.header(
        "filtered fan-out: server CPU per delivery, distinct eq filters vs a channel per client",
        pinning=f"server on CPU {servers.SERVER_CPU}, load generator on CPU {servers.GENERATOR_CPU}"
        if pinned
        else "NOT pinned (needs 2 CPUs and sched_setaffinity)",
    )
    n = args.clients
    events = args.events or 2 * n
    broadcast_events = args.broadcast_events or 10
    buffer_size = max(4096, 2 * max(events, broadcast_events))
    print(f"generator imports sanic_realtime from {os.path.dirname(sanic_realtime.__file__)}")
    print(f"generator fd budget: {servers.fd_budget()} connections at once")
    cmd = [sys.executable, SCRIPT, "--serve"]
    cmd += ["--port", str(port := servers.free_port()), "--clients", str(n)]
    cmd += ["--buffer-size", str(buffer_size)]
    server = Server("sanic-realtime", port, cmd, method="POST", cpus=servers.server_cpus())
    target = Shared(
        server,
        n,
        timeout=args.timeout,
        buffer_size=buffer_size,
        path_of=lambda i: f"/ws?channels={ORDERS},{own_channel(i)},{BROADCAST}&order_id=o{i}",
        title="sanic-realtime [one server, all rows]",
    )
    rows: list[ModeRow] = []
    for mode in args.modes:
        row_events = broadcast_events if mode == EVERYONE else events
        row = ModeRow(mode, LABELS[mode], n, row_events, 1)
        row.per_event = n if mode == EVERYONE else 1
        rows.append(row)
    targets: list[Target] = []
    connect_s = 0.0
    async with runner.serving([target], targets, connect=False):
        info = await target.ready()
        print(f"server imports sanic_realtime from {info.get('package')}")
        c0 = time.monotonic()
        await target.connect()
        connect_s = time.monotonic() - c0
        print(f"{n} clients connected and subscribed in {connect_s:.1f} s")
        print()

        def note(run: Run) -> str:
            return f", srv {run.srv_cpu / run.rate * 1e6:.3f} µs/delivery"

        pairs = [(r, cast("Target", View(target, r.key))) for r in rows]
        await runner.measure(cast("list[tuple[Row, Target]]", pairs), args.runs, note=note)
        target.rss = target.peak_rss_kb()
    print()
    print_table(rows, args)
    report.event_loops(targets)
    report.checks(targets, rows)
    print(f"server peak RSS: {'+'.join(f'{kb / 1024:.0f}' for kb in target.rss)} MB")
    print(f"\ntotal time {time.monotonic() - t0:.0f} s")
    if report.sources_changed(source):
        return 1
    return 1 if report.failed(rows, targets) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10_000, help="subscribers (default 10000)")
    parser.add_argument(
        "--events",
        type=int,
        default=0,
        help="events per timed burst of rows (a) and (b) (default 2 x clients)",
    )
    parser.add_argument(
        "--broadcast-events",
        type=int,
        default=0,
        help="events per timed burst of row (c) (default 10)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed bursts per row (default 3)")
    parser.add_argument(
        "--modes",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        default=list(MODES),
        help=f"comma-separated rows (default {','.join(MODES)})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for a burst (default 600; the old code is slow)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--buffer-size", type=int, default=4096, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.port, args.buffer_size, args.clients)
        return 0
    if args.runs < 1 or args.clients < 1 or args.events < 0 or args.broadcast_events < 0:
        parser.error("--runs and --clients must be at least 1, event counts not negative")
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes: choose from {','.join(MODES)} (got {unknown or 'none'})")
    servers.raise_nofile()
    if args.clients > servers.fd_budget():
        parser.error(f"--clients {args.clients}: the generator can hold {servers.fd_budget()}")
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
