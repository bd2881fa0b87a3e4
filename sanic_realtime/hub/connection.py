"""One client connection as the hub sees it, and what the hub needs from its socket.

A connection's life is one state, :class:`ConnState`: ``OPEN`` (registered, gets events
and replies), ``CLOSING`` (no new events or replies; what is queued may still go out),
``CLOSED`` (unregistered: out of every room, its queue discarded). It only moves
forward, through :meth:`Connection.begin_closing` and :meth:`Connection.mark_closed`.

The other fields are grouped by the part of the hub that owns them (and is the only
one to change them): the registry (identity, channels), the outbox (queue, events,
allowance, dropped, dirty, blocked; ``outbox.py``), throttling (``throttles``;
``throttle.py``) and liveness (last_seen, last_ping, expiry; ``liveness.py``).
No I/O here.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..auth import Identity
from ..events import Event
from ..filters import Filter

if TYPE_CHECKING:
    from .throttle import Throttle

__all__ = ["CLOSED", "CLOSING", "OPEN", "ConnState", "Connection", "Socket"]


class Socket(Protocol):
    """What the hub needs from a WebSocket connection."""

    def is_open(self) -> bool: ...

    def writable(self) -> bool:
        """True while the transport is under its high-water mark."""
        ...

    async def wait_writable(self) -> None:
        """Return when the transport accepts data again; raise if the connection is gone."""
        ...

    def write(self, data: bytes) -> None:
        """Write already-framed bytes (one or more complete frames)."""
        ...

    def try_write(self, data: bytes) -> bool:
        """Write ``data`` if the connection is open and under its high-water mark;
        return whether it was written. Never raises."""
        ...

    def ping(self, frame: bytes, payload: bytes, on_pong: Callable[[], None]) -> None:
        """Write ``frame``, a ping with ``payload``, if the connection is open; call
        ``on_pong`` when the matching pong arrives. Never raises."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Closing handshake, after everything written so far."""
        ...

    def abort(self, code: int, reason: str) -> None:
        """Send a close frame now if possible and drop the connection; never blocks."""
        ...

    def close_status(self) -> tuple[int, str] | None:
        """The close code and reason of the closing handshake: the frame sent, else the
        one received; None when no close frame was exchanged."""
        ...


class ConnState(enum.Enum):
    """Where a connection is in its life (it only moves down this list)."""

    #: Registered: gets events and control replies.
    OPEN = "open"
    #: Being closed (closing handshake, slow consumer, failed write, ...): gets nothing
    #: new; what is queued may still be written before the close.
    CLOSING = "closing"
    #: Unregistered: out of every room, its queue discarded.
    CLOSED = "closed"


# Module constants, so that the fan-out loop compares identities (``conn.state is OPEN``)
# without an attribute lookup on the enum.
OPEN = ConnState.OPEN
CLOSING = ConnState.CLOSING
CLOSED = ConnState.CLOSED

_NO_ROLES: frozenset[str] = frozenset()


class Connection:
    """One client connection as the hub sees it."""

    __slots__ = (
        "allowance",
        "blocked",
        "channels",
        "close_code",
        "close_reason",
        "dirty",
        "dropped",
        "events",
        "expiry",
        "id",
        "identity",
        "last_ping",
        "last_seen",
        "opened",
        "present",
        "queue",
        "remote_addr",
        "role",
        "roles",
        "socket",
        "state",
        "throttles",
        "user_id",
    )

    def __init__(self, id: str, socket: Socket, identity: Identity | None, now: float) -> None:
        self.id = id
        self.socket = socket
        # ---- lifecycle (read anywhere; changed by begin_closing and mark_closed only)
        self.state = OPEN
        self.opened = now
        #: The close code the server chose (the first one, if several were tried).
        self.close_code: int | None = None
        self.close_reason = ""
        # ---- registry: who it is, what it subscribes to
        # user_id, role and roles are copied out of the identity for the fan-out loop.
        self.identity: Identity | None = None
        self.user_id: str | None = None
        self.role: str | None = None
        self.roles: frozenset[str] = _NO_ROLES
        self.set_identity(identity)
        #: channel -> filter, for subscriptions active or being set up.
        self.channels: dict[str, Filter | None] = {}
        #: The client's address, as the route read it (for hooks and logs).
        self.remote_addr = ""
        #: The presence channels it is counted on (None: none yet).
        self.present: set[str] | None = None
        # ---- outbox (outbox.py)
        #: (channel or None for control messages, framed bytes), oldest first. A list, not
        #: a deque: an empty list costs 56 bytes, an empty deque over 600, per connection.
        self.queue: list[tuple[str | None, bytes]] = []
        #: How many of the queued items are events (what ``buffer_size`` bounds).
        self.events = 0
        #: Extra room granted for a replay, so that resuming never trips the bound.
        self.allowance = 0
        #: channel -> events dropped and not yet reported (drop_oldest).
        self.dropped: dict[str, int] = {}
        #: In the outbox's list of connections the next flush writes.
        self.dirty = False
        #: Waiting for its transport to go under the high-water mark (not written to).
        self.blocked = False
        # ---- throttling (throttle.py): channel -> state, for throttled subscriptions
        self.throttles: dict[str, Throttle] | None = None
        # ---- liveness (liveness.py)
        self.last_seen = now
        self.last_ping = now
        #: Closes the connection when the token expires (a loop timer), if it does.
        self.expiry: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        """Not open any more (closing or closed): it gets nothing new."""
        return self.state is not OPEN

    def begin_closing(self, code: int | None = None, reason: str = "") -> None:
        """OPEN -> CLOSING (a closed connection stays closed); ``code`` and ``reason``
        are recorded if no close code was chosen before (the first one counts)."""
        if code is not None and self.close_code is None:
            self.close_code, self.close_reason = code, reason
        if self.state is OPEN:
            self.state = CLOSING

    def mark_closed(self) -> None:
        """-> CLOSED: the hub has forgotten it."""
        self.state = CLOSED

    def end_status(self) -> tuple[int, str]:
        """How it ended: the close code the server chose, else the closing handshake's,
        else 1006 (no close frame went either way, RFC 6455 section 7.1.5)."""
        if self.close_code is not None:
            return self.close_code, self.close_reason
        try:
            status = self.socket.close_status()
        except Exception:  # pragma: no cover - a socket must not break unregister
            status = None
        return status if status is not None else (1006, "no close frame")

    def set_identity(self, identity: Identity | None) -> None:
        self.identity = identity
        if identity is not None:
            self.user_id = identity.user_id
            self.role = identity.role
            self.roles = frozenset(identity.roles)

    def accepts(self, event: Event) -> bool:
        """Targeting: no target = everyone; else the user, or a connection holding the
        role (either suffices); never the connection ``exclude`` names."""
        if event.exclude is not None and event.exclude == self.id:
            return False
        if event.user_id is None and event.role is None:
            return True
        return (event.user_id is not None and event.user_id == self.user_id) or (
            event.role is not None and event.role in self.roles
        )

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"
