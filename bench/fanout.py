"""Fan-out throughput of ONE server process: sanic-realtime vs ``websockets.broadcast()``.

What is measured
    Event deliveries per second that a single server process pushes to N connected
    WebSocket clients: ``deliveries/s = E * N / elapsed``, where ``elapsed`` runs from the
    server's first ``publish`` of a burst of E events (the server's ``time.monotonic()``)
    until the load generator has counted every one of the E * N frames (its own
    ``time.monotonic()``; CLOCK_MONOTONIC is one system-wide clock on Linux, so the two
    processes' readings are comparable). Each row is the median of ``--runs`` (default 3)
    timed bursts, with their min..max.

Servers (each a real server in its own subprocess, its own session/process group)
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
    (POST for Sanic, GET for websockets): ``steady_loop`` publishes R events/s for D s on a
    fixed schedule, each event's data carrying ``"pt"``, its publish time (the server's
    ``time.monotonic()``); ``WsClient.latency`` collects receive time - ``pt``.

Yielding (``--yield-every K``)
    Each publishing loop runs ``await asyncio.sleep(0)`` after every K events (0 = never
    yield during the burst); the same K for every server in a row. The default K=1 is one
    event per event-loop iteration, as when events come from separate requests or tasks:
    sanic-realtime then writes each event to each connection separately, just as
    ``broadcast()`` does. With K=0 the whole burst is queued before any write, so
    sanic-realtime coalesces it into one write per connection while ``broadcast()`` still
    writes every frame separately (and blocks its event loop for the whole burst): that
    mode shows the effect of coalescing, not the cost of a single event.

Load generator (this process)
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
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

SERVER_CPU = 0
CLIENT_CPU = 1
PAYLOAD = "x" * 150
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0E11DC85"
KINDS = ("sanic-realtime", "websockets")
LABEL = {"sanic-realtime": "sanic-realtime", "websockets": "websockets.broadcast", "raw": "raw"}
#: sanic-realtime's second channel (``bench/compare.py --only filters``): it declares the
#: filters ``component`` (eq) and ``level`` (min over LEVELS); its events' data carry
#: ``component = f"c{seq % COMPONENTS}"`` and ``level = "critical"`` (see filtered_data).
FILTER_CHANNEL = "filtered"
LEVELS = ("debug", "info", "warn", "error", "critical")
COMPONENTS = 10


def _pin(cpu: int) -> bool:
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _peak_rss_kb() -> int | None:
    """This process's peak RSS. ``VmHWM`` belongs to the process image, whereas
    ``ru_maxrss`` carries over through fork and exec from the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _info() -> dict[str, Any]:
    """What every server's ``/bench/info`` answers."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    loop = asyncio.get_running_loop()
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": _peak_rss_kb(),
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
    }


def _timestamp() -> str:
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


async def steady_loop(
    publish: Any, rate: float, duration: float, seq_offset: int = 0
) -> dict[str, Any]:
    """Publish ``rate`` events/s for ``duration`` s on a fixed schedule (event i is due at
    t0 + i/rate; a late loop catches up without sleeping, yielding once per event).
    ``await publish(i, pt)`` sends event i with its publish time ``pt`` (this process's
    ``time.monotonic()``, the same clock as the load generator's)."""
    events = max(1, round(rate * duration))
    interval = 1.0 / rate
    t0 = time.monotonic() + 0.005
    first = last = 0.0
    for i in range(events):
        delay = t0 + i * interval - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)
        pt = time.monotonic()
        if i == 0:
            first = pt
        last = pt
        await publish(i, pt)
    t_end = time.monotonic()
    span = last - first
    return {
        "t_start": first,
        "t_end": t_end,
        "events": events,
        "recipients": 0,
        # (events - 1) / time between the first and the last publish: the rate achieved.
        "achieved": (events - 1) / span if span > 0 else float(rate),
        "late_ms": (last - (t0 + (events - 1) * interval)) * 1000,
    }


def steady_args(args: dict[str, str]) -> tuple[float, float]:
    return float(args.get("rate", "100")), float(args.get("duration", "5"))


def _bench_data(i: int) -> dict[str, Any]:
    """Event i's data on ``bench``."""
    return {"seq": i, "payload": PAYLOAD}


def filtered_data(i: int) -> dict[str, Any]:
    """Event i's data on FILTER_CHANNEL: ``bench``'s ``seq`` and ``payload``, plus the
    fields its filters read. ``level`` is the highest of LEVELS, so every ``level=`` value
    matches it."""
    return {"seq": i, "component": f"c{i % COMPONENTS}", "level": LEVELS[-1], "payload": PAYLOAD}


# =========================================================================== servers


def serve_sanic(port: int, buffer_size: int) -> None:
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse
    from sanic.response import json as json_response

    from sanic_realtime import Realtime
    from sanic_realtime.config import parse_config

    filters = {"component": {}, "level": {"op": "min", "order": list(LEVELS)}}
    channels = {"bench": {}, FILTER_CHANNEL: {"filters": filters}}
    config: dict[str, Any] = {
        "buffer_size": buffer_size,
        "max_clients": 20000,
        "channels": channels,
    }
    heartbeat = float(os.environ.get("BENCH_HEARTBEAT", "0"))
    if heartbeat:  # pings that actually happen during a short run (compare.py's idle phase)
        config.update(heartbeat_interval=heartbeat, client_timeout=3 * heartbeat)
    rt = Realtime(parse_config(config))
    app = Sanic("bench")
    app.config.AUTO_EXTEND = False
    app.blueprint(rt.blueprint)

    @app.post("/bench/burst")
    async def burst(request: Request) -> HTTPResponse:
        events = int(request.args.get("events", "1"))
        every = int(request.args.get("yield_every", "1"))
        channel = request.args.get("channel", "bench")
        make = filtered_data if channel == FILTER_CHANNEL else _bench_data
        recipients = 0
        t_start = time.monotonic()
        for i in range(events):
            result = await rt.publish(channel, "tick", make(i))
            recipients += result.recipients
            if every and (i + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return json_response({"t_start": t_start, "t_end": t_end, "recipients": recipients})

    @app.post("/bench/steady")
    async def steady(request: Request) -> HTTPResponse:
        rate, duration = steady_args({k: request.args.get(k) for k in request.args})

        channel = request.args.get("channel", "bench")
        make = filtered_data if channel == FILTER_CHANNEL else _bench_data

        async def publish(i: int, pt: float) -> None:
            await rt.publish(channel, "tick", {**make(i), "pt": pt})

        return json_response(await steady_loop(publish, rate, duration))

    @app.get("/bench/info")
    async def info(request: Request) -> HTTPResponse:
        return json_response(_info())

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def serve_websockets(port: int) -> None:
    import msgspec
    import uvloop
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.http11 import Request, Response

    connections: set[ServerConnection] = set()
    encode = msgspec.json.Encoder().encode
    state = {"offset": 0}
    epoch = "peer"

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            hello = {"type": "connection_established", "timestamp": _timestamp(), "data": {}}
            await ws.send(encode(hello), text=True)
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    def respond(ws: ServerConnection, body: Any) -> Response:
        response = ws.respond(200, json.dumps(body))
        response.headers["Content-Type"] = "application/json"
        return response

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "/bench/burst":
            events = int(args.get("events", "1"))
            every = int(args.get("yield_every", "1"))
            recipients = 0
            t_start = time.monotonic()
            for i in range(events):
                state["offset"] += 1
                event = {
                    "type": "tick",
                    "channel": "bench",
                    "id": f"{epoch}:{state['offset']}",
                    "timestamp": _timestamp(),
                    "data": {"seq": i, "payload": PAYLOAD},
                }
                recipients += len(connections)
                broadcast(connections, encode(event), text=True)
                if every and (i + 1) % every == 0:
                    await asyncio.sleep(0)
            t_end = time.monotonic()
            return respond(ws, {"t_start": t_start, "t_end": t_end, "recipients": recipients})
        if path == "/bench/steady":
            rate, duration = steady_args(args)

            async def publish(i: int, pt: float) -> None:
                state["offset"] += 1
                event = {
                    "type": "tick",
                    "channel": "bench",
                    "id": f"{epoch}:{state['offset']}",
                    "timestamp": _timestamp(),
                    "data": {"seq": i, "pt": pt, "payload": PAYLOAD},
                }
                broadcast(connections, encode(event), text=True)

            return respond(ws, await steady_loop(publish, rate, duration))
        if path == "/bench/info":
            return respond(ws, {**_info(), "clients": len(connections)})
        return None

    async def main() -> None:
        # open_timeout=None: a slow burst (answered from process_request) would otherwise be
        # cut off after websockets' default 10 s handshake limit.
        async with serve(
            handler, "127.0.0.1", port, process_request=process_request, open_timeout=None
        ) as server:
            await server.serve_forever()

    uvloop.run(main())


def serve_raw(port: int) -> None:
    """The reference server. K=0: the whole burst pre-framed, in one write per connection
    (the load generator's ceiling). K>0: one bare ``transport.write`` per frame per
    connection, with the same ``asyncio.sleep(0)`` placement as the other servers."""
    import uvloop

    conns: set[RawConn] = set()
    tasks: set[asyncio.Task[None]] = set()

    class RawConn(asyncio.Protocol):
        def __init__(self) -> None:
            self.buf = b""
            self.ws = False
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def connection_lost(self, exc: Exception | None) -> None:
            conns.discard(self)

        def data_received(self, data: bytes) -> None:
            if self.ws:
                return  # pongs and close frames: ignored
            self.buf += data
            if b"\r\n\r\n" not in self.buf:
                return
            head = self.buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            _, target, _ = head[0].split(" ")
            headers = dict(h.split(": ", 1) for h in head[1:] if ": " in h)
            headers = {k.lower(): v for k, v in headers.items()}
            path, _, query = target.partition("?")
            args = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
            if path == "/ws/bench":
                key = headers.get("sec-websocket-key", "")
                accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
                hello = json.dumps({"type": "connection_established", "data": {}}).encode()
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept
                    + b"\r\n\r\n"
                    + _text_frame(hello)
                )
                self.ws = True
                conns.add(self)
                return
            if path == "/bench/burst":
                events = int(args.get("events", "1"))
                every = int(args.get("yield_every", "0"))
                task = asyncio.get_running_loop().create_task(self.burst(events, every))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                return
            self.answer({**_info(), "clients": len(conns)})

        async def burst(self, events: int, every: int) -> None:
            t_start = time.monotonic()
            frames = []
            for i in range(events):
                event = {
                    "type": "tick",
                    "channel": "bench",
                    "id": f"raw:{i + 1}",
                    "timestamp": _timestamp(),
                    "data": {"seq": i, "payload": PAYLOAD},
                }
                frame = _text_frame(json.dumps(event, separators=(",", ":")).encode())
                if every:  # bare per-event writes: one transport.write per frame per client
                    for conn in conns:
                        conn.transport.write(frame)
                    if (i + 1) % every == 0:
                        await asyncio.sleep(0)
                else:
                    frames.append(frame)
            if not every:  # the generator's ceiling: the whole burst in one write per client
                blob = b"".join(frames)
                for conn in conns:
                    conn.transport.write(blob)
            t_end = time.monotonic()
            self.answer({"t_start": t_start, "t_end": t_end, "recipients": events * len(conns)})

        def answer(self, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(raw)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + raw
            )
            self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(RawConn, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    uvloop.run(main())


# =========================================================================== load generator


class Counter:
    """Frames counted over all connections; resolves a waiter when a target is reached."""

    def __init__(self) -> None:
        self.total = 0
        self.target = -1
        self.waiter: asyncio.Future[float] | None = None
        self.closes: list[tuple[int, int, str]] = []  # (client, close code, reason)
        self.lost_connections = 0
        self.errors: list[str] = []
        self.pings = 0  # WebSocket pings received (and answered)

    def expect(self, target: int) -> asyncio.Future[float]:
        self.target = target
        self.waiter = asyncio.get_running_loop().create_future()
        if self.total >= target:
            self.waiter.set_result(time.monotonic())
        return self.waiter

    def add(self, n: int) -> None:
        self.total += n
        if self.total >= self.target and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(time.monotonic())


class WsClient(asyncio.Protocol):
    """Counts the server's text frames by parsing frame headers only.

    ``eio``: the server speaks Socket.IO over Engine.IO v4 (websocket transport); only
    ``42[...]`` event frames are counted; the ``0{...}`` open packet is answered with ``40``
    (connect to the default namespace) and ``2`` (ping) with ``3`` (pong).
    ``latency``: when a list, the receive time minus the event's ``"pt"`` (publish time,
    CLOCK_MONOTONIC) of every event frame is appended to it (one clock reading per read).
    """

    def __init__(
        self, index: int, counter: Counter, path: str, inspect: bool, eio: bool = False
    ) -> None:
        self.index = index
        self.counter = counter
        self.path = path
        self.inspect = inspect
        self.eio = eio
        self.latency: list[float] | None = None
        self.buf = b""
        self.upgraded = False
        self.count = 0
        self.closing = False
        self.transport: Any = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: client 0 only: (seq, payload size) of every event frame, in arrival order.
        self.seen: list[tuple[int, int]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.counter.lost_connections += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"client {self.index}: connection lost"))

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if not status.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(data[:300].decode("latin-1")))
                self.buf = b""
                return
            self.upgraded = True
            if not self.ready.done():
                self.ready.set_result(None)
            data = data[end + 4 :]
        pos = 0
        n = len(data)
        texts = 0
        eio = self.eio
        latency = self.latency
        now = time.monotonic() if latency is not None else 0.0
        while n - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            stop = start + length
            if stop > n:
                break
            if b0 == 0x81:  # FIN + text
                if eio and not (
                    stop - start >= 2 and data[start] == 0x34 and data[start + 1] == 0x32
                ):
                    self._engineio(data[start:stop])  # not a 42 (Socket.IO event) packet
                else:
                    texts += 1
                    if self.inspect:
                        self._inspect(data[start:stop])
                    if latency is not None:
                        at = data.find(b'"pt":', start, stop)
                        if at >= 0:
                            end = at + 5
                            while data[end] not in b",}":
                                end += 1
                            latency.append(now - float(data[at + 5 : end]))
            else:
                self._control(b0, data[start:stop])
            pos = stop
        self.buf = data[pos:] if pos < n else b""
        if texts:
            self.count += texts
            self.counter.add(texts)

    def _inspect(self, payload: bytes) -> None:
        if self.eio:  # 42["tick",{...}]
            name, *rest = json.loads(payload[2:])
            if name == "tick":
                data = rest[0].get("data", rest[0])
                self.seen.append((data["seq"], len(payload)))
            return
        message = json.loads(payload)
        if message.get("type") == "tick":
            self.seen.append((message["data"]["seq"], len(payload)))

    def _send_text(self, payload: bytes) -> None:
        """A masked client text frame (short payloads only)."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes((0x81, 0x80 | len(payload))) + mask + masked)

    def _engineio(self, payload: bytes) -> None:
        if payload[:1] == b"0":  # Engine.IO open -> Socket.IO connect to "/"
            self._send_text(b"40")
        elif payload == b"2":  # Engine.IO ping -> pong
            self._send_text(b"3")
        elif payload[:2] in (b"40", b"6"):  # Socket.IO connected; noop
            pass
        elif payload[:1] == b"1" or payload[:2] in (b"41", b"44"):
            self.counter.errors.append(f"client {self.index}: engine.io {payload[:80]!r}")

    def _control(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == 0x9:  # ping -> masked pong with the same payload
            self.counter.pings += 1
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + mask + masked)
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.counter.closes.append((self.index, code, payload[2:].decode(errors="replace")))
            self.closing = True
            self.transport.close()
        elif opcode != 0xA:
            self.counter.errors.append(f"client {self.index}: unexpected frame byte {b0:#x}")

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


async def http(port: int, method: str, target: str, timeout: float = 120.0) -> dict[str, Any]:
    """One HTTP/1.1 request (Connection: close); the JSON body of a 200 answer."""

    async def go() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # No Content-Length on a GET: Sanic logs "body not consumed" for one, even 0.
            length = "" if method == "GET" else "Content-Length: 0\r\n"
            writer.write(
                f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"{length}Connection: close\r\n\r\n".encode()
            )
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = int(lines[0].split()[1])
            if status != 200:
                raise RuntimeError(f"{method} {target} -> {status}: {body[:300]!r}")
            result: dict[str, Any] = json.loads(body)
            return result
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


# =========================================================================== orchestration


@dataclass
class Run:
    elapsed: float
    publish: float
    rate: float
    srv_cpu: float
    gen_cpu: float

    @property
    def lag(self) -> float:
        """From the end of the publishing loop to the last frame counted."""
        return self.elapsed - self.publish


@dataclass
class Row:
    """One line of the table: a server, a client count, a yield setting."""

    kind: str
    clients: int
    events: int
    yield_every: int
    runs: list[Run] = field(default_factory=list)
    maxrss_kb: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.kind == "raw":
            return "bare write (ref)" if self.yield_every else "generator ceiling"
        return LABEL[self.kind]

    @property
    def k(self) -> str:
        return str(self.yield_every) if self.kind != "raw" or self.yield_every else "-"

    @property
    def median(self) -> float:
        return statistics.median(r.rate for r in self.runs) if self.runs else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server subprocess in its own session; stopped by signalling its process group."""

    def __init__(
        self, kind: str, buffer_size: int, script: str | None = None, method: str | None = None
    ) -> None:
        self.kind = kind
        self.port = free_port()
        # Closed in stop(); the server's output is read back only if it fails.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        script = script or os.path.abspath(__file__)
        cmd = [sys.executable, script, "--serve", kind, "--port", str(self.port)]
        cmd += ["--buffer-size", str(buffer_size)]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.method = method or ("POST" if kind == "sanic-realtime" else "GET")
        self.killed = False

    async def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited:\n{self.tail()}")
            try:
                return await http(self.port, "GET", "/bench/info", timeout=2.0)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind} server not ready:\n{self.tail()}") from None
                await asyncio.sleep(0.1)

    def tail(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    async def stop(self, grace: float = 5.0) -> None:
        """SIGINT to the process group; SIGKILL to it if it has not exited after ``grace``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait, 5)
        self.log.close()


class Target:
    """One server process and the N generator connections to it.

    By default every client connects to ``path`` and must receive every event of every
    burst. Optional, for filtered subscriptions: ``path_of(i)`` is client i's path;
    ``share(i, events)`` is the range of ``seq`` values of a burst of ``events`` that
    client i must receive, in order (its frame count and, for client 0, the order are
    checked against it); ``channel`` is passed to the burst route; ``title`` replaces the
    server's label in reports.
    """

    def __init__(
        self,
        kind: str,
        clients: int,
        buffer_size: int,
        timeout: float,
        pause: bool,
        *,
        script: str | None = None,
        method: str | None = None,
        path: str = "/ws/bench",
        eio: bool = False,
        path_of: Callable[[int], str] | None = None,
        share: Callable[[int, int], range] | None = None,
        channel: str | None = None,
        title: str | None = None,
    ) -> None:
        self.kind = kind
        self.path_of = path_of
        self.share = share
        self.channel = channel
        self.title = title
        self.pause = pause
        self.clients = clients
        self.buffer_size = buffer_size
        self.timeout = timeout
        self.path = path
        self.eio = eio
        self.server = Server(kind, buffer_size, script, method)
        self.counter = Counter()
        self.conns: list[WsClient] = []
        self.bursts: list[int] = []  # events of every burst, in order
        self.loop = "?"
        self.stats: dict[str, Any] | None = None
        self.problems: list[str] = []
        # Filled by check():
        self.lost = 0
        self.extra = 0
        self.order_ok: bool | None = None
        self.frame_size: int | None = None

    @property
    def label(self) -> str:
        if self.title:
            return self.title
        return "raw reference server" if self.kind == "raw" else LABEL[self.kind]

    def seqs(self, index: int, events: int) -> range:
        """The ``seq`` values of a burst of ``events`` that client ``index`` must get."""
        return self.share(index, events) if self.share else range(events)

    def expected(self, index: int) -> int:
        """Text frames client ``index`` must have counted so far: welcome + its events."""
        if self.share is None:
            return 1 + sum(self.bursts)
        return 1 + sum(len(self.share(index, b)) for b in self.bursts)

    async def start(self) -> None:
        info = await self.server.wait_ready()
        self.loop = info["loop"]
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            path = self.path_of(i) if self.path_of else self.path
            async with sem:
                _, client = await loop.create_connection(
                    lambda: WsClient(i, self.counter, path, inspect=i == 0, eio=self.eio),
                    "127.0.0.1",
                    self.server.port,
                )
                self.conns.append(client)
                await asyncio.wait_for(client.ready, 30)

        await asyncio.gather(*(one(i) for i in range(self.clients)))
        self.conns.sort(key=lambda c: c.index)
        # Every client has its connection_established.
        await asyncio.wait_for(self.counter.expect(self.clients), self.timeout)

    async def info(self) -> dict[str, Any]:
        return await http(self.server.port, "GET", "/bench/info")

    async def burst(self, events: int, yield_every: int) -> Run | str:
        """Publish ``events`` in the server; a Run, or what went wrong."""
        clients = self.clients
        deliveries = events * clients
        if self.share is not None:
            deliveries = sum(len(self.share(j, events)) for j in range(clients))
        target = self.counter.total + deliveries
        info0 = await self.info()
        cpu0 = time.process_time()
        waiter = self.counter.expect(target)
        query = f"/bench/burst?events={events}&yield_every={yield_every}"
        if self.channel:
            query += f"&channel={self.channel}"
        if self.pause:  # diagnostic: nothing is read while the server publishes
            for c in self.conns:
                c.transport.pause_reading()
        try:
            answer = await http(self.server.port, self.server.method, query, timeout=self.timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            raise RuntimeError(
                f"{self.server.kind}: {query} failed ({e!r}); server output:\n{self.server.tail()}"
            ) from None
        finally:
            if self.pause:
                for c in self.conns:
                    c.transport.resume_reading()
        self.bursts.append(events)
        try:
            t_done = await asyncio.wait_for(waiter, self.timeout)
        except asyncio.TimeoutError:
            missing = target - self.counter.total
            return f"{missing} of {deliveries} frames not received within {self.timeout:g}s"
        cpu1 = time.process_time()
        info1 = await self.info()
        if answer["recipients"] != deliveries:
            return f"the server reports {answer['recipients']} recipients, expected {deliveries}"
        wrong = [c for c in self.conns if c.count != self.expected(c.index)]
        if wrong:
            c = wrong[0]
            return (
                f"{len(wrong)} clients have a frame count other than expected (client "
                f"{c.index}: {c.count}, expected {self.expected(c.index)})"
            )
        elapsed = t_done - answer["t_start"]
        return Run(
            elapsed=elapsed,
            publish=answer["t_end"] - answer["t_start"],
            rate=deliveries / elapsed,
            srv_cpu=(info1["cpu"] - info0["cpu"]) / elapsed,
            gen_cpu=(cpu1 - cpu0) / elapsed,
        )

    async def check(self) -> None:
        """After the last burst: exact per-client counts, client 0's order, server stats."""
        await asyncio.sleep(0.3)  # let anything extra arrive
        if self.kind == "sanic-realtime":
            self.stats = await http(self.server.port, "GET", "/admin/ws/stats")
        for c in self.conns:
            expected = self.expected(c.index)
            if c.count < expected:
                self.lost += expected - c.count
            elif c.count > expected:
                self.extra += c.count - expected
        if self.conns:
            seen = self.conns[0].seen
            self.frame_size = seen[0][1] if seen else None
            index = self.conns[0].index
            want = [i for b in self.bursts for i in self.seqs(index, b)]
            self.order_ok = [s for s, _ in seen] == want
        self.problems.extend(self.counter.errors[:5])

    @property
    def failed(self) -> bool:
        c = self.counter
        return bool(
            self.problems
            or self.lost
            or self.extra
            or c.closes
            or c.lost_connections
            or self.order_ok is False
        )

    async def stop(self) -> None:
        for c in self.conns:
            c.close()
        await asyncio.sleep(0.05)
        await self.server.stop()


def _versions(
    names: tuple[str, ...] = ("sanic-realtime", "sanic", "websockets", "uvloop", "msgspec"),
) -> str:
    """``name version`` of each installed distribution in ``names``."""
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def _source_digest() -> str:
    """A digest of the installed sanic_realtime sources (the package has no release tag
    to name, and it may change between runs)."""
    import sanic_realtime

    root = os.path.dirname(os.path.abspath(sanic_realtime.__file__))
    digest = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(base, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:12]


def _git() -> str:
    """``; git <commit>[ + uncommitted changes]`` for the package directory, if known."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--", "sanic_realtime"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"; git {head}" + (" + uncommitted changes" if dirty else "")


def _events_for(args: argparse.Namespace, clients: int) -> int:
    if args.events:
        return int(args.events)
    events = max(10, round(args.deliveries / clients))
    return min(events, args.buffer_size) if args.buffer_size else events


async def bench_clients(
    clients: int, args: argparse.Namespace, rows: list[Row], targets: list[Target]
) -> None:
    """Every row for one client count. All servers run side by side (idle while another
    is measured) and their timed bursts are interleaved, rotating the order each round,
    so that drifts in the machine's speed hit every server alike."""
    events = _events_for(args, clients)
    buffer_size = args.buffer_size or max(4096, 2 * events)
    blocks: list[tuple[int, list[str]]] = []
    for every in args.yield_every:
        kinds = list(KINDS)
        if (every and not args.no_reference) or (not every and not args.no_ceiling):
            kinds.append("raw")
        blocks.append((every, kinds))
    if 0 not in args.yield_every and not args.no_ceiling:
        blocks.append((0, ["raw"]))
    needed = [k for k in (*KINDS, "raw") if any(k in kinds for _, kinds in blocks)]
    started: dict[str, Target] = {}
    try:
        for kind in needed:
            target = Target(kind, clients, buffer_size, args.timeout, args.pause_reading)
            started[kind] = target
            targets.append(target)
            try:
                await target.start()
            except Exception as e:
                target.problems.append(f"start: {type(e).__name__}: {e}")
                if target.server.proc.poll() is not None:
                    target.problems.append(f"server log tail:\n{target.server.tail()}")
        for every, kinds in blocks:
            block = [Row(kind, clients, events, every) for kind in kinds]
            rows.extend(block)
            live = [r for r in block if not started[r.kind].problems]
            for r in block:
                if r not in live:
                    r.problems.append("server did not start")
            for r in live:  # warm-up, untimed
                outcome = await started[r.kind].burst(max(1, events // 4), every)
                if isinstance(outcome, str):
                    r.problems.append(f"warm-up: {outcome}")
            live = [r for r in live if not r.problems]
            for i in range(args.runs):
                shift = i % len(live) if live else 0
                for r in live[shift:] + live[:shift]:
                    if r.problems:
                        continue
                    outcome = await started[r.kind].burst(events, every)
                    if isinstance(outcome, str):
                        r.problems.append(f"run {i + 1}: {outcome}")
                        continue
                    r.runs.append(outcome)
                    print(
                        f"  {r.label:<20} N={clients:<5} K={r.k:<2} run {i + 1}: "
                        f"{outcome.rate:>11,.0f} deliveries/s  ({outcome.elapsed:.3f} s; "
                        f"publish loop {outcome.publish:.3f} s; srv {outcome.srv_cpu:.0%}, "
                        f"gen {outcome.gen_cpu:.0%})",
                        flush=True,
                    )
            for r in block:
                if r.kind in started and not started[r.kind].problems:
                    with contextlib.suppress(Exception):
                        r.maxrss_kb = (await started[r.kind].info())["maxrss_kb"]
        for target in started.values():
            if not target.problems:
                try:
                    await target.check()
                except Exception as e:
                    target.problems.append(f"check: {type(e).__name__}: {e}")
    finally:
        for target in started.values():
            await target.stop()


async def orchestrate(args: argparse.Namespace) -> int:
    import uvloop

    pinned = _pin(CLIENT_CPU) if (os.cpu_count() or 1) > 1 else False
    started = time.monotonic()
    print("fan-out benchmark: deliveries/s from ONE server process to N WebSocket clients")
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(f"machine: nproc={os.cpu_count()}, {platform.machine()}, Linux {platform.release()}")
    print(f"python {platform.python_version()}; {_versions()}")
    source = _source_digest()
    print(f"sanic_realtime sources: sha256 {source} (all .py files of the package){_git()}")
    print(
        f"pinning: servers on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU}"
        if pinned
        else "pinning: NOT pinned (needs 2 CPUs and sched_setaffinity)"
    )
    loop_name = type(asyncio.get_running_loop()).__module__
    print(f"load generator: raw asyncio.Protocol clients on {loop_name} {uvloop.__version__}")
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
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    if _source_digest() != source:
        print("WARNING: the sanic_realtime sources changed during this run; rows may have")
        print("measured different code. Run again.")
        return 1
    failed = any(r.problems or not r.runs for r in rows) or any(t.failed for t in targets)
    return 1 if failed else 0


def print_report(rows: list[Row], targets: list[Target]) -> None:
    loops = {t.label: t.loop for t in targets}
    print("server event loops: " + ", ".join(f"{k}: {v}" for k, v in loops.items()))
    sizes = {t.label: t.frame_size for t in targets if t.frame_size}
    print(
        "event payload bytes (first event of client 0): "
        + ", ".join(f"{k}: {v}" for k, v in sizes.items())
    )
    print()
    header = (
        f"{'server':<21}{'clients':>7}{'events':>7}{'K':>3}{'deliveries/s':>14}"
        f"  {'min..max':<23}{'elapsed':>8}{'loop':>8}{'lag':>8}{'srv%':>6}{'gen%':>6}"
        f"{'RSS MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if r.runs:
            rates = [x.rate for x in r.runs]
            spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
            elapsed = statistics.median(x.elapsed for x in r.runs)
            loop = statistics.median(x.publish for x in r.runs)
            lag = round(statistics.median(x.lag for x in r.runs) * 1000)
            srv = statistics.median(x.srv_cpu for x in r.runs)
            gen = statistics.median(x.gen_cpu for x in r.runs)
            cols = (
                f"{r.median:>14,.0f}  {spread:<23}{elapsed:>7.3f}s{loop:>7.3f}s{lag:>6d}ms"
                f"{srv:>6.0%}{gen:>6.0%}"
            )
        else:
            cols = f"{'FAILED':>14}  {'':<23}{'':>8}{'':>8}{'':>8}{'':>6}{'':>6}"
        rss = f"{r.maxrss_kb / 1024:.0f}" if r.maxrss_kb else "?"
        print(f"{r.label:<21}{r.clients:>7}{r.events:>7}{r.k:>3}{cols}{rss:>7}")
    print()
    print("ratio sanic-realtime / websockets.broadcast (of the medians):")
    for r in rows:
        if r.kind != "sanic-realtime":
            continue
        peer = next(
            (
                p
                for p in rows
                if p.kind == "websockets"
                and p.clients == r.clients
                and p.yield_every == r.yield_every
            ),
            None,
        )
        if peer is None or not peer.median or not r.median:
            print(f"  clients={r.clients:<5} K={r.yield_every}: n/a")
            continue
        print(f"  clients={r.clients:<5} K={r.yield_every}: {r.median / peer.median:.2f}x")
    print()
    print("checks, per server process (all its bursts):")
    for t in targets:
        c = t.counter
        closes = ",".join(sorted({str(code) for _, code, _ in c.closes})) or "none"
        order = {True: "ok", False: "WRONG", None: "n/a"}[t.order_ok]
        line = (
            f"  {t.label:<20} N={t.clients:<5} events published={sum(t.bursts)}: lost frames="
            f"{t.lost} extra={t.extra} close frames={len(c.closes)} (codes {closes}) "
            f"connections lost={c.lost_connections} client-0 seq order {order}"
        )
        if t.stats is not None:
            line += (
                f"; buffer_size={t.buffer_size}; /admin/ws/stats: "
                f"messages_dropped={t.stats.get('messages_dropped')} "
                f"slow_disconnects={t.stats.get('slow_disconnects')} "
                f"messages_sent={t.stats.get('messages_sent')}"
            )
        if t.server.killed:
            line += "; the server needed SIGKILL after SIGINT"
        print(line)
        for p in t.problems:
            print(f"    PROBLEM: {p}")
    for r in rows:
        for p in r.problems:
            print(f"  PROBLEM {r.label} N={r.clients} K={r.k}: {p}")
    print()
    print(
        "deliveries/s = events x clients / (first publish -> last frame counted by the "
        "generator); median of the runs\n"
        "K = await asyncio.sleep(0) after every K events (0 = never)\n"
        "elapsed, loop, lag, srv%, gen% = medians; loop = the server's publishing loop, "
        "first publish to return;\n  lag = last frame counted - end of the publishing loop\n"
        "srv%/gen% = CPU time (user+sys) of server/generator during the timed window\n"
        "RSS MB = the server's peak RSS (VmHWM) so far, read after the row's runs\n"
        "bare write (ref) = a trivial uvloop server doing one transport.write per frame per "
        "client\n"
        "generator ceiling = the trivial server writing each client's whole burst at once"
    )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers: {text!r}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fan-out deliveries/s of one server process: sanic-realtime vs "
        "websockets.broadcast(). See the module docstring for the method."
    )
    parser.add_argument(
        "--clients",
        type=_int_list,
        default=[1000],
        help="comma-separated client counts (default 1000)",
    )
    parser.add_argument(
        "--yield-every",
        type=_int_list,
        default=[1],
        help="await asyncio.sleep(0) after every K events, 0 = never; comma-separated "
        "for several (default 1)",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=0,
        help="events per timed burst (default: --deliveries / clients)",
    )
    parser.add_argument(
        "--deliveries",
        type=int,
        default=1_000_000,
        help="deliveries per timed burst when --events is not given (default 1000000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed bursts per row (default 3)")
    parser.add_argument(
        "--buffer-size",
        type=int,
        default=0,
        help="sanic-realtime buffer_size (default: max(4096, 2 x events))",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for a burst to be delivered (default 60)",
    )
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 200 clients, 100000 deliveries per burst",
    )
    parser.add_argument(
        "--serve", choices=["sanic-realtime", "websockets", "raw"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    _raise_nofile()
    if args.serve:
        if (os.cpu_count() or 1) > 1:
            _pin(SERVER_CPU)
        if args.serve == "sanic-realtime":
            serve_sanic(args.port, args.buffer_size or 4096)
        elif args.serve == "websockets":
            serve_websockets(args.port)
        else:
            serve_raw(args.port)
        return 0

    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.quick:
        args.clients = [200]
        args.deliveries = 100_000
    if args.buffer_size and args.events > args.buffer_size:
        parser.error("--events must not exceed --buffer-size (a burst would overflow buffers)")
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
