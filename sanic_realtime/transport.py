"""Adapts Sanic's WebSocket object to the hub's :class:`~sanic_realtime.hub.Socket`.

Why not ``ws.send()``: it takes a per-connection lock and waits for the transport to
drain, so a client that stops reading blocks it forever (docs/topics/backpressure.md).
The hub instead writes complete, pre-framed frames straight to the transport while it is under
its high-water mark, and waits through ``io_proto.send(b"")`` (which returns once Sanic's
protocol may write again) when it is not. Frames are whole, so they interleave safely
with the pings, pongs and close frames that Sanic writes itself.

Per connection, this also sets the incoming frame limit (``max_message_size``, closing
with 1009 as the websockets protocol does) and stops Sanic's own keepalive task: the
hub runs one heartbeat for all connections (``heartbeat_interval``, ``client_timeout``).

Receiving: Sanic's ``ws.recv()`` creates a task, a future and an ``asyncio.wait`` per
call, and its frame assembler holds an ``asyncio.Queue`` and three ``asyncio.Event``
(seven deques of ~380 bytes each), about 7 KB per idle connection in all. The adapter
replaces the assembler with :class:`Inbox`, which Sanic feeds through the same
``put(frame)`` call, and receives from it directly: one future while waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import State

if TYPE_CHECKING:
    from sanic.server.websockets.impl import WebsocketImplProtocol

__all__ = ["Inbox", "SanicSocket"]

#: Close code for a text message that is not valid UTF-8 (RFC 6455 section 7.4.1).
CLOSE_INVALID_DATA = 1007


class Inbox:
    """Stands in for Sanic's ``WebsocketFrameAssembler``: Sanic's ``process_events``
    calls ``put(frame)`` for every data frame; :meth:`get` returns whole messages.

    While nobody waits for a message, completed messages are kept (at most what one
    read of the socket held) and reading from the socket is paused, as Sanic does, so a
    client that sends faster than the server handles its messages is held back by TCP.
    It is also the connection's ``recv_cancel``: Sanic calls its :meth:`cancel` when a
    close frame or EOF arrives, after which :meth:`get` returns what is left, then None.
    """

    __slots__ = ("_chunks", "_ended", "_messages", "_text", "_waiter", "ws")

    def __init__(self, ws: WebsocketImplProtocol) -> None:
        self.ws = ws
        self._chunks: list[bytes] = []
        self._text = False
        self._ended = False
        self._messages: list[str | bytes] | None = None
        self._waiter: asyncio.Future[str | bytes | None] | None = None

    async def put(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._text = opcode is Opcode.TEXT
            self._chunks = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._chunks.append(bytes(frame.data))
        else:
            return  # control frames are handled by Sanic
        if not frame.fin:
            return
        chunks, self._chunks = self._chunks, []
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        message: str | bytes = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.ws.fail_connection(CLOSE_INVALID_DATA, "text message is not valid UTF-8")
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            return
        if self._messages is None:
            self._messages = []
        self._messages.append(message)
        self.ws.pause_frames()  # type: ignore[no-untyped-call]

    def cancel(self) -> None:
        """Called by Sanic (as ``recv_cancel``) on a close frame or EOF."""
        self._ended = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> str | bytes | None:
        """The next message; None once the client has closed or the connection is lost."""
        messages = self._messages
        if messages:
            message = messages.pop(0)
            if not messages:
                self._messages = None
                self.ws.resume_frames()  # type: ignore[no-untyped-call]
            return message
        if self._ended or self.ws.ws_proto.state is State.CLOSED:
            return None
        waiter: asyncio.Future[str | bytes | None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            return await waiter
        finally:
            self._waiter = None


class _Pong:
    """What Sanic's ``process_pong`` and ``abort_pings`` need of a ping's waiter."""

    __slots__ = ("on_pong",)

    def __init__(self, on_pong: Callable[[], None]) -> None:
        self.on_pong = on_pong

    def done(self) -> bool:
        return False

    def set_result(self, _: object) -> None:
        self.on_pong()

    def set_exception(self, _: object) -> None:
        pass  # the connection is gone: its reader or the timeout handles that

    def cancel(self) -> None:
        pass


class SanicSocket:
    __slots__ = ("_high_water", "_inbox", "_io", "_transport", "ws")

    def __init__(self, ws: WebsocketImplProtocol, max_message_size: int) -> None:
        self.ws = ws
        # Replaces Sanic's assembler, which is then freed (see the module docstring).
        self._inbox = Inbox(ws)
        ws.assembler = cast(Any, self._inbox)
        ws.recv_cancel = cast(Any, self._inbox)
        # Read per frame by the websockets parser; a larger frame fails with 1009.
        ws.ws_proto.max_message_size = max_message_size
        if ws.keepalive_ping_task is not None:
            ws.keepalive_ping_task.cancel()
            ws.keepalive_ping_task = None
        io = ws.io_proto
        if io is None or io.transport is None:
            raise RuntimeError("the WebSocket has no transport")
        self._io = io
        self._transport: Any = io.transport
        try:
            self._high_water = int(self._transport.get_write_buffer_limits()[1])
        except (AttributeError, NotImplementedError):  # pragma: no cover - exotic transports
            self._high_water = 65536

    def is_open(self) -> bool:
        return self.ws.ws_proto.state is State.OPEN and not self._transport.is_closing()

    def writable(self) -> bool:
        return bool(self._transport.get_write_buffer_size() < self._high_water)

    async def wait_writable(self) -> None:
        # Sanic's protocol.send() waits for resume_writing() and raises if the transport
        # is closing; writing b"" adds nothing to the stream.
        await cast(Callable[[bytes], Awaitable[None]], self._io.send)(b"")

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def try_write(self, data: bytes) -> bool:
        transport = self._transport
        if (
            self.ws.ws_proto.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() >= self._high_water
        ):
            return False
        try:
            transport.write(data)
        except Exception:
            return False
        return True

    def ping(self, frame: bytes, payload: bytes, on_pong: Callable[[], None]) -> None:
        """Write a pre-built ping frame; ``on_pong`` runs when its pong arrives.

        Sanic's ``ws.ping()`` costs a task's worth of work per ping (a lock, a random
        payload from the OS, two futures); the hub pings every connection with the
        same frame each tick. The pong is matched by Sanic, through ``ws.pings``,
        which here holds a :class:`_Pong` instead of a future."""
        transport = self._transport
        if self.ws.ws_proto.state is not State.OPEN or transport.is_closing():
            return
        self.ws.pings[payload] = cast(Any, _Pong(on_pong))
        transport.write(frame)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, _short(reason))

    def abort(self, code: int, reason: str) -> None:
        self.ws.fail_connection(code, _short(reason))

    def close_status(self) -> tuple[int, str] | None:
        proto = self.ws.ws_proto
        close = proto.close_sent if proto.close_sent is not None else proto.close_rcvd
        return (int(close.code), close.reason) if close is not None else None

    async def recv(self) -> str | bytes | None:
        """The next message, or None once the connection is closed."""
        return await self._inbox.get()


def _short(reason: str) -> str:
    """A close reason must fit in 123 bytes (RFC 6455 section 5.5)."""
    encoded = reason.encode()
    if len(encoded) <= 123:
        return reason
    return encoded[:120].decode(errors="ignore") + "..."
