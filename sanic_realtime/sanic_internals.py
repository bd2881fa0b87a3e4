"""The private parts of Sanic (and of websockets' sans-I/O protocol) that
:mod:`sanic_realtime.transport` relies on, named in one place.

:mod:`~sanic_realtime.transport` adapts Sanic's ``WebsocketImplProtocol`` (the ``ws`` a
WebSocket handler receives) by replacing some of its parts and reading others. None of
that is Sanic's public API, so a Sanic release may change it without notice. Each thing
relied on is an :class:`Assumption` in :data:`ASSUMPTIONS`: what it is, where it lives,
what the adapter needs from it, and where the adapter uses it. Each has its test,
``tests/test_sanic_internals.py::test_<name>``, whose failure names the assumption; the
upgrade checklist is the "Sanic internals we rely on" section of DEVELOPERS.md.

The adapter's one-off changes to a connection (made once, when it is adopted) go through
the helpers below, each named after what it relies on. What runs per frame or per write
(``ws.ws_proto``, ``ws.pings``, the transport's methods, ``io_proto.send``) stays direct
attribute access in transport.py, with no call in between; every such access is listed in
its assumption's ``accesses``, and a test checks that transport.py touches nothing of
``ws``, ``ws_proto``, ``io_proto`` or the transport that is not listed here.

The versions these assumptions were checked against are :data:`SANIC_CHECKED` and
:data:`WEBSOCKETS_CHECKED`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from sanic.server.protocols.base_protocol import SanicProtocol
    from sanic.server.websockets.impl import WebsocketImplProtocol

__all__ = [
    "ASSUMPTIONS",
    "SANIC_CHECKED",
    "WEBSOCKETS_CHECKED",
    "Assumption",
    "assumption",
    "close_through_sanic",
    "high_water_mark",
    "install_inbox",
    "install_reader",
    "io_protocol",
    "set_max_message_size",
    "stop_keepalive",
]

#: Sanic releases the assumptions were checked against: ``(first, end)``, end excluded
#: (pyproject.toml pins ``sanic>=25.12,<26``).
SANIC_CHECKED = ((25, 12), (26, 0))
#: websockets releases the assumptions were checked against, end excluded. Before 16.0
#: the protocol's frame limit was ``max_size``, not ``max_message_size``.
WEBSOCKETS_CHECKED = ((16, 0), (18, 0))

_IMPL = "sanic.server.websockets.impl.WebsocketImplProtocol"
_WS_PROTOCOL = "sanic.server.protocols.websocket_protocol.WebSocketProtocol"
_SERVER_PROTOCOL = "websockets.server.ServerProtocol (websockets.protocol.Protocol)"


@dataclass(frozen=True)
class Assumption:
    """One private thing the adapter relies on."""

    #: Short name; its test is ``tests/test_sanic_internals.py::test_<name>``.
    name: str
    #: Where it lives (module and class, or the behaviour's owner).
    owner: str
    #: What the adapter needs from it, and why.
    relies_on: str
    #: Where sanic_realtime uses it.
    used_in: tuple[str, ...]
    #: The attribute paths transport.py (or a helper here) reads or sets for it, rooted at
    #: ``ws`` (the WebsocketImplProtocol), ``ws_proto``, ``io_proto`` or ``transport``.
    #: Empty for a behaviour the adapter counts on without touching anything.
    accesses: tuple[str, ...] = ()

    @property
    def test(self) -> str:
        """The name of its test in tests/test_sanic_internals.py."""
        return f"test_{self.name}"

    def broken(self, what: str) -> str:
        """A failure message: which assumption broke, and what the adapter needs."""
        return (
            f"{self.owner}: {what}. sanic_realtime relies on this ({self.name!r}): "
            f"{self.relies_on} Used in: {'; '.join(self.used_in)}. Walk the checklist in "
            "DEVELOPERS.md, 'Sanic internals we rely on'."
        )


ASSUMPTIONS: tuple[Assumption, ...] = (
    # ------------------------------------------------------------------ Sanic
    Assumption(
        "handler_ws",
        f"sanic.app.Sanic._websocket_handler, {_WS_PROTOCOL}.websocket_handshake",
        "a WebSocket route handler is given a WebsocketImplProtocol (Sanic's own server; "
        "under ASGI it is a sanic.server.websockets.connection.WebSocketConnection, which "
        "has none of what follows) on which connection_made already ran: loop, io_proto, "
        "auto_closer_task, data_finished_fut and connection_lost_waiter are set before the "
        "handler's first line.",
        ("routes.websocket serve(): SanicSocket(ws, ...)",),
    ),
    Assumption(
        "assembler",
        _IMPL,
        "`assembler` is an instance attribute (a WebsocketFrameAssembler made in __init__) "
        "that Sanic looks up at each use: process_events awaits `self.assembler.put(frame)` "
        "(still reachable through Sanic's EOF path), recv()/recv_burst()/recv_streaming() "
        "call get()/get_iter() (never called here). SanicSocket replaces it with "
        "transport.Inbox, which frees the assembler's Queue and three Events (about 7 KB "
        "per idle connection) and takes put().",
        ("transport.SanicSocket.__init__ (install_inbox)", "transport.Inbox.put"),
        ("ws.assembler",),
    ),
    Assumption(
        "recv_cancel",
        _IMPL,
        "`recv_cancel` is an instance attribute, None unless Sanic's own recv*() runs "
        "(never called here); when it is set, Sanic calls `recv_cancel.cancel()` on a close "
        "frame (process_events) and on the client's EOF (async_eof_received). SanicSocket "
        "sets it to its Inbox, whose cancel() makes recv() return what is left, then None.",
        ("transport.SanicSocket.__init__ (install_inbox)", "transport.Inbox.cancel"),
        ("ws.recv_cancel",),
    ),
    Assumption(
        "data_received",
        f"{_WS_PROTOCOL}.data_received",
        "once upgraded, WebSocketProtocol.data_received hands every chunk read to "
        "`self.websocket.data_received(data)`, looked up on the instance each time "
        "(WebsocketImplProtocol has no __slots__), so the instance attribute SanicSocket "
        "sets replaces Sanic's parser, which starts a task per chunk read.",
        (
            "transport.SanicSocket.__init__ (install_reader)",
            "transport.SanicSocket._data_received",
        ),
        ("ws.data_received",),
    ),
    Assumption(
        "eof_received",
        f"{_IMPL}.eof_received (kept)",
        "the client's EOF is still Sanic's to handle: eof_received runs "
        "ws_proto.receive_eof() and, in a task, calls `recv_cancel.cancel()` (ending the "
        "Inbox); returning False, it lets the transport close TCP. EOF only arrives while "
        "reading is not paused, so never while SanicSocket holds unparsed input.",
        ("transport.Inbox.cancel (as recv_cancel)", "transport.SanicSocket.update_reading"),
    ),
    Assumption(
        "ws_proto",
        _IMPL,
        "`ws_proto` is the connection's websockets ServerProtocol (sans-I/O), OPEN when the "
        "handler starts; Sanic writes through it and never replaces it. SanicSocket parses "
        "with it and reads its state and close frames.",
        (
            "transport.SanicSocket (_handle, is_open, try_write, ping, _start_close, "
            "_protocol_done, close_status)",
            "transport.Inbox.get",
        ),
        ("ws.ws_proto",),
    ),
    Assumption(
        "keepalive_ping_task",
        _IMPL,
        "`keepalive_ping_task` is Sanic's keepalive (a Task made by connection_made when "
        "ping_interval is set, else None); cancelling it and setting None stops Sanic's "
        "pings without side effects (keepalive_ping catches CancelledError; "
        "auto_close_connection and _force_disconnect accept None). The hub runs one "
        "heartbeat for all connections instead.",
        ("transport.SanicSocket.__init__ (stop_keepalive)",),
        ("ws.keepalive_ping_task",),
    ),
    Assumption(
        "io_proto",
        _IMPL,
        "`io_proto` is the connection's WebSocketProtocol (a SanicProtocol) and "
        "`io_proto.transport` its asyncio transport, whose protocol it is, so the "
        "transport's flow control (pause_writing/resume_writing) reaches it; "
        "`io_proto.websocket` is the handler's ws.",
        ("transport.SanicSocket.__init__ (io_protocol)",),
        ("ws.io_proto", "io_proto.transport"),
    ),
    Assumption(
        "io_proto_send",
        "sanic.server.protocols.http_protocol.HttpProtocol.send",
        "`await io_proto.send(data)` waits while the protocol's writing is paused (until "
        "the transport calls resume_writing), then dispatches the http.lifecycle.send "
        'signal and writes; send(b"") adds nothing to the stream. wait_writable() awaits '
        'send(b"") to wait for the transport to drain. On a '
        "closing transport it raises sanic.exceptions.RequestCancelled, an "
        "asyncio.CancelledError (not an Exception): SanicSocket._drain and the hub's "
        "callers of wait_writable() catch Exception only, so it ends their task as a "
        "cancellation.",
        ("transport.SanicSocket.wait_writable",),
        ("io_proto.send",),
    ),
    Assumption(
        "transport",
        "the asyncio transport: asyncio's selector transport, uvloop's TCPTransport under "
        "the sanic command",
        "io_proto.transport has write, is_closing, get_write_buffer_size, "
        "get_write_buffer_limits, pause_reading, resume_reading, can_write_eof, "
        "write_eof, abort and close, on asyncio's loop and on uvloop's. Frames are "
        "written to it whole, straight from the hub.",
        (
            "transport.SanicSocket (write, try_write, writable, _handle, update_reading, "
            "_start_close, _protocol_done, _finish)",
            "sanic_internals.high_water_mark",
        ),
        (
            "transport.write",
            "transport.is_closing",
            "transport.get_write_buffer_size",
            "transport.get_write_buffer_limits",
            "transport.pause_reading",
            "transport.resume_reading",
            "transport.can_write_eof",
            "transport.write_eof",
            "transport.abort",
            "transport.close",
        ),
    ),
    Assumption(
        "write_buffer_limits",
        "sanic.server.protocols.http_protocol.HttpProtocol.connection_made",
        "Sanic sets the transport's write buffer limits to 16 KiB / 64 KiB; "
        "get_write_buffer_limits()[1] is the high-water mark at which the transport "
        "pauses io_proto's writing, so writable() (get_write_buffer_size() under it) is "
        'False exactly while io_proto.send(b"") waits. PONG_BACKLOG and READ_SLICE were '
        "sized against 64 KiB.",
        (
            "transport.SanicSocket.__init__ (high_water_mark)",
            "transport.SanicSocket (writable, try_write, _handle)",
        ),
        ("transport.get_write_buffer_limits", "transport.get_write_buffer_size"),
    ),
    Assumption(
        "reading_is_ours",
        "sanic.server.websockets (impl.py, frame.py), sanic.server.protocols.websocket_protocol",
        "once the assembler is replaced, nothing in Sanic resumes reading an upgraded "
        "connection: only WebsocketImplProtocol.resume_frames calls "
        "transport.resume_reading, and only the assembler calls resume_frames; Sanic "
        "pauses reading only in pause_frames (the assembler), fail_connection and "
        "end_connection. SanicSocket pauses and resumes reading itself (update_reading).",
        ("transport.SanicSocket.update_reading",),
        ("transport.pause_reading", "transport.resume_reading"),
    ),
    Assumption(
        "pings",
        _IMPL,
        "`pings` is a dict keyed by ping payload; with Sanic's parser and keepalive out of "
        "the way, Sanic touches its values only in process_pong (done(), "
        "set_result(None)) and in abort_pings, which connection_lost calls "
        "(set_exception(...), cancel()). SanicSocket.ping stores a transport._Pong there; "
        "SanicSocket._pong matches pongs as process_pong does, without a task.",
        ("transport.SanicSocket.ping", "transport.SanicSocket._pong", "transport._Pong"),
        ("ws.pings",),
    ),
    Assumption(
        "wait_for_connection_lost",
        _IMPL,
        "`await ws.wait_for_connection_lost(timeout)` returns True once connection_lost "
        "ran (connection_lost_waiter, made by connection_made), False when `timeout` "
        "passes first.",
        ("transport.SanicSocket.close", "transport.SanicSocket.wait_closed"),
        ("ws.wait_for_connection_lost",),
    ),
    Assumption(
        "auto_closer",
        _IMPL,
        "connection_made starts `auto_closer_task` (auto_close_connection), which awaits "
        "`data_finished_fut`; while it runs, data_finished_fut.set_result(None) makes it "
        "half-close and close TCP (aborting after close_timeout). SanicSocket._finish "
        "hands the TCP close to it as Sanic's own handshake does, and closes the transport "
        "itself when the closer is not running.",
        ("transport.SanicSocket._finish (close_through_sanic)",),
        ("ws.data_finished_fut", "ws.auto_closer_task"),
    ),
    Assumption(
        "connection_lost",
        f"{_IMPL}.connection_lost",
        "connection_lost (called by WebSocketProtocol.connection_lost) sets ws_proto.state "
        "to CLOSED, so after a lost connection Inbox.get returns None and is_open() is "
        "False, then calls abort_pings.",
        ("transport.Inbox.get", "transport.SanicSocket.is_open"),
    ),
    Assumption(
        "lost_connection_cancels_handler",
        "sanic.server.protocols.base_protocol.SanicProtocol.connection_lost",
        "a connection lost without EOF (a reset) cancels the connection's task and with it "
        "the handler, so a recv() waiting in Inbox.get ends with CancelledError: nothing "
        "else resolves it (no close frame and no EOF arrive).",
        ("transport.Inbox.get", "routes.websocket serve()"),
    ),
    Assumption(
        "handler_end",
        "sanic.app.Sanic._websocket_handler",
        "after the handler returns Sanic awaits ws.close(), which writes a close frame only "
        "while ws_proto is OPEN (so none after the adapter's), then closes TCP "
        "(WebSocketProtocol.close, end_connection). The handler awaits "
        "SanicSocket.wait_closed() first, so the closing handshake is not cut short.",
        (
            "routes.websocket serve() (finally: socket.wait_closed())",
            "transport.SanicSocket.wait_closed",
        ),
    ),
    # ------------------------------------------------------------------ websockets
    Assumption(
        "state",
        f"{_SERVER_PROTOCOL}.state",
        "ws_proto.state is a websockets.protocol.State member, compared with `is`: Sanic's "
        "impl and protocol modules use the same enum (their OPEN, CLOSING, CLOSED are "
        "websockets.protocol.State's).",
        (
            "transport.SanicSocket (is_open, try_write, ping, wait_closed, _start_close)",
            "transport.Inbox.get",
        ),
        ("ws_proto.state",),
    ),
    Assumption(
        "max_message_size",
        f"{_SERVER_PROTOCOL}.max_message_size",
        "the parser reads `max_message_size` (websockets >= 16; `max_size` before) for "
        "every frame, so setting it after Sanic built the protocol takes effect; a message "
        "over it fails the connection with 1009 (a close frame, then end of stream).",
        ("transport.SanicSocket.__init__ (set_max_message_size)",),
        ("ws_proto.max_message_size",),
    ),
    Assumption(
        "sans_io_reading",
        f"{_SERVER_PROTOCOL}.receive_data, data_to_send, events_received",
        "receive_data takes any slice of the stream (a frame may span reads); "
        "events_received returns every complete frame as a websockets.frames.Frame, "
        "control frames included and data frames not assembled (TEXT/BINARY then CONT); "
        "the protocol answers a ping itself, putting the pong in data_to_send(), a list "
        'of bytes in which b"" means: close TCP.',
        ("transport.SanicSocket._handle", "transport.Inbox.feed"),
        ("ws_proto.receive_data", "ws_proto.data_to_send", "ws_proto.events_received"),
    ),
    Assumption(
        "sans_io_closing",
        f"{_SERVER_PROTOCOL}.send_close, close_rcvd, close_sent",
        'a client\'s close frame while OPEN yields its echo and end of stream (b"") with '
        "close_rcvd set, after which input is discarded; send_close() while OPEN queues a "
        "close frame (CLOSING, close_sent set) and the client's answer then yields end of "
        "stream with close_rcvd set; a protocol failure queues the protocol's close frame "
        "and end of stream with close_rcvd None.",
        ("transport.SanicSocket (_handle, _start_close, _protocol_done, close_status)",),
        ("ws_proto.send_close", "ws_proto.close_rcvd", "ws_proto.close_sent"),
    ),
    # ------------------------------------------------------------------ the WebSocket routes
    Assumption(
        "handshake_mirror",
        f"{_WS_PROTOCOL}.websocket_handshake, .sanic_request_to_ws_request",
        "Sanic accepts an upgrade with websockets' ServerProtocol.accept() on "
        "http11.Request(path=request.path, headers=Headers(request.headers)); "
        "routes.websocket.check_handshake runs the same accept() before a slot is "
        "reserved, so "
        "it refuses (no or bad Sec-WebSocket-Key, a version other than 13, no "
        "Connection: Upgrade) what Sanic's handshake would.",
        ("routes.websocket.check_handshake",),
    ),
)

_BY_NAME = {a.name: a for a in ASSUMPTIONS}


def assumption(name: str) -> Assumption:
    """The assumption called ``name`` (KeyError if there is none)."""
    return _BY_NAME[name]


# --------------------------------------------------------------------------- helpers
# Called once per connection, when transport.SanicSocket adopts it.


def install_inbox(ws: WebsocketImplProtocol, inbox: object) -> None:
    """Replace Sanic's frame assembler and its ``recv_cancel`` with ``inbox``
    (assumptions ``assembler`` and ``recv_cancel``)."""
    ws.assembler = cast(Any, inbox)
    ws.recv_cancel = cast(Any, inbox)


def set_max_message_size(ws: WebsocketImplProtocol, size: int) -> None:
    """The incoming message limit, read per frame by the parser (``max_message_size``)."""
    ws.ws_proto.max_message_size = size


def stop_keepalive(ws: WebsocketImplProtocol) -> None:
    """Stop Sanic's keepalive pings (``keepalive_ping_task``)."""
    if ws.keepalive_ping_task is not None:
        ws.keepalive_ping_task.cancel()
        ws.keepalive_ping_task = None


def io_protocol(ws: WebsocketImplProtocol) -> SanicProtocol:
    """The connection's Sanic protocol, which has a transport (``io_proto``)."""
    io = ws.io_proto
    if io is None or io.transport is None:
        raise RuntimeError("the WebSocket has no transport")
    return io


def high_water_mark(transport: Any) -> int:
    """Where the transport pauses writing (``write_buffer_limits``)."""
    try:
        return int(transport.get_write_buffer_limits()[1])
    except (AttributeError, NotImplementedError):  # pragma: no cover - exotic transports
        return 65536


def install_reader(ws: WebsocketImplProtocol, data_received: Callable[[bytes], None]) -> None:
    """Make ``data_received`` receive every chunk read (``data_received``)."""
    cast(Any, ws).data_received = data_received


def close_through_sanic(ws: WebsocketImplProtocol) -> bool:
    """Have Sanic's auto closer close TCP, as after its own closing handshake
    (``auto_closer``); False when the closer is not running (the caller closes)."""
    done = ws.data_finished_fut
    closer = ws.auto_closer_task
    if closer is not None and not closer.done() and done is not None and not done.done():
        done.set_result(None)
        return True
    return False
