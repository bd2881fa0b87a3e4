"""Adapts Sanic's WebSocket object to the hub's :class:`~sanic_realtime.hub.Socket`.

Why not ``ws.send()``: it takes a per-connection lock and waits for the transport to
drain, so a client that stops reading blocks it forever (see docs/topics.md). The hub
instead writes complete, pre-framed frames straight to the transport while it is under
its high-water mark, and waits through ``io_proto.send(b"")`` (which returns once Sanic's
protocol may write again) when it is not. Frames are whole, so they interleave safely
with the pings, pongs and close frames that Sanic writes itself.

Per connection, this also sets the incoming frame limit (``max_message_size``, closing
with 1009 as the websockets protocol does) and stops Sanic's own keepalive task: the
hub runs one heartbeat for all connections (``heartbeat_interval``, ``client_timeout``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from websockets.protocol import State

if TYPE_CHECKING:
    from sanic.server.websockets.impl import WebsocketImplProtocol

__all__ = ["SanicSocket"]


class SanicSocket:
    __slots__ = ("_high_water", "_io", "_transport", "ws")

    def __init__(self, ws: WebsocketImplProtocol, max_message_size: int) -> None:
        self.ws = ws
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

    async def ping(self) -> Awaitable[None]:
        waiter: Awaitable[None] = await self.ws.ping()
        return waiter

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, _short(reason))

    def abort(self, code: int, reason: str) -> None:
        self.ws.fail_connection(code, _short(reason))

    async def recv(self) -> str | bytes | None:
        """The next message, or None once the connection is closed."""
        if self.ws.ws_proto.state is State.CLOSED:
            return None
        message = await self.ws.recv()
        return message


def _short(reason: str) -> str:
    """A close reason must fit in 123 bytes (RFC 6455 section 5.5)."""
    encoded = reason.encode()
    if len(encoded) <= 123:
        return reason
    return encoded[:120].decode(errors="ignore") + "..."
