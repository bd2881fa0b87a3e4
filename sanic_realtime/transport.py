"""Adapts Sanic's WebSocket object to the hub's :class:`~sanic_realtime.hub.Socket`.

Why not ``ws.send()``: it takes a per-connection lock and waits for the transport to
drain, so a client that stops reading blocks it forever (docs/topics/backpressure.md).
The hub instead writes complete, pre-framed frames straight to the transport while it is under
its high-water mark, and waits through ``io_proto.send(b"")`` (which returns once Sanic's
protocol may write again) when it is not. Frames are whole, so they interleave safely
with the pings, pongs and close frames written here.

Per connection, this also sets the incoming frame limit (``max_message_size``, closing
with 1009 as the websockets protocol does) and stops Sanic's own keepalive task: the
hub runs one heartbeat for all connections (``heartbeat_interval``, ``client_timeout``).

Reading (:meth:`SanicSocket._data_received`, which replaces Sanic's ``data_received``):
Sanic parses each chunk read from the socket and then starts a task that awaits the
transport's drain to write the pongs and processes the frames. A client that sends
pings and never reads makes those tasks pile up without bound (hundreds of MB for
tens of MB of pings). Here what is read is handled without a task, ``READ_SLICE`` bytes
per loop iteration: the pongs are written to the transport, every frame passes the
connection's ``gate`` (the ``client_rate_limit``: pings and pongs count as messages
do), and nothing more is parsed or read while the transport holds more than its
high-water mark, so unsent pongs stay bounded by one slice's worth. A closing
connection, which reads on to find the client's close frame, is dropped when more than
``PONG_BACKLOG`` pong bytes pile up beyond the mark.

Receiving: Sanic's ``ws.recv()`` creates a task, a future and an ``asyncio.wait`` per
call, and its frame assembler holds an ``asyncio.Queue`` and three ``asyncio.Event``
(seven deques of ~380 bytes each), about 7 KB per idle connection in all. The adapter
replaces the assembler with :class:`Inbox`, fed for every data frame, and receives from
it directly: one future while waiting.

Everything of Sanic's (and of websockets' protocol) that is not public API and is relied
on here is listed in :mod:`sanic_realtime.sanic_internals`, with a test for each.

Closing (RFC 6455 section 7.1.1): a close the server starts sends its close frame at
once (ahead of anything the hub still holds), then keeps reading, discarding what
arrives, until the client's close frame, its EOF or ``CLOSE_TIMEOUT``; only then is TCP
closed. Closing TCP with unread input would make the kernel reset the connection, and
the client would lose the close frame (and its code) with the rest of its buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import State

from .protocol import CloseCode
from .sanic_internals import (
    close_through_sanic,
    high_water_mark,
    install_inbox,
    install_reader,
    io_protocol,
    set_max_message_size,
    stop_keepalive,
)

if TYPE_CHECKING:
    from sanic.server.websockets.impl import WebsocketImplProtocol

__all__ = ["CLOSE_TIMEOUT", "PONG_BACKLOG", "READ_SLICE", "Inbox", "SanicSocket"]

#: How long a closing connection waits for the client's close frame (or its EOF)
#: before the TCP connection is dropped.
CLOSE_TIMEOUT = 5.0
#: Pong bytes a connection may leave unsent beyond the transport's high-water mark.
PONG_BACKLOG = 64 * 1024
#: Bytes of a read parsed at a time: a read of tiny frames (43,000 empty pings fit in
#: 256 KB) is handled over several loop iterations, so other connections are served in
#: between and the parsed frames of one slice stay few.
READ_SLICE = 16 * 1024


class Inbox:
    """Stands in for Sanic's ``WebsocketFrameAssembler``: :meth:`feed` takes every data
    frame; :meth:`get` returns whole messages.

    While nobody waits for a message, completed messages are kept (at most what one
    read of the socket held) and the socket stops reading until they are taken, so a
    client that sends faster than the server handles its messages is held back by TCP.
    It is also the connection's ``recv_cancel``: :meth:`cancel` runs when a close frame
    or EOF arrives or the server closes, after which :meth:`get` returns what is left,
    then None.
    """

    __slots__ = ("_chunks", "_ended", "_messages", "_socket", "_text", "_waiter")

    def __init__(self, socket: SanicSocket) -> None:
        self._socket = socket
        self._chunks: list[bytes] = []
        self._text = False
        self._ended = False
        self._messages: list[str | bytes] | None = None
        self._waiter: asyncio.Future[str | bytes | None] | None = None

    @property
    def pending(self) -> bool:
        """Messages are waiting to be taken."""
        return bool(self._messages)

    async def put(self, frame: Frame) -> None:
        """Sanic's assembler interface (unused once ``data_received`` is replaced)."""
        self.feed(frame)

    def feed(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._text = opcode is Opcode.TEXT
            self._chunks = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            self._chunks.append(bytes(frame.data))
        else:
            return  # control frames are handled by the socket
        if not frame.fin:
            return
        chunks, self._chunks = self._chunks, []
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        message: str | bytes = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self._socket.abort(CloseCode.INVALID_DATA, "text message is not valid UTF-8")
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            return
        if self._messages is None:
            self._messages = []
        self._messages.append(message)

    def cancel(self) -> None:
        """No more messages: the client closed, the connection is lost or closing."""
        self._ended = True
        self._chunks = []
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
                self._socket.update_reading()
            return message
        if self._ended or self._socket.ws.ws_proto.state is State.CLOSED:
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
    __slots__ = (
        "_backlogged",
        "_closing",
        "_consume_scheduled",
        "_high_water",
        "_inbox",
        "_input",
        "_io",
        "_paused",
        "_refused",
        "_timer",
        "_transport",
        "_unsent_pongs",
        "gate",
        "ws",
    )

    def __init__(
        self,
        ws: WebsocketImplProtocol,
        max_message_size: int,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        self.ws = ws
        #: Asked once per incoming frame (data or control); False refuses the frame and
        #: every one after it: the connection stops reading and its owner closes it.
        self.gate = gate
        # Replaces Sanic's assembler, which is then freed (see the module docstring).
        self._inbox = Inbox(self)
        install_inbox(ws, self._inbox)
        # Read per frame by the websockets parser; a larger frame fails with 1009.
        set_max_message_size(ws, max_message_size)
        stop_keepalive(ws)
        io = io_protocol(ws)  # RuntimeError without a transport
        self._io = io
        self._transport: Any = io.transport
        self._high_water = high_water_mark(self._transport)
        self._paused = False  # reading paused by this adapter
        self._input = bytearray()  # read, not yet handled (at most one read)
        self._consume_scheduled = False
        self._backlogged = False  # the transport is over its high-water mark
        self._unsent_pongs = 0  # pong bytes written while backlogged
        self._refused = False  # the gate refused a frame
        self._closing = False  # the server started the closing handshake
        self._timer: asyncio.TimerHandle | None = None
        # Sanic's WebSocketProtocol hands every chunk read to ws.data_received.
        install_reader(ws, self._data_received)

    # ------------------------------------------------------------------ reading

    def _data_received(self, data: bytes) -> None:
        """Sanic's ``data_received``: take what was read, handled in slices."""
        self._input += data
        self._consume()

    def _consume(self) -> None:
        """Parse and handle up to ``READ_SLICE`` bytes of what was read, and schedule the
        rest for the next loop iteration (other connections run in between; reading
        pauses meanwhile). Nothing is parsed while reading is paused for a reason: the
        rest waits, as the client's further bytes wait in TCP."""
        self._consume_scheduled = False
        if not self._input or (self._must_pause() and not self._closing):
            self.update_reading()
            return
        piece = bytes(self._input[:READ_SLICE])
        del self._input[:READ_SLICE]
        self._handle(piece)
        if self._input and not self._transport.is_closing():
            self._schedule_consume()
        self.update_reading()

    def _schedule_consume(self) -> None:
        if not self._consume_scheduled:
            self._consume_scheduled = True
            asyncio.get_running_loop().call_soon(self._consume)

    def _handle(self, data: bytes) -> None:
        proto = self.ws.ws_proto
        proto.receive_data(data)
        transport = self._transport
        eof = False
        for chunk in proto.data_to_send():  # pongs, the echo of a close frame
            if not chunk:
                eof = True  # the protocol is done: close TCP
            elif not transport.is_closing():
                if self._backlogged:
                    self._unsent_pongs += len(chunk)
                transport.write(chunk)
        inbox = self._inbox
        for event in proto.events_received():
            if not isinstance(event, Frame):
                continue
            opcode = event.opcode
            if opcode is Opcode.CLOSE:
                inbox.cancel()
                continue
            if self._closing or self._refused:
                continue  # discarded: the connection is closing
            gate = self.gate
            if gate is not None and not gate():
                self._refused = True
                inbox.cancel()  # what was queued is still handed out, then None
                continue
            if opcode is Opcode.PONG:
                self._pong(bytes(event.data))
            elif opcode is not Opcode.PING:  # the protocol already queued its pong
                inbox.feed(event)
        if eof:
            self._input.clear()
            self._protocol_done()
        elif not transport.is_closing() and transport.get_write_buffer_size() >= self._high_water:
            if self._unsent_pongs > PONG_BACKLOG:
                if self._closing:
                    self._finish(abort=True)
                else:
                    self.abort(CloseCode.SLOW_CONSUMER, "slow consumer: pongs not read")
                return
            if not self._backlogged:
                self._backlogged = True
                asyncio.get_running_loop().create_task(self._drain())

    def _pong(self, data: bytes) -> None:
        """Sanic's ``process_pong``, without a task: acknowledge the pings up to it."""
        pings = self.ws.pings
        if data not in pings:
            return
        for ping_id in list(pings):
            waiter = pings.pop(ping_id)
            if not waiter.done():
                waiter.set_result(None)
            if ping_id == data:
                break

    async def _drain(self) -> None:
        """Reading waits while the client does not read (the backlog is at most one
        read's pongs)."""
        try:
            await self.wait_writable()
        except Exception:
            return  # the connection is gone
        self._backlogged = False
        self._unsent_pongs = 0
        self.update_reading()

    def _must_pause(self) -> bool:
        """Messages wait to be taken, the transport is over its high-water mark, or a
        refused frame waits for the close."""
        return self._inbox.pending or self._backlogged or self._refused

    def update_reading(self) -> None:
        """Read from the socket only when nothing waits: no reason to pause and no bytes
        read but not yet handled. A closing connection reads (and discards) until the
        client's close frame."""
        transport = self._transport
        if transport.is_closing():
            return
        blocked = self._must_pause() and not self._closing
        if self._input and not blocked:
            self._schedule_consume()
        pause = blocked or bool(self._input)
        if pause is self._paused:
            return
        self._paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # ------------------------------------------------------------------ the hub's Socket

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
        same frame each tick. The pong is matched in :meth:`_pong`, through
        ``ws.pings``, which here holds a :class:`_Pong` instead of a future."""
        transport = self._transport
        if self.ws.ws_proto.state is not State.OPEN or transport.is_closing():
            return
        self.ws.pings[payload] = cast(Any, _Pong(on_pong))
        transport.write(frame)

    @property
    def refused(self) -> bool:
        """The gate refused a frame (the connection is being closed for it)."""
        return self._refused

    # ------------------------------------------------------------------ closing

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake: send the close frame, and return once the client has
        answered and TCP is closed, or after ``CLOSE_TIMEOUT`` (the TCP connection is
        then dropped)."""
        self._start_close(code, reason)
        await self.ws.wait_for_connection_lost(CLOSE_TIMEOUT + 0.5)

    async def wait_closed(self) -> None:
        """Return once TCP is closed (at most ``CLOSE_TIMEOUT`` after the close began).

        The handler awaits this before it returns: Sanic closes the TCP connection as
        soon as the handler ends, which would cut a closing handshake short (and, with
        unread input, reset the connection). Still open: closed here with 1000."""
        if self.ws.ws_proto.state is State.OPEN and not self._closing:
            self._start_close(CloseCode.NORMAL, "")
        await self.ws.wait_for_connection_lost(CLOSE_TIMEOUT + 0.5)

    def abort(self, code: int, reason: str) -> None:
        """Start the closing handshake now, without waiting for it (or for anything the
        hub still holds, which it discards)."""
        self._start_close(code, reason)

    def _start_close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._inbox.cancel()
        proto = self.ws.ws_proto
        transport = self._transport
        if transport.is_closing():
            return
        if proto.state is State.OPEN:
            proto.send_close(code, _short(reason))
            for chunk in proto.data_to_send():
                if chunk:
                    transport.write(chunk)
        self._arm_timer()
        self.update_reading()  # read, and discard, until the client's close frame

    def _protocol_done(self) -> None:
        """The websockets protocol wants TCP closed: after the closing handshake, or
        after failing the connection itself (1009 for a frame over the limit, 1002)."""
        if self.ws.ws_proto.close_rcvd is not None:
            self._finish(abort=False)  # the client's close frame was the last it sent
            return
        # Failed by the protocol, whose close frame is on its way: read and discard
        # until the client answers it, closes, or the timeout. Half-closing tells the
        # client no more data follows.
        self._closing = True
        self._inbox.cancel()
        transport = self._transport
        if not transport.is_closing() and transport.can_write_eof():
            with contextlib.suppress(OSError, RuntimeError):
                transport.write_eof()
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._finish, True)

    def _finish(self, abort: bool) -> None:
        """Close TCP (Sanic's closer does it, as when its own handshake ends); ``abort``:
        drop it now (the client did not answer in time, or floods a closing connection)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inbox.cancel()
        transport = self._transport
        if abort and not transport.is_closing():
            transport.abort()
        if not close_through_sanic(self.ws) and not transport.is_closing():
            transport.close()

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
