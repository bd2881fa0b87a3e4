"""The server programs. Each runs in its own subprocess, started by ``harness.servers``:
``python -m harness.apps --serve KIND --port P --buffer-size B`` (one process), or the
Sanic CLI with the factory ``harness.apps:create_app`` (redis_fanout.py's rows).

Every server sends one welcome text message per connection, then the same JSON envelope
per event (type, channel, id, timestamp, data = {"seq", ["pt",] "payload": 150 x "x"}),
and answers, in its own event loop:

- ``/bench/burst?events=E&yield_every=K[&channel=c]``: publish E events, ``await
  asyncio.sleep(0)`` after every K (0 = never); answers ``t_start`` / ``t_end`` (its
  ``time.monotonic()`` at the first publish and after the last) and ``recipients``.
  sanic-realtime also takes ``concurrency=C`` (C tasks, task j publishing seq j, j+C,
  ..., each awaiting its own publishes; the burst ends when all are done) and
  ``batch=B`` (``await rt.publish_many(channel, [...])`` with B events at a time, when
  the package has ``publish_many``; 400 otherwise).
- ``/bench/steady?rate=R&duration=D[&channel=c]``: R events/s for D s on a fixed schedule
  (``steady_loop``), each event's data carrying ``"pt"``, its publish time.
- ``/bench/info``: its CPU time, peak RSS, event loop, pid (and clients, for the peers;
  sanic-realtime: ``package`` = the ``sanic_realtime.__file__`` it imported, and
  whether it has ``publish_many``).

POST for the Sanic servers, GET for the others (the websockets HTTP parser only takes
GET). The kinds:

sanic-realtime   ``Sanic("bench")`` + ``Realtime(...).blueprint``, memory backplane,
                 ``app.run(single_process=True, access_log=False)``; publish = ``await
                 rt.publish(channel, "tick", data)``. Channels ``bench`` and ``filtered``
                 (filters ``component`` (eq) and ``level`` (min over LEVELS); its events'
                 data also carry ``component`` = ``c{seq % 10}`` and ``level`` =
                 ``critical``). ``BENCH_HEARTBEAT`` (s) turns the heartbeat on.
sanic-realtime-redis  the same with the Redis backplane at ``BENCH_BACKPLANE`` (a Redis
                 URL), key prefix ``BENCH_PREFIX`` (compare.py's Redis row).
create_app       the same app for the Sanic CLI (``--single-process`` or ``--workers N``):
                 channels ``bench`` and ``idle``, ``BENCH_BACKPLANE`` (``memory`` or a Redis
                 URL), ``BENCH_PREFIX`` (Redis key prefix), ``BENCH_BUFFER``.
websockets       websockets ``serve`` on uvloop; the handler sends the welcome, then waits
                 for the close; publish = the envelope encoded once with msgspec, then
                 ``broadcast(connections, frame, text=True)``. Answers from
                 ``process_request``.
raw              a few lines of ``asyncio.Protocol`` on uvloop. K>0: one bare
                 ``transport.write`` per frame per client (``bare write (ref)``). K=0: the
                 whole burst pre-framed and written to each client at once (``generator
                 ceiling``: how fast the load generator can count).
sanic-hub        Sanic's own ``@app.websocket`` handler adds ``ws`` to a set; publish =
                 ``for ws in list(clients): await ws.send(frame_str)``.
sanic-gather     the same, publish = ``await asyncio.gather(*(ws.send(frame_str) for ws in
                 clients))``.
socketio         python-socketio 5 ``AsyncServer(async_mode="aiohttp")`` on aiohttp;
                 publish = ``await sio.emit("tick", envelope)`` to everyone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import resource
import sys
import time
from typing import Any

PAYLOAD = "x" * 150
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0E11DC85"
#: sanic-realtime's filtered channel: it declares the filters ``component`` (eq) and
#: ``level`` (min over LEVELS); its events' data carry ``component = f"c{seq %
#: COMPONENTS}"`` and ``level = "critical"`` (see filtered_data).
FILTER_CHANNEL = "filtered"
LEVELS = ("debug", "info", "warn", "error", "critical")
COMPONENTS = 10
#: sanic-realtime's channels; each app declares some of them.
CHANNELS: dict[str, dict[str, Any]] = {
    "bench": {},
    FILTER_CHANNEL: {"filters": {"component": {}, "level": {"op": "min", "order": list(LEVELS)}}},
    "idle": {},  # a channel nobody subscribes to (redis_fanout.py's publish-only loop)
}


# =========================================================================== shared parts


def _peak_rss_kb() -> int | None:
    """This process's VmHWM (see servers.peak_rss_kb)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def info(**extra: Any) -> dict[str, Any]:
    """What every server's ``/bench/info`` answers."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    loop = asyncio.get_running_loop()
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": _peak_rss_kb(),
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "pid": os.getpid(),
        **extra,
    }


def timestamp() -> str:
    t = dt.datetime.now(dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return head + payload


def bench_data(i: int) -> dict[str, Any]:
    """Event i's data on ``bench``."""
    return {"seq": i, "payload": PAYLOAD}


def filtered_data(i: int) -> dict[str, Any]:
    """Event i's data on FILTER_CHANNEL: ``bench``'s ``seq`` and ``payload``, plus the
    fields its filters read. ``level`` is the highest of LEVELS, so every ``level=`` value
    matches it."""
    return {"seq": i, "component": f"c{i % COMPONENTS}", "level": LEVELS[-1], "payload": PAYLOAD}


def peer_data(i: int, pt: float | None = None) -> dict[str, Any]:
    if pt is None:
        return {"seq": i, "payload": PAYLOAD}
    return {"seq": i, "pt": pt, "payload": PAYLOAD}


class Envelope:
    """The peers' events: sanic-realtime's envelope, ids ``peer:<offset>``."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        self.offset += 1
        return {
            "type": "tick",
            "channel": "bench",
            "id": f"peer:{self.offset}",
            "timestamp": timestamp(),
            "data": data,
        }


def hello() -> dict[str, Any]:
    """The peers' welcome message."""
    return {"type": "connection_established", "timestamp": timestamp(), "data": {}}


def answer(t_start: float, t_end: float, recipients: int) -> dict[str, Any]:
    """A burst's answer: its first publish and end (``time.monotonic()``), recipients."""
    return {"t_start": t_start, "t_end": t_end, "recipients": recipients, "pid": os.getpid()}


def steady_args(args: dict[str, str]) -> tuple[float, float]:
    return float(args.get("rate", "100")), float(args.get("duration", "5"))


async def steady_loop(publish: Any, rate: float, duration: float) -> dict[str, Any]:
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


# =========================================================================== sanic-realtime


def realtime_app(
    buffer_size: int,
    channels: tuple[str, ...],
    backplane: str = "memory",
    prefix: str = "",
    heartbeat: float = 0.0,
) -> Any:
    """sanic-realtime's bench app: ``channels`` (of CHANNELS), ``slow_client:
    disconnect``, the burst, steady and info routes."""
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse
    from sanic.response import json as json_response

    from sanic_realtime import Realtime
    from sanic_realtime.config import parse_config

    config: dict[str, Any] = {
        "buffer_size": buffer_size,
        "slow_client": "disconnect",
        "max_clients": 20000,
        "channels": {name: CHANNELS[name] for name in channels},
    }
    if backplane != "memory":
        config["backplane"] = backplane
        config["redis"] = {"prefix": prefix}
    if heartbeat:  # pings that actually happen during a short run (compare.py's idle phase)
        config.update(heartbeat_interval=heartbeat, client_timeout=3 * heartbeat)
    rt = Realtime(parse_config(config))
    app = Sanic("bench")
    app.config.AUTO_EXTEND = False
    app.blueprint(rt.blueprint)

    def data_of(request: Request) -> tuple[str, Any]:
        channel = request.args.get("channel", "bench")
        return channel, filtered_data if channel == FILTER_CHANNEL else bench_data

    publish_many = getattr(rt, "publish_many", None)

    @app.post("/bench/burst")
    async def burst(request: Request) -> HTTPResponse:
        events = int(request.args.get("events", "1"))
        every = int(request.args.get("yield_every", "1"))
        concurrency = int(request.args.get("concurrency", "1"))
        batch = int(request.args.get("batch", "0"))
        if events < 1 or every < 0 or concurrency < 1 or batch < 0:
            return json_response(
                {"error": "events, concurrency >= 1; yield_every, batch >= 0"}, 400
            )
        if batch and publish_many is None:
            return json_response({"error": "this sanic_realtime has no publish_many"}, 400)
        channel, make = data_of(request)
        t_start = time.monotonic()
        if batch:
            recipients = await many_loop(channel, make, events, batch)
        elif concurrency == 1:
            recipients = await publish_loop(channel, make, range(events), every)
        else:
            # Task j publishes seq j, j + C, j + 2C, ...: each awaits its own publishes.
            shares = [range(j, events, concurrency) for j in range(concurrency)]
            counts = await asyncio.gather(
                *(publish_loop(channel, make, share, every) for share in shares)
            )
            recipients = sum(counts)
        t_end = time.monotonic()
        return json_response(answer(t_start, t_end, recipients))

    async def publish_loop(channel: str, make: Any, seqs: range, every: int) -> int:
        recipients = 0
        for n, i in enumerate(seqs, 1):
            result = await rt.publish(channel, "tick", make(i))
            recipients += result.recipients
            if every and n % every == 0:
                await asyncio.sleep(0)
        return recipients

    async def many_loop(channel: str, make: Any, events: int, batch: int) -> int:
        assert publish_many is not None
        recipients = 0
        for first in range(0, events, batch):
            stop = min(events, first + batch)
            results = await publish_many(channel, [("tick", make(i)) for i in range(first, stop)])
            if len(results) != stop - first:
                raise RuntimeError(f"publish_many returned {len(results)} results")
            recipients += sum(r.recipients for r in results)
        return recipients

    @app.post("/bench/steady")
    async def steady(request: Request) -> HTTPResponse:
        rate, duration = steady_args({k: request.args.get(k) for k in request.args})
        channel, make = data_of(request)

        async def publish(i: int, pt: float) -> None:
            await rt.publish(channel, "tick", {**make(i), "pt": pt})

        return json_response(await steady_loop(publish, rate, duration))

    @app.get("/bench/info")
    async def bench_info(request: Request) -> HTTPResponse:
        import sanic_realtime

        return json_response(
            info(package=sanic_realtime.__file__, publish_many=publish_many is not None)
        )

    return app


def serve_realtime(port: int, buffer_size: int, backplane: str = "memory") -> None:
    heartbeat = float(os.environ.get("BENCH_HEARTBEAT", "0"))
    app = realtime_app(
        buffer_size,
        ("bench", FILTER_CHANNEL),
        backplane=backplane,
        prefix=os.environ.get("BENCH_PREFIX", ""),
        heartbeat=heartbeat,
    )
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def create_app() -> Any:
    """The Sanic CLI's factory (``python -m sanic harness.apps:create_app --factory``)."""
    return realtime_app(
        int(os.environ.get("BENCH_BUFFER", "4096")),
        ("bench", "idle"),
        backplane=os.environ.get("BENCH_BACKPLANE", "memory"),
        prefix=os.environ.get("BENCH_PREFIX", ""),
    )


# =========================================================================== the peers


def serve_websockets(port: int) -> None:
    import msgspec
    import uvloop
    from websockets.asyncio.server import ServerConnection, broadcast, serve
    from websockets.http11 import Request, Response

    connections: set[ServerConnection] = set()
    encode = msgspec.json.Encoder().encode
    envelope = Envelope()

    async def handler(ws: ServerConnection) -> None:
        connections.add(ws)
        try:
            await ws.send(encode(hello()), text=True)
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
                recipients += len(connections)
                broadcast(connections, encode(envelope(peer_data(i))), text=True)
                if every and (i + 1) % every == 0:
                    await asyncio.sleep(0)
            t_end = time.monotonic()
            return respond(ws, answer(t_start, t_end, recipients))
        if path == "/bench/steady":

            async def publish_at(i: int, pt: float) -> None:
                broadcast(connections, encode(envelope(peer_data(i, pt))), text=True)

            return respond(ws, await steady_loop(publish_at, *steady_args(args)))
        if path == "/bench/info":
            return respond(ws, info(clients=len(connections)))
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
                welcome = json.dumps({"type": "connection_established", "data": {}}).encode()
                self.transport.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept
                    + b"\r\n\r\n"
                    + text_frame(welcome)
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
            self.answer(info(clients=len(conns)))

        async def burst(self, events: int, every: int) -> None:
            t_start = time.monotonic()
            frames = []
            for i in range(events):
                event = {
                    "type": "tick",
                    "channel": "bench",
                    "id": f"raw:{i + 1}",
                    "timestamp": timestamp(),
                    "data": {"seq": i, "payload": PAYLOAD},
                }
                frame = text_frame(json.dumps(event, separators=(",", ":")).encode())
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
            self.answer(answer(t_start, t_end, events * len(conns)))

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
    envelope = Envelope()

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
            await ws.send(encode(hello()).decode())
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
            await send_all(encode(envelope(peer_data(i))).decode())
            if every and (i + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return json_response(answer(t_start, t_end, recipients))

    @app.post("/bench/steady")
    async def steady(request: Request) -> HTTPResponse:
        rate, duration = steady_args({k: request.args.get(k) for k in request.args})

        async def publish(i: int, pt: float) -> None:
            await send_all(encode(envelope(peer_data(i, pt))).decode())

        return json_response(await steady_loop(publish, rate, duration))

    @app.get("/bench/info")
    async def bench_info(request: Request) -> HTTPResponse:
        return json_response(info(clients=len(clients)))

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
    envelope = Envelope()

    @sio.event
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        connected.add(sid)
        await sio.emit("connection_established", hello(), to=sid)

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
            await sio.emit("tick", envelope(peer_data(i)))
            if every and (i + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return web.json_response(answer(t_start, t_end, recipients))

    async def steady(request: web.Request) -> web.Response:
        async def publish(i: int, pt: float) -> None:
            await sio.emit("tick", envelope(peer_data(i, pt)))

        return web.json_response(await steady_loop(publish, *steady_args(dict(request.query))))

    async def bench_info(request: web.Request) -> web.Response:
        return web.json_response(info(clients=len(connected)))

    app.router.add_get("/bench/burst", burst)
    app.router.add_get("/bench/steady", steady)
    app.router.add_get("/bench/info", bench_info)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        await asyncio.Event().wait()

    uvloop.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description="One benchmark server (see harness.apps).")
    parser.add_argument("--serve", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--buffer-size", type=int, default=4096)
    args = parser.parse_args()
    if args.serve == "sanic-realtime":
        serve_realtime(args.port, args.buffer_size)
    elif args.serve == "sanic-realtime-redis":
        backplane = os.environ.get("BENCH_BACKPLANE", "")
        if not backplane.startswith(("redis://", "rediss://", "unix://")):
            parser.error(
                f"sanic-realtime-redis needs BENCH_BACKPLANE=<Redis URL>, not {backplane!r}"
            )
        serve_realtime(args.port, args.buffer_size, backplane)
    elif args.serve == "websockets":
        serve_websockets(args.port)
    elif args.serve == "raw":
        serve_raw(args.port)
    elif args.serve in ("sanic-hub", "sanic-gather"):
        serve_sanic_peer(args.port, args.serve)
    elif args.serve == "socketio":
        serve_socketio(args.port)
    else:
        parser.error(f"unknown server {args.serve}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
