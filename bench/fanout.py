"""Fan-out throughput of ONE server process: sanic-realtime vs ``websockets.broadcast()``.

What is measured
    Event deliveries per second that a single server process pushes to N connected
    WebSocket clients: ``deliveries/s = E * N / elapsed``, where ``elapsed`` runs from the
    server's first ``publish`` of a burst of E events (the server's ``time.monotonic()``)
    until the load generator has counted every one of the E * N frames (its own
    ``time.monotonic()``; CLOCK_MONOTONIC is one system-wide clock on Linux, so the two
    processes' readings are comparable). Each row is the median of ``--runs`` (default 3)
    timed bursts, with their min..max.

Servers (each a real server in its own subprocess, its own session/process group; the
programs are in ``bench/harness/apps.py``)
    sanic-realtime
        ``Sanic("bench")`` + ``Realtime(...).blueprint``, run with ``app.run(host=...,
        single_process=True, access_log=False)``; Sanic picks uvloop. Clients connect to
        ``/ws/bench``. A bench route ``POST /bench/burst?events=E&yield_every=K`` runs, in
        the server's own event loop, ``await rt.publish("bench", "tick", {"seq": i,
        "payload": "x" * 150})`` E times (JSON text messages of about 266 bytes). With
        ``&channel=filtered`` it publishes on a second channel instead, which declares the
        filters ``component`` (eq) and ``level`` (min over debug..critical); there each
        event's data also carries ``component`` = ``c{seq % 10}`` and ``level`` =
        ``critical`` (used by ``bench/compare.py --only filters``; not by this script).
    websockets.broadcast (the peer)
        websockets 17 ``websockets.asyncio.server.serve`` on uvloop; its handler sends a
        ``connection_established`` text message, then waits for the close. The burst
        (``GET /bench/burst``, answered from ``process_request`` because the websockets
        HTTP parser only takes GET) encodes the same envelope (type, channel, id,
        timestamp, data) once per event with msgspec and calls ``broadcast(connections,
        frame_bytes, text=True)`` once per event. Default keepalive, no compression.
    raw reference server (uvloop, a few lines of asyncio.Protocol)
        ``bare write (ref)``: the same events, one ``transport.write`` per frame per client
        and nothing else: roughly the most a Python fan-out can do with one write per event
        per connection. ``generator ceiling``: all E frames of a burst pre-framed and
        written to each client at once; the server does almost nothing, so this measures
        how fast the load generator can count, i.e. the ceiling of this harness.

Steady rate (used by ``bench/compare.py``)
    The sanic-realtime and websockets servers also answer ``/bench/steady?rate=R&duration=D``
    (POST for Sanic, GET for websockets): ``apps.steady_loop`` publishes R events/s for D s
    on a fixed schedule, each event's data carrying ``"pt"``, its publish time (the
    server's ``time.monotonic()``); the load generator collects receive time - ``pt``.

Yielding (``--yield-every K``)
    Each publishing loop runs ``await asyncio.sleep(0)`` after every K events (0 = never
    yield during the burst); the same K for every server in a row. The default K=1 is one
    event per event-loop iteration, as when events come from separate requests or tasks:
    sanic-realtime then writes each event to each connection separately, just as
    ``broadcast()`` does. With K=0 the whole burst is queued before any write, so
    sanic-realtime coalesces it into one write per connection while ``broadcast()`` still
    writes every frame separately (and blocks its event loop for the whole burst): that
    mode shows the effect of coalescing, not the cost of a single event.

Load generator (this process; ``bench/harness/loadgen.py``)
    One ``asyncio.Protocol`` per connection on uvloop. It sends the HTTP Upgrade itself
    (no permessage-deflate offered, so no server compresses), skips the 101 response, and
    then parses only frame headers (server frames are unmasked) to count text frames; it
    answers pings with pongs and records close frames. Client 0 also decodes every frame
    and checks that each burst's ``seq`` values arrive complete and in order. After each
    burst every client's count must equal ``1 + events published so far``; at the end,
    lost or extra frames, close frames (e.g. 4008) and dropped connections are reported,
    with sanic-realtime's ``messages_dropped`` and ``slow_disconnects`` from
    ``GET /admin/ws/stats``.

Procedure, per client count N
    All servers are started side by side and each gets its N clients (50 handshakes at a
    time; each server waits until all have their ``connection_established``). For each K:
    one untimed warm-up burst of E/4 events per server, then ``--runs`` rounds in which
    each server gets one timed burst, in an order rotated each round, so that a slow
    stretch of the machine hits every server alike; the servers not being measured are
    idle. E is ``--deliveries / N`` (default 1,000,000 / N) unless ``--events`` is given.
    sanic-realtime runs with ``slow_client: disconnect`` and ``buffer_size`` = max(4096,
    2E) unless ``--buffer-size`` is given, so a burst cannot overflow a buffer.

CPU placement and what the extra columns say
    Servers pinned to CPU 0, load generator to CPU 1 (``os.sched_setaffinity``).
    ``loop`` is the server's publishing loop (first publish to return) and ``lag`` the
    time from its end to the last frame counted: a lag near 0 means the generator kept
    up with what the server wrote (it was not the limit); a long lag means frames piled
    up in buffers before being counted. ``srv%``/``gen%`` are the CPU time (user+system)
    each process used in the timed window divided by the window; RSS is the server's
    peak RSS so far (``VmHWM`` of ``/proc/self/status``; not ``ru_maxrss``, which a child
    inherits from the process that forked it) read after the row's runs.

Caveats
    Loopback TCP on one machine, no TLS, no network. On loopback the sending process's
    CPU also does much of the receiving side's TCP work and wake-ups, so the server's
    figures include costs that real remote clients would not put on it. ``--pause-reading``
    is a diagnostic for this: the clients stop reading while the server publishes (elapsed
    then includes the drain; compare the ``loop`` column). It is not a clean measure
    either: once the kernel's socket buffers fill, the servers' writes become cheap
    appends to uvloop's own buffer. A shared or virtual machine is noisy: look at
    min..max, and compare ratios from the same run.
    Only the fan-out path is timed: no JSON decoding on the clients (except client 0), no
    filters, targeting or history replay. ``broadcast()`` has no per-connection bound or
    backpressure (it buffers without limit), whereas sanic-realtime bounds each buffer and
    checks the transport's high-water mark: they do not do identical work.

Usage
    python bench/fanout.py                     # 1000 clients, K=1 (about a minute)
    python bench/fanout.py --clients 100,1000 --yield-every 1,0
    python bench/fanout.py --quick             # 200 clients, 100k deliveries per burst
"""

from __future__ import annotations

import argparse
import sys
import time

from harness import args as options
from harness import report, runner, servers
from harness.runner import Row
from harness.target import Target

KINDS = ("sanic-realtime", "websockets")
RATIO = ("sanic-realtime", "websockets")  # the ratio printed: first / second

LEGEND = "\n".join(
    (
        report.DELIVERIES,
        "K = await asyncio.sleep(0) after every K events (0 = never)",
        "elapsed, loop, lag, srv%, gen% = medians; loop = the server's publishing loop, "
        "first publish to return;",
        "  lag = last frame counted - end of the publishing loop",
        "srv%/gen% = CPU time (user+sys) of server/generator during the timed window",
        "RSS MB = the server's peak RSS (VmHWM) so far, read after the row's runs",
        "bare write (ref) = a trivial uvloop server doing one transport.write per frame per client",
        "generator ceiling = the trivial server writing each client's whole burst at once",
    )
)

COLUMNS = [
    report.label_col("server", 21),
    report.Col("clients", 7, lambda r: str(r.clients)),
    report.Col("events", 7, lambda r: str(r.events)),
    report.Col("K", 3, lambda r: r.k),
    *report.rate_cols(23),
    report.ELAPSED,
    report.LOOP,
    report.lag_col(8),
    report.SRV,
    report.GEN,
    report.rss_col("RSS MB", 7),
]


def blocks(args: argparse.Namespace) -> list[tuple[int, list[str]]]:
    """(K, the kinds measured at that K): the two servers, plus the raw server's
    reference row (K>0) or generator ceiling (K=0); the ceiling is measured even when
    K=0 is not asked for."""
    out: list[tuple[int, list[str]]] = []
    for every in args.yield_every:
        kinds = list(KINDS)
        if (every and not args.no_reference) or (not every and not args.no_ceiling):
            kinds.append("raw")
        out.append((every, kinds))
    if 0 not in args.yield_every and not args.no_ceiling:
        out.append((0, ["raw"]))
    return out


async def bench_clients(
    clients: int, args: argparse.Namespace, rows: list[Row], targets: list[Target]
) -> None:
    """Every row for one client count: all servers side by side (idle while another is
    measured), their timed bursts interleaved."""
    events = options.events_for(args, clients)
    buffer_size = options.buffer_for(args, events)
    plan = blocks(args)
    needed = [k for k in (*KINDS, "raw") if any(k in kinds for _, kinds in plan)]
    started = {
        kind: Target.app(kind, clients, buffer_size, timeout=args.timeout, pause=args.pause_reading)
        for kind in needed
    }
    async with runner.serving(list(started.values()), targets):
        for every, kinds in plan:
            block = [
                Row(
                    kind,
                    servers.row_label(kind, every),
                    clients,
                    events,
                    every,
                    k="-" if kind == "raw" and not every else "",
                )
                for kind in kinds
            ]
            rows.extend(block)
            await runner.measure([(r, started[r.key]) for r in block], args.runs)
            for r in block:
                r.rss_kb = started[r.key].peak_rss_kb()


def print_report(rows: list[Row], targets: list[Target]) -> None:
    report.event_loops(targets)
    print()
    report.table(COLUMNS, rows)
    print()
    first, second = (servers.KINDS[k].label for k in RATIO)
    print(f"ratio {first} / {second} (of the medians):")
    for r in rows:
        if r.key != RATIO[0]:
            continue
        peer = next(
            (
                p
                for p in rows
                if p.key == RATIO[1] and p.clients == r.clients and p.yield_every == r.yield_every
            ),
            None,
        )
        ratio = report.ratio(r.median, peer.median if peer else None)
        print(f"  clients={r.clients:<5} K={r.k}: {ratio}")
    print()
    report.checks(targets, rows)
    print()
    print(LEGEND)


async def orchestrate(args: argparse.Namespace) -> int:
    pinned = servers.pin_generator()
    t0 = time.monotonic()
    source = report.header(
        "fan-out benchmark: deliveries/s from ONE server process to N WebSocket clients",
        pinning=f"servers on CPU {servers.SERVER_CPU}, load generator on CPU "
        f"{servers.GENERATOR_CPU}"
        if pinned
        else "NOT pinned (needs 2 CPUs and sched_setaffinity)",
    )
    buffer = args.buffer_size or "auto = max(4096, 2 x events)"
    print(
        f"per row: 1 warm-up burst of E/4 events, then {args.runs} timed bursts, interleaved "
        f"with the other servers'; sanic-realtime buffer_size: {buffer}, slow_client: disconnect"
    )
    if args.pause_reading:
        print(
            "DIAGNOSTIC --pause-reading: clients do not read during the publishing loop; "
            "elapsed includes the drain afterwards"
        )
    print()
    rows: list[Row] = []
    targets: list[Target] = []
    for clients in args.clients:
        await bench_clients(clients, args, rows, targets)
    print()
    print_report(rows, targets)
    print(f"\ntotal time {time.monotonic() - t0:.0f} s")
    if report.sources_changed(source):
        return 1
    return 1 if report.failed(rows, targets) else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fan-out deliveries/s of one server process: sanic-realtime vs "
        "websockets.broadcast(). See the module docstring for the method."
    )
    options.add_bursts(parser, clients=[1000], deliveries=1_000_000, timeout=60.0)
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip the generator-ceiling measurement"
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the bare transport.write reference"
    )
    parser.add_argument(
        "--pause-reading",
        action="store_true",
        help="diagnostic: the clients stop reading while the server publishes (see docstring)",
    )
    args = parser.parse_args()
    options.check_bursts(parser, args)
    servers.raise_nofile()
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
