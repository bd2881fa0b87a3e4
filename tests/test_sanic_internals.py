"""The private parts of Sanic and websockets that sanic_realtime.transport relies on
(sanic_realtime/sanic_internals.py): one test per assumption, named ``test_<name>``, each
failing with a message that names the assumption and what the adapter needs from it.

Run this file first after a Sanic or websockets upgrade (DEVELOPERS.md, "Sanic internals
we rely on"). Shapes are checked with inspect, behaviour on a bare WebsocketImplProtocol
where no connection is needed, and otherwise through a real Sanic server on a free port
(a ``/probe`` route that hands each connection to the test) with real clients. Nothing
here waits for something to *not* happen by the clock: a bound (``wait_for``) only turns
a hang into a failure.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import itertools
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sanic
import websockets
from sanic import Sanic
from sanic.exceptions import RequestCancelled
from sanic.server.protocols import websocket_protocol
from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from sanic.server.websockets import frame as sanic_frame
from sanic.server.websockets import impl
from sanic.server.websockets.frame import WebsocketFrameAssembler
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets import http11
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from sanic_realtime import sanic_internals, transport
from sanic_realtime.sanic_internals import (
    ASSUMPTIONS,
    SANIC_CHECKED,
    WEBSOCKETS_CHECKED,
    Assumption,
    assumption,
)
from sanic_realtime.transport import Inbox, SanicSocket

from .conftest import LiveServer, make_realtime
from .rawclient import RawClient

ROOT = Path(__file__).resolve().parent.parent
MISSING: Any = object()
_names = itertools.count()
#: What the probe route records of ``ws`` before anything is changed.
SNAPSHOT = (
    "loop",
    "io_proto",
    "ws_proto",
    "keepalive_ping_task",
    "auto_closer_task",
    "data_finished_fut",
    "connection_lost_waiter",
)


# --------------------------------------------------------------------------- the probe


@dataclass
class Held:
    """One connection of the probe route, held open until released."""

    ws: WebsocketImplProtocol
    socket: SanicSocket | None
    #: ``ws``'s attributes when the handler started (MISSING when absent).
    seen: dict[str, Any]
    release: asyncio.Event = field(default_factory=asyncio.Event)
    #: "returned" or "cancelled" once the handler ended.
    outcome: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Probe:
    """A WebSocket route (``/probe``) that hands its connection to the test. With
    ``adapt`` it makes the SanicSocket first, as the WebSocket route does, and awaits
    ``wait_closed()`` before returning; ``body`` is what the handler awaits meanwhile
    (default: until the test releases it)."""

    def __init__(
        self,
        *,
        adapt: bool = True,
        gate: Callable[[], bool] | None = None,
        body: Callable[[Held], Awaitable[object]] | None = None,
    ) -> None:
        self.adapt = adapt
        self.gate = gate
        self.body = body
        self.held: asyncio.Future[Held] = asyncio.get_running_loop().create_future()

    async def serve(self, ws: WebsocketImplProtocol) -> None:
        seen = {name: getattr(ws, name, MISSING) for name in SNAPSHOT}
        seen["state"] = getattr(seen["ws_proto"], "state", MISSING)
        try:
            sock = SanicSocket(ws, 1 << 20, self.gate) if self.adapt else None
        except BaseException as e:
            self.held.set_exception(e)
            raise
        held = Held(ws, sock, seen)
        self.held.set_result(held)
        try:
            await (self.body(held) if self.body is not None else held.release.wait())
        except asyncio.CancelledError:
            held.outcome.set_result("cancelled")
            raise
        finally:
            if sock is not None:
                await sock.wait_closed()  # as the WebSocket route does
        if not held.outcome.done():
            held.outcome.set_result("returned")


@contextlib.asynccontextmanager
async def probe_server(probe: Probe) -> AsyncIterator[LiveServer]:
    """A real Sanic server on a free port with the realtime blueprint and ``/probe``."""
    app = Sanic(f"rt_internals_{next(_names)}")
    app.config.AUTO_EXTEND = False
    realtime = make_realtime()
    app.blueprint(realtime.blueprint)

    async def probe_route(request: Any, ws: WebsocketImplProtocol) -> None:
        await probe.serve(ws)

    app.add_websocket_route(probe_route, "/probe")
    server = await LiveServer(app, realtime).start()
    try:
        yield server
    finally:
        held = probe.held
        if held.done() and not held.cancelled() and held.exception() is None:
            held.result().release.set()
        await server.stop()
        Sanic._app_registry.pop(app.name, None)


@contextlib.asynccontextmanager
async def raw_client(server: LiveServer, *, rcvbuf: int | None = None) -> AsyncIterator[RawClient]:
    """A RawClient on ``/probe`` (it reads and sends only when told), closed on exit."""
    client = await RawClient.connect(server.port, "/probe", rcvbuf=rcvbuf)
    try:
        yield client
    finally:
        client.close()


async def held_connection(probe: Probe) -> Held:
    return await asyncio.wait_for(probe.held, 10)


def run_on(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` on asyncio's loop or on uvloop's (the ``sanic`` command's)."""
    if loop == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        try:
            uvloop.run(main())
        finally:
            asyncio.set_event_loop(None)  # Sanic's protocol set the (now closed) loop
    else:
        asyncio.run(main())


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset: no FIN, so the server sees no EOF."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def bare_ws() -> WebsocketImplProtocol:
    """A WebsocketImplProtocol as websocket_handshake makes it, without a connection."""
    return WebsocketImplProtocol(ServerProtocol(state=State.OPEN))


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def client_frames(*frames: Frame) -> bytes:
    """What a client sends: masked frames."""
    return b"".join(f.serialize(mask=True) for f in frames)


class CancelRecorder:
    """Stands in for ``recv_cancel``: records cancel(), then passes it on."""

    def __init__(self, then: Any = None) -> None:
        self.then = then
        self.called = asyncio.Event()

    def cancel(self) -> None:
        self.called.set()
        if self.then is not None:
            self.then.cancel()


# --------------------------------------------------------------------------- Sanic


async def test_handler_ws() -> None:
    a = assumption("handler_ws")
    probe = Probe(adapt=False)
    async with probe_server(probe) as server, server.connect("/probe"):
        held = await held_connection(probe)
        assert isinstance(held.ws, WebsocketImplProtocol), a.broken(
            f"the handler was given a {type(held.ws).__qualname__}"
        )
        kinds = {
            "loop": asyncio.AbstractEventLoop,
            "io_proto": WebSocketProtocol,
            "auto_closer_task": asyncio.Task,
            "data_finished_fut": asyncio.Future,
            "connection_lost_waiter": asyncio.Future,
        }
        for name, kind in kinds.items():
            value = held.seen[name]
            assert isinstance(value, kind), a.broken(
                f"`{name}` is {value!r} (not a {kind.__qualname__}) when the handler starts"
            )
        assert held.seen["loop"] is asyncio.get_running_loop(), a.broken(
            "ws.loop is not the loop the handler runs on"
        )


async def test_assembler() -> None:
    a = assumption("assembler")
    ws = bare_ws()
    assert "assembler" in vars(ws), a.broken("no longer has an `assembler` instance attribute")
    assert isinstance(ws.assembler, WebsocketFrameAssembler), a.broken(
        f"`assembler` is a {type(ws.assembler).__qualname__}, not a WebsocketFrameAssembler"
    )
    put = getattr(WebsocketFrameAssembler, "put", None)
    assert inspect.iscoroutinefunction(put) and params(put) == ["self", "frame"], a.broken(
        "WebsocketFrameAssembler.put is no longer `async def put(self, frame)` (Inbox.put "
        "mirrors it)"
    )
    assert inspect.iscoroutinefunction(Inbox.put) and params(Inbox.put) == params(put)

    received: list[Frame] = []

    class Assembler:
        async def put(self, frame: Frame) -> None:
            received.append(frame)

    ws.assembler = Assembler()  # type: ignore[assignment]
    frame = Frame(Opcode.TEXT, b"hello")
    await ws.process_events([frame])
    assert received == [frame], a.broken(
        "process_events no longer hands a data frame to `self.assembler.put` (looked up "
        "at each use)"
    )


async def test_recv_cancel() -> None:
    a = assumption("recv_cancel")
    ws = bare_ws()
    assert "recv_cancel" in vars(ws) and ws.recv_cancel is None, a.broken(
        "`recv_cancel` is no longer an instance attribute that is None while nobody calls "
        "Sanic's recv()"
    )
    recorder = CancelRecorder()
    ws.recv_cancel = recorder  # type: ignore[assignment]
    await ws.process_events([Frame(Opcode.CLOSE, Close(1000, "").serialize())])
    assert recorder.called.is_set(), a.broken(
        "process_events no longer calls `recv_cancel.cancel()` for a close frame"
    )
    assert "recv_cancel" in inspect.getsource(WebsocketImplProtocol.async_eof_received), a.broken(
        "async_eof_received no longer calls `recv_cancel.cancel()` on EOF"
    )


async def test_data_received() -> None:
    a = assumption("data_received")
    assert hasattr(bare_ws(), "__dict__"), a.broken(
        "WebsocketImplProtocol instances no longer take attributes (__slots__?)"
    )
    assert params(WebsocketImplProtocol.data_received) == ["self", "data"], a.broken(
        "data_received is no longer `data_received(self, data)`"
    )
    frames: list[None] = []

    def gate() -> bool:  # called by SanicSocket's reader only, once per frame
        frames.append(None)
        return True

    probe = Probe(gate=gate)
    async with probe_server(probe) as server, server.connect("/probe") as client:
        held = await held_connection(probe)
        assert held.socket is not None
        await client.send("hello")
        message = await asyncio.wait_for(held.socket.recv(), 10)
        assert message == "hello"
        assert len(frames) == 1, a.broken(
            f"a frame reached the handler but SanicSocket's reader saw {len(frames)} frames: "
            "WebSocketProtocol.data_received no longer calls the instance's "
            "`data_received`"
        )


async def test_eof_received() -> None:
    a = assumption("eof_received")
    probe = Probe()
    async with probe_server(probe) as server, raw_client(server) as client:
        held = await held_connection(probe)
        assert held.socket is not None
        recorder = CancelRecorder(then=held.ws.recv_cancel)
        held.ws.recv_cancel = recorder  # type: ignore[assignment]
        client.sock.shutdown(socket.SHUT_WR)
        try:
            await asyncio.wait_for(recorder.called.wait(), 10)
        except TimeoutError:
            raise AssertionError(
                a.broken("the client's EOF did not lead to `recv_cancel.cancel()`")
            ) from None
        assert await asyncio.wait_for(held.socket.recv(), 5) is None
        try:
            await client.read_until_closed(timeout=10)
        except TimeoutError:
            raise AssertionError(a.broken("TCP was not closed after the client's EOF")) from None


async def test_ws_proto() -> None:
    a = assumption("ws_proto")
    probe = Probe()
    async with probe_server(probe) as server, server.connect("/probe") as client:
        held = await held_connection(probe)
        proto = held.seen["ws_proto"]
        assert isinstance(proto, ServerProtocol), a.broken(
            f"`ws_proto` is {proto!r}, not a websockets ServerProtocol"
        )
        assert held.seen["state"] is State.OPEN, a.broken(
            f"ws_proto.state is {held.seen['state']!r} when the handler starts"
        )
        assert held.socket is not None
        await client.send("x")
        assert await asyncio.wait_for(held.socket.recv(), 10) == "x"
        assert held.ws.ws_proto is proto, a.broken("ws_proto was replaced during the connection")


async def test_keepalive_ping_task() -> None:
    a = assumption("keepalive_ping_task")
    probe = Probe()
    async with probe_server(probe) as server, server.connect("/probe"):
        held = await held_connection(probe)
        task = held.seen["keepalive_ping_task"]
        assert isinstance(task, asyncio.Task), a.broken(
            f"`keepalive_ping_task` is {task!r} with Sanic's default ping interval, not a Task"
        )
        assert held.ws.keepalive_ping_task is None
        await asyncio.wait([task], timeout=10)
        assert task.done(), a.broken("the keepalive task did not end when cancelled")
        assert task.cancelled() or task.exception() is None, a.broken(
            f"the cancelled keepalive task failed: {task.exception()!r}"
        )


async def test_io_proto() -> None:
    a = assumption("io_proto")
    probe = Probe(adapt=False)
    async with probe_server(probe) as server, server.connect("/probe"):
        held = await held_connection(probe)
        io = held.seen["io_proto"]
        assert isinstance(io, WebSocketProtocol), a.broken(
            f"`io_proto` is {io!r}, not the connection's WebSocketProtocol"
        )
        assert io.transport is not None, a.broken("io_proto.transport is None in the handler")
        assert io.transport.get_protocol() is io, a.broken(
            "io_proto is not its transport's protocol (flow control would not reach it)"
        )
        assert io.websocket is held.ws, a.broken("io_proto.websocket is not the handler's ws")


async def test_io_proto_send() -> None:
    a = assumption("io_proto_send")
    send = WebSocketProtocol.send
    assert inspect.iscoroutinefunction(send) and params(send) == ["self", "data"], a.broken(
        "send is no longer `async def send(self, data)`"
    )
    probe = Probe()
    async with probe_server(probe) as server, raw_client(server):
        held = await held_connection(probe)
        io = held.ws.io_proto
        assert io is not None and io.transport is not None
        io.pause_writing()  # as the transport does at its high-water mark
        waiter = asyncio.ensure_future(io.send(b""))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not waiter.done(), a.broken('send(b"") returned while writing was paused')
        io.resume_writing()
        await asyncio.wait_for(waiter, 10)
        io.transport.close()
        try:
            await asyncio.wait_for(io.send(b""), 10)
        except TimeoutError:
            raise AssertionError(a.broken('send(b"") waits on a closing transport')) from None
        except RequestCancelled:
            pass
        except BaseException as e:
            raise AssertionError(
                a.broken(
                    f'send(b"") on a closing transport raised {e!r}, not RequestCancelled: '
                    "check what SanicSocket._drain and the hub's wait_writable() callers catch"
                )
            ) from e
        else:
            raise AssertionError(a.broken('send(b"") does not raise on a closing transport'))
        assert issubclass(RequestCancelled, asyncio.CancelledError), a.broken(
            "RequestCancelled is no longer an asyncio.CancelledError: check what "
            "SanicSocket._drain and the hub's wait_writable() callers catch"
        )


TRANSPORT_METHODS = (
    "write",
    "is_closing",
    "get_write_buffer_size",
    "get_write_buffer_limits",
    "pause_reading",
    "resume_reading",
    "can_write_eof",
    "write_eof",
    "abort",
    "close",
)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_transport(loop: str) -> None:
    a = assumption("transport")

    async def main() -> None:
        probe = Probe()
        async with probe_server(probe) as server, server.connect("/probe"):
            held = await held_connection(probe)
            assert held.ws.io_proto is not None
            tr = held.ws.io_proto.transport
            missing = [m for m in TRANSPORT_METHODS if not callable(getattr(tr, m, None))]
            assert not missing, a.broken(f"{type(tr).__qualname__} on {loop} lacks {missing}")
            assert tr.can_write_eof() is True, a.broken("the TCP transport cannot half-close")

    run_on(loop, main)


def kernel_send_limit() -> int:
    """The most a TCP send buffer can grow to (autotuning's bound), generously."""
    limits = [4 << 20]
    for path, index in (("/proc/sys/net/ipv4/tcp_wmem", 2), ("/proc/sys/net/core/wmem_max", 0)):
        with contextlib.suppress(OSError, ValueError, IndexError):
            limits.append(int(Path(path).read_text().split()[index]))
    return 2 * max(limits)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_write_buffer_limits(loop: str) -> None:
    """A client that does not read: once the transport holds more than the kernel can
    (so it cannot drain by itself), writable() is False and io_proto.send(b"") waits,
    until the client reads."""
    a = assumption("write_buffer_limits")

    async def main() -> None:
        probe = Probe()
        async with probe_server(probe) as server, raw_client(server, rcvbuf=4096) as client:
            held = await held_connection(probe)
            sock, io = held.socket, held.ws.io_proto
            assert sock is not None and io is not None
            tr = io.transport
            assert tr is not None
            limits = tr.get_write_buffer_limits()
            assert tuple(limits) == (16384, 65536), a.broken(
                f"the write buffer limits on {loop} are {limits}, not (16384, 65536)"
            )
            assert sanic_internals.high_water_mark(tr) == limits[1]
            assert sock.writable()
            frame = Frame(Opcode.BINARY, b"x" * 65536).serialize(mask=False)
            written, target = 0, kernel_send_limit() + (8 << 20)
            while written < target:
                tr.write(frame)
                written += len(frame)
            assert tr.get_write_buffer_size() >= limits[1]
            assert not sock.writable()
            waiter = asyncio.ensure_future(io.send(b""))
            for _ in range(10):
                await asyncio.sleep(0)
            assert not waiter.done(), a.broken(
                f'on {loop}, send(b"") returned while the transport held '
                f"{tr.get_write_buffer_size()} bytes (over the high-water mark): the "
                "transport no longer pauses io_proto's writing there"
            )

            async def read_all() -> None:
                ev_loop = asyncio.get_running_loop()
                while await ev_loop.sock_recv(client.sock, 1 << 20):
                    pass

            reader = asyncio.ensure_future(read_all())
            try:
                await asyncio.wait_for(waiter, 60)
            except TimeoutError:
                raise AssertionError(
                    a.broken(f'on {loop}, send(b"") still waits after the client read')
                ) from None
            assert sock.writable(), a.broken(
                f'on {loop}, send(b"") returned with the buffer still over the mark'
            )
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    run_on(loop, main)


def _calls(module: Any) -> set[tuple[str, str]]:
    """(function, attribute called) pairs in a module's source."""
    tree = ast.parse(inspect.getsource(module))
    found: set[tuple[str, str]] = set()
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(func):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    found.add((func.name, node.func.attr))
    return found


def test_reading_is_ours() -> None:
    a = assumption("reading_is_ours")
    impl_calls, ws_calls = _calls(impl), _calls(websocket_protocol)
    resumers = {f for f, attr in impl_calls | ws_calls if attr == "resume_reading"}
    assert resumers <= {"resume_frames"}, a.broken(
        f"{sorted(resumers)} now resume reading an upgraded connection"
    )
    frame_resumers = {f for f, attr in impl_calls | ws_calls if attr == "resume_frames"}
    assert not frame_resumers, a.broken(
        f"{sorted(frame_resumers)} call resume_frames (only the replaced assembler should)"
    )
    assembler_methods = {
        name for name, _ in inspect.getmembers(WebsocketFrameAssembler, inspect.isfunction)
    }
    outside = {f for f, attr in _calls(sanic_frame) if attr == "resume_frames"} - assembler_methods
    assert not outside, a.broken(f"{sorted(outside)} in frame.py call resume_frames")
    pausers = {f for f, attr in impl_calls | ws_calls if attr == "pause_reading"}
    assert pausers <= {"pause_frames", "fail_connection", "end_connection"}, a.broken(
        f"{sorted(pausers)} now pause reading an upgraded connection"
    )


async def test_pings() -> None:
    a = assumption("pings")
    ws = bare_ws()
    assert isinstance(vars(ws).get("pings"), dict), a.broken("`pings` is no longer a dict")
    pongs: list[str] = []
    ws.pings[b"a"] = transport._Pong(lambda: pongs.append("a"))  # type: ignore[assignment]
    ws.pings[b"b"] = transport._Pong(lambda: pongs.append("b"))  # type: ignore[assignment]
    await ws.process_pong(Frame(Opcode.PONG, b"a"))
    assert pongs == ["a"] and list(ws.pings) == [b"b"], a.broken(
        "process_pong no longer acknowledges the pings up to the pong's payload through "
        "done()/set_result(None) and removes them"
    )
    ws.connection_lost(None)  # abort_pings: set_exception(...), cancel()
    assert pongs == ["a"]


async def test_wait_for_connection_lost() -> None:
    a = assumption("wait_for_connection_lost")
    wait = WebsocketImplProtocol.wait_for_connection_lost
    assert inspect.iscoroutinefunction(wait) and params(wait) == ["self", "timeout"], a.broken(
        "wait_for_connection_lost is no longer `async def ...(self, timeout=None)`"
    )
    probe = Probe()
    async with probe_server(probe) as server, raw_client(server) as client:
        held = await held_connection(probe)
        assert await held.ws.wait_for_connection_lost(0) is False, a.broken(
            "it does not return False while the connection is open and the timeout passed"
        )
        client.close()
        assert await asyncio.wait_for(held.ws.wait_for_connection_lost(10), 15) is True, a.broken(
            "it does not return True once the client closed TCP"
        )


async def test_auto_closer() -> None:
    a = assumption("auto_closer")
    probe = Probe()
    async with probe_server(probe) as server, raw_client(server) as client:
        held = await held_connection(probe)
        closer, done = held.ws.auto_closer_task, held.ws.data_finished_fut
        assert isinstance(closer, asyncio.Task) and not closer.done(), a.broken(
            f"`auto_closer_task` is {closer!r} during the handler"
        )
        assert isinstance(done, asyncio.Future) and not done.done(), a.broken(
            f"`data_finished_fut` is {done!r} during the handler"
        )
        assert sanic_internals.close_through_sanic(held.ws) is True
        try:
            await client.read_until_closed(timeout=10)
        except TimeoutError:
            raise AssertionError(
                a.broken("data_finished_fut.set_result(None) did not close TCP")
            ) from None
        assert client.protocol.close_rcvd is None  # TCP only: the closer sends no frame
        assert await held.ws.wait_for_connection_lost(10)
        assert sanic_internals.close_through_sanic(held.ws) is False


async def test_connection_lost() -> None:
    a = assumption("connection_lost")
    ws = bare_ws()
    ws.connection_lost(None)
    assert ws.ws_proto.state is State.CLOSED, a.broken(
        f"after connection_lost ws_proto.state is {ws.ws_proto.state!r}, not CLOSED"
    )


async def test_lost_connection_cancels_handler() -> None:
    a = assumption("lost_connection_cancels_handler")
    received: list[object] = []

    async def body(held: Held) -> None:
        assert held.socket is not None
        received.append(await held.socket.recv())

    probe = Probe(body=body)
    async with probe_server(probe) as server, raw_client(server) as client:
        held = await held_connection(probe)
        reset(client.sock)
        try:
            outcome = await asyncio.wait_for(held.outcome, 30)
        except TimeoutError:
            raise AssertionError(
                a.broken("a handler waiting in recv() kept waiting after a reset")
            ) from None
        # Cancelled today; a recv() that returned None would do as well.
        assert outcome == "cancelled" or received == [None], (outcome, received)


async def test_handler_end() -> None:
    a = assumption("handler_end")
    ws = bare_ws()
    ws.ws_proto.send_close(4000, "bye")
    ws.ws_proto.data_to_send()
    await ws.close()
    assert ws.ws_proto.data_to_send() == [], a.broken(
        "ws.close() after a close frame was sent queues another one"
    )
    assert ws.ws_proto.state is State.CLOSING


# --------------------------------------------------------------------------- websockets


def test_state() -> None:
    a = assumption("state")
    for module in (impl, websocket_protocol):
        for name in ("OPEN", "CLOSING", "CLOSED"):
            assert getattr(module, name, None) is getattr(State, name), a.broken(
                f"{module.__name__}.{name} is not websockets.protocol.State.{name}"
            )
    assert ServerProtocol(state=State.OPEN).state is State.OPEN


def test_max_message_size() -> None:
    a = assumption("max_message_size")
    proto = ServerProtocol(state=State.OPEN, max_size=1 << 20)
    assert hasattr(proto, "max_message_size"), a.broken(
        f"websockets {websockets.version.version}'s protocol has no `max_message_size` "
        "(before 16.0 it was `max_size`): the limit SanicSocket sets is ignored"
    )
    proto.max_message_size = 10
    proto.receive_data(client_frames(Frame(Opcode.TEXT, b"x" * 10)))
    assert [e.opcode for e in proto.events_received()] == [Opcode.TEXT]
    proto.receive_data(client_frames(Frame(Opcode.TEXT, b"x" * 11)))
    assert proto.events_received() == []
    out = proto.data_to_send()
    assert proto.close_sent is not None and proto.close_sent.code == 1009, a.broken(
        "a message over a max_message_size set after construction did not fail with 1009"
    )
    assert out[-1] == b"" and proto.close_rcvd is None


def test_sans_io_reading() -> None:
    a = assumption("sans_io_reading")
    proto = ServerProtocol(state=State.OPEN)
    stream = client_frames(
        Frame(Opcode.PING, b"p"),
        Frame(Opcode.TEXT, b"ab", fin=False),
        Frame(Opcode.CONT, b"cd", fin=True),
        Frame(Opcode.PONG, b"q"),
        Frame(Opcode.BINARY, b"\x00"),
    )
    events = []
    for i in range(0, len(stream), 5):  # slices that cut frames
        proto.receive_data(stream[i : i + 5])
        events += proto.events_received()
    assert all(isinstance(e, Frame) for e in events), a.broken("events are not all Frames")
    got = [(e.opcode, bytes(e.data), e.fin) for e in events]
    assert got == [
        (Opcode.PING, b"p", True),
        (Opcode.TEXT, b"ab", False),
        (Opcode.CONT, b"cd", True),
        (Opcode.PONG, b"q", True),
        (Opcode.BINARY, b"\x00", True),
    ], a.broken(f"events_received gave {got}")
    out = proto.data_to_send()
    assert out == [Frame(Opcode.PONG, b"p").serialize(mask=False)], a.broken(
        f"data_to_send() after a ping is {out!r}, not the pong"
    )


def test_sans_io_closing() -> None:
    a = assumption("sans_io_closing")
    # The client closes.
    proto = ServerProtocol(state=State.OPEN)
    close = Frame(Opcode.CLOSE, Close(1000, "bye").serialize())
    proto.receive_data(client_frames(close))
    assert [e.opcode for e in proto.events_received()] == [Opcode.CLOSE]
    out = proto.data_to_send()
    assert out == [close.serialize(mask=False), b""], a.broken(
        f"the answer to a client's close is {out!r}, not its echo and end of stream"
    )
    assert proto.close_rcvd is not None and proto.close_rcvd.code == 1000
    proto.receive_data(client_frames(Frame(Opcode.TEXT, b"late")))
    assert proto.events_received() == [], a.broken("input after a close frame is not discarded")
    # The server closes.
    proto = ServerProtocol(state=State.OPEN)
    proto.send_close(4001, "x")
    out = proto.data_to_send()
    assert out == [Frame(Opcode.CLOSE, Close(4001, "x").serialize()).serialize(mask=False)]
    assert proto.state is State.CLOSING and proto.close_sent is not None
    assert proto.close_sent.code == 4001 and proto.close_rcvd is None
    proto.receive_data(client_frames(Frame(Opcode.CLOSE, Close(4001, "x").serialize())))
    assert proto.data_to_send() == [b""], a.broken("the client's answer did not end the stream")
    assert proto.close_rcvd is not None and proto.close_rcvd.code == 4001
    # The protocol fails the connection (an unmasked client frame).
    proto = ServerProtocol(state=State.OPEN)
    proto.receive_data(Frame(Opcode.TEXT, b"x").serialize(mask=False))
    out = proto.data_to_send()
    assert proto.close_sent is not None and proto.close_sent.code == 1002, a.broken(
        "a protocol error does not send the protocol's close frame"
    )
    assert out[-1] == b"" and proto.close_rcvd is None


# --------------------------------------------------------------------------- the WebSocket routes


def test_handshake_mirror() -> None:
    a = assumption("handshake_mirror")
    convert = getattr(WebSocketProtocol, "sanic_request_to_ws_request", None)
    assert convert is not None, a.broken("sanic_request_to_ws_request is gone")
    request = SimpleNamespace(path="/ws/logs", headers={"Upgrade": "websocket"})
    ws_request = convert(request)
    assert isinstance(ws_request, http11.Request) and ws_request.path == "/ws/logs", a.broken(
        f"sanic_request_to_ws_request gives {ws_request!r}"
    )
    assert ws_request.headers["upgrade"] == "websocket"
    source = inspect.getsource(WebSocketProtocol.websocket_handshake)
    assert "ServerProtocol(" in source and ".accept(self.sanic_request_to_ws_request(" in (
        source
    ), a.broken("websocket_handshake no longer accepts with ServerProtocol(...).accept(...)")


# --------------------------------------------------------------------------- versions


def _version(text: str) -> tuple[int, int]:
    major, minor = (int(n) for n in re.findall(r"\d+", text)[:2])
    return major, minor


def _range(checked: tuple[tuple[int, int], tuple[int, int]]) -> str:
    (a, b), (c, d) = checked
    return f">={a}.{b},<{c}.{d}"


def test_sanic_version_is_within_the_checked_range() -> None:
    installed = sanic.__version__
    first, end = SANIC_CHECKED
    assert first <= _version(installed) < end, (
        f"Sanic {installed} is installed; the internals in sanic_realtime/sanic_internals.py "
        f"were checked against Sanic {_range(SANIC_CHECKED)}. Walk the checklist in "
        "DEVELOPERS.md ('Sanic internals we rely on'), then move SANIC_CHECKED and the pin "
        "in pyproject.toml."
    )


def test_websockets_version_is_within_the_checked_range() -> None:
    installed = websockets.version.version
    first, end = WEBSOCKETS_CHECKED
    assert first <= _version(installed) < end, (
        f"websockets {installed} is installed; the internals in "
        f"sanic_realtime/sanic_internals.py were checked against websockets "
        f"{_range(WEBSOCKETS_CHECKED)}. Walk the checklist in DEVELOPERS.md ('Sanic "
        "internals we rely on'), then move WEBSOCKETS_CHECKED."
    )


# --------------------------------------------------------------------------- the registry


def test_every_assumption_has_its_test() -> None:
    names = [a.name for a in ASSUMPTIONS]
    assert len(names) == len(set(names)), "two assumptions share a name"
    here = {name for name, value in globals().items() if inspect.isfunction(value)}
    missing = [a.test for a in ASSUMPTIONS if a.test not in here]
    assert not missing, f"assumptions without a test in this file: {missing}"
    for a in ASSUMPTIONS:
        assert a.owner and a.relies_on and a.used_in, f"{a.name}: owner, relies_on, used_in"


#: How transport.py and sanic_internals.py name the objects: local or parameter names,
#: ``self.<attribute>`` and ``<root>.<attribute>`` chains.
_NAMES = {"ws": "ws", "proto": "ws_proto", "io": "io_proto", "transport": "transport"}
_SELF = {"ws": "ws", "_io": "io_proto", "_transport": "transport"}
_CHILD = {("ws", "ws_proto"): "ws_proto", ("ws", "io_proto"): "io_proto"}
_CHILD[("io_proto", "transport")] = "transport"


def _root(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return _NAMES.get(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "cast":
        return _root(node.args[1])
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            return _SELF.get(node.attr)
        if node.attr == "ws" and isinstance(node.value, ast.Attribute):
            return "ws" if node.value.attr == "_socket" else None
        parent = _root(node.value)
        return None if parent is None else _CHILD.get((parent, node.attr))
    return None


def internals_touched(source: str) -> set[str]:
    """Every ``<root>.<attribute>`` the source reads or sets."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and (root := _root(node.value)) is not None:
            found.add(f"{root}.{node.attr}")
    return found


def test_transport_touches_only_listed_internals() -> None:
    """Each attribute of ws, ws_proto, io_proto or the transport that transport.py (or a
    helper in sanic_internals.py) touches is listed in an assumption's ``accesses``, and
    each listed access is still made."""
    touched = set()
    for module in (transport, sanic_internals):
        touched |= internals_touched(Path(inspect.getfile(module)).read_text())
    listed = {access for a in ASSUMPTIONS for access in a.accesses}
    assert touched - listed == set(), (
        f"transport.py touches {sorted(touched - listed)} but no assumption in "
        "sanic_realtime/sanic_internals.py lists it: add it (with a test) there"
    )
    assert listed - touched == set(), (
        f"sanic_internals.py lists {sorted(listed - touched)} but nothing touches it any more"
    )


def test_developers_md_lists_every_assumption() -> None:
    text = (ROOT / "DEVELOPERS.md").read_text()
    _, found, section = text.partition("## Sanic internals we rely on")
    assert found, "DEVELOPERS.md has no 'Sanic internals we rely on' section"
    section = section.split("\n## ", 1)[0]
    missing = [a.name for a in ASSUMPTIONS if f"`{a.name}`" not in section]
    assert not missing, f"DEVELOPERS.md's checklist does not name {missing}"


def test_broken_names_the_assumption() -> None:
    message = Assumption("x", "owner.Class", "it does y.", ("transport.z",)).broken("no `x`")
    assert message.startswith("owner.Class: no `x`. sanic_realtime relies on this ('x'): it")
    assert "transport.z" in message and "DEVELOPERS.md" in message
