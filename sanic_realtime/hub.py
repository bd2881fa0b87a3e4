"""The hub: rooms, bounded per-connection buffers, fan-out, heartbeats, shutdown.

Runtime (asyncio), but no sanic: a connection's socket is anything that implements
:class:`Socket` (the Sanic adapter is in ``transport.py``; tests may use a fake).

What fan-out does, plainly:

- each event is encoded once (by the backplane) and framed once (here); the same
  bytes are queued for every matching connection;
- a filter is evaluated once per distinct filter of a room, not once per subscriber;
- each connection has a bounded queue (``buffer_size``). Publishing never waits for
  a socket. An isolated event is written at once to each connection with nothing
  queued; while events come back to back, they are queued and each connection's
  frames are written together, one ``transport.write`` for several events (adaptive
  coalescing, see ``Hub._flush``);
- a connection whose transport is over its high-water mark is not written to; its
  queue fills, and when it is full the ``slow_client`` policy applies: ``disconnect``
  closes it with 4008, ``drop_oldest`` drops its oldest event and tells it how many
  it lost (``messages_dropped``) before its next event;
- one failing socket never stops a fan-out: errors close that connection only.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

import msgspec
from websockets.frames import Frame, Opcode

from .auth import Identity
from .backplanes.base import Backplane
from .config import RealtimeConfig
from .events import Event, utc_timestamp
from .exceptions import ServerUnavailable, TooManyRequests, UnknownChannel
from .filters import Filter
from .log import connection_logger, logger
from .protocol import (
    CloseCode,
    ControlMessage,
    ErrorData,
    InBandError,
    InitialState,
    LossReason,
    MessagesDropped,
    MessagesDroppedData,
    Subscribed,
    SubscribedData,
    encode,
)
from .rooms import Rooms
from .subscriptions import SubRequest

__all__ = ["Connection", "Hub", "PublishResult", "Reply", "Socket", "SubRequest", "text_frame"]

#: How long a slot reserved before the upgrade waits for its connection.
RESERVATION_TTL = 30.0
#: Control replies (pong, error, ...) a connection may have queued beyond its events.
CONTROL_MARGIN = 64
#: While events arrive in consecutive loop iterations, a flush waits up to this many
#: iterations, and at most LINGER_SECONDS, for more frames to share each write.
LINGER_ITERATIONS = 4
LINGER_SECONDS = 0.005


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


def text_frame(payload: bytes) -> bytes:
    """A server-to-client text frame. Server frames are unmasked and no extension is
    negotiated, so one frame is valid for every connection."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class Reply(NamedTuple):
    """What the hub knows when it answers a subscription: the reply's builder (the
    caller's) turns it into ``connection_established`` or ``subscribed``."""

    timestamp: str
    channels: list[str]
    #: Per channel whose resume was asked: whether it succeeded.
    recovered: dict[str, bool] | msgspec.UnsetType
    #: With ``positions``: per channel, the id of its newest event.
    positions: dict[str, str] | msgspec.UnsetType


def subscribed(reply: Reply) -> Subscribed:
    """The reply to a ``subscribe`` message (the default of :meth:`Hub.subscribe`)."""
    data = SubscribedData(
        channels=reply.channels, recovered=reply.recovered, positions=reply.positions
    )
    return Subscribed(timestamp=reply.timestamp, data=data)


class PublishResult(msgspec.Struct, frozen=True):
    """What :meth:`Hub.publish` returns."""

    channel: str
    id: str
    #: Connections of this process the event was queued for.
    recipients: int


class Reservation:
    """A slot held between the checks before the upgrade and the connection's start."""

    __slots__ = ("deadline", "user_id")

    def __init__(self, deadline: float, user_id: str | None = None) -> None:
        self.deadline = deadline
        self.user_id = user_id


_NO_ROLES: frozenset[str] = frozenset()


class Connection:
    """One client connection as the hub sees it."""

    __slots__ = (
        "allowance",
        "blocked",
        "channels",
        "close_code",
        "close_reason",
        "closing",
        "dirty",
        "dropped",
        "events",
        "expiry",
        "id",
        "identity",
        "last_ping",
        "last_seen",
        "opened",
        "queue",
        "role",
        "roles",
        "socket",
        "throttles",
        "user_id",
    )

    def __init__(self, id: str, socket: Socket, identity: Identity | None, now: float) -> None:
        self.id = id
        self.socket = socket
        # user_id, role and roles are copied out of the identity for the fan-out loop.
        self.identity: Identity | None = None
        self.user_id: str | None = None
        self.role: str | None = None
        self.roles: frozenset[str] = _NO_ROLES
        self.set_identity(identity)
        #: Closes the connection when the token expires (a loop timer), if it does.
        self.expiry: asyncio.TimerHandle | None = None
        #: channel -> filter, for subscriptions active or being set up.
        self.channels: dict[str, Filter | None] = {}
        #: (channel or None for control messages, framed bytes), oldest first. A list, not
        #: a deque: an empty list costs 56 bytes, an empty deque over 600, per connection.
        self.queue: list[tuple[str | None, bytes]] = []
        #: How many of the queued items are events (what ``buffer_size`` bounds).
        self.events = 0
        #: Extra room granted for a replay, so that resuming never trips the bound.
        self.allowance = 0
        #: channel -> events dropped and not yet reported (drop_oldest).
        self.dropped: dict[str, int] = {}
        #: channel -> throttling state, for throttled subscriptions (``?interval=``).
        self.throttles: dict[str, _Throttle] | None = None
        self.dirty = False
        self.blocked = False
        self.closing = False
        self.last_seen = now
        self.last_ping = now
        self.opened = now
        #: The close code the server chose (the first one, if several were tried).
        self.close_code: int | None = None
        self.close_reason = ""

    def set_identity(self, identity: Identity | None) -> None:
        self.identity = identity
        if identity is not None:
            self.user_id = identity.user_id
            self.role = identity.role
            self.roles = frozenset(identity.roles)

    def accepts(self, event: Event) -> bool:
        """Targeting: no target = everyone; else the user, or a connection holding the
        role (either suffices)."""
        if event.user_id is None and event.role is None:
            return True
        return (event.user_id is not None and event.user_id == self.user_id) or (
            event.role is not None and event.role in self.roles
        )

    def __repr__(self) -> str:
        return f"<Connection {self.id}>"


class _Throttle:
    """One throttled subscription (a connection's channel): when it last got an event,
    and the latest event per conflation key held until its interval has passed."""

    __slots__ = ("last", "pending", "timer")

    def __init__(self) -> None:
        self.last = float("-inf")
        #: conflation key -> newest event, in the order they arrived (publish order).
        self.pending: dict[Any, Event] = {}
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending.clear()


class _Warming:
    """A subscription being set up: live events are held here until history and
    initial state have been sent, so there is no gap and no duplicate."""

    __slots__ = ("conn", "filter", "pending")

    def __init__(self, conn: Connection, filter: Filter | None) -> None:
        self.conn = conn
        self.filter = filter
        self.pending: list[Event] = []

    def match(self, event: Event) -> bool:
        f = self.filter
        return (f is None or f.matches(event.type, event.data)) and self.conn.accepts(event)


InitialHook = Callable[[], Awaitable[Any]]


class Hub:
    def __init__(
        self,
        config: RealtimeConfig,
        backplane: Backplane,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backplane = backplane
        self._clock = clock
        self._monotonic = monotonic
        self._buffer_size = config.buffer_size
        self._drop_oldest = config.slow_client == "drop_oldest"
        self._conns: dict[str, Connection] = {}
        self._rooms: Rooms[Connection] = Rooms()
        self._warming: dict[str, dict[Connection, _Warming]] = {}
        self._reservations: set[Reservation] = set()
        #: user id -> open connections of that user
        self._user_conns: Counter[str] = Counter()
        #: channel -> connections subscribed or subscribing here (the backplane watches
        #: the channels in use)
        self._channel_use: Counter[str] = Counter()
        self._dirty: list[Connection] = []
        self._flush_scheduled = False
        #: fan-outs since the last flush, and iterations the current flush has lingered
        self._fanouts = 0
        self._lingered = 0
        self._linger_start = 0.0
        #: heartbeat ticks so far: each tick's ping payload is unique
        self._pings = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.started = False
        self.closing = False
        self.started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.messages_sent = 0
        self.messages_dropped = 0
        self.slow_disconnects = 0
        #: Figures read by the metrics (metrics.py): connections opened, closed by close
        #: code, events published here and queued for subscribers here, per channel.
        self.connections_opened = 0
        self.disconnects: Counter[int] = Counter()
        self.published: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        #: Set by the metrics: called with each connection's duration when it ends, and
        #: with the time from an event's publish to its write to the subscribers.
        self.observe_duration: Callable[[float], None] | None = None
        self.observe_latency: Callable[[float], None] | None = None
        #: Publish times of events queued by fan-outs, observed when the flush writes them.
        self._latency_pending: list[float] = []
        backplane.attach(self)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self.started:
            return
        await self.backplane.start()
        self._loop = asyncio.get_running_loop()
        self.started = True
        self.closing = False
        self.started_at = self._monotonic()
        hb, timeout = self.config.heartbeat_interval, self.config.client_timeout
        tick = min(max(min(hb, timeout) / 4, 0.05), 5.0)
        self._ticker = asyncio.create_task(self._tick_forever(tick), name="realtime-heartbeat")

    async def shutdown(self) -> None:
        """Refuse new connections, flush every buffer and close each client with 1001,
        within ``shutdown_timeout``; then stop the backplane."""
        self.closing = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        conns = list(self._conns.values())
        if conns:
            timeout = self.config.shutdown_timeout
            await asyncio.gather(
                *(
                    self.close(c, CloseCode.GOING_AWAY, "server shutting down", timeout)
                    for c in conns
                ),
                return_exceptions=True,
            )
        for task in list(self._tasks):
            task.cancel()
        if self.started:
            await self.backplane.stop()
        self.started = False

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- connections

    def reserve(self, user_id: str | None = None) -> Reservation:
        """Hold a slot for a connection about to be upgraded: ``ServerUnavailable`` if the
        process is full, ``TooManyRequests`` if ``user_id`` has all the connections
        ``max_connections_per_user`` allows."""
        now = self._monotonic()
        if self._reservations:
            self._reservations = {r for r in self._reservations if r.deadline > now}
        if self.closing:
            raise ServerUnavailable("the server is shutting down", code="shutting_down")
        limit = self.config.max_clients
        if len(self._conns) + len(self._reservations) >= limit:
            raise ServerUnavailable(f"server full: at most {limit} connections per process")
        per_user = self.config.max_connections_per_user
        if per_user is not None and user_id is not None:
            held = self._user_conns[user_id] + sum(
                1 for r in self._reservations if r.user_id == user_id
            )
            if held >= per_user:
                raise TooManyRequests(
                    f"user {user_id!r} already has {held} connections (at most {per_user}); "
                    "close one first",
                    code="too_many_connections",
                )
        reservation = Reservation(now + RESERVATION_TTL, user_id)
        self._reservations.add(reservation)
        return reservation

    def release(self, reservation: Reservation) -> None:
        """Give back a slot whose request was not upgraded after all."""
        self._reservations.discard(reservation)

    def register(
        self,
        socket: Socket,
        reservation: Reservation | None = None,
        identity: Identity | None = None,
    ) -> Connection:
        if reservation is not None:
            self._reservations.discard(reservation)
        conn = Connection("c_" + secrets.token_urlsafe(9), socket, identity, self._monotonic())
        self._conns[conn.id] = conn
        self.connections_opened += 1
        if conn.user_id is not None:
            self._user_conns[conn.user_id] += 1
        self._schedule_expiry(conn)
        return conn

    def unregister(self, conn: Connection) -> None:
        """Forget ``conn``: it leaves every room; its queue is discarded. Idempotent."""
        conn.closing = True
        if self._conns.pop(conn.id, None) is None:
            return
        self._log_disconnect(conn)
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None
        if conn.user_id is not None:
            self._user_conns[conn.user_id] -= 1
            if self._user_conns[conn.user_id] <= 0:
                del self._user_conns[conn.user_id]
        for channel in conn.channels:
            self._rooms.remove(conn, channel)
            self._discard_warming(conn, channel)
            self._forget_throttle(conn, channel)
            self._leave(channel)
        conn.channels.clear()
        if conn.queue:
            self.messages_dropped += conn.events
            conn.queue.clear()
            conn.events = 0

    def _log_disconnect(self, conn: Connection) -> None:
        """Count and log the end of ``conn`` (once: unregister is idempotent)."""
        code, reason = conn.close_code, conn.close_reason
        if code is None:
            try:
                status = conn.socket.close_status()
            except Exception:  # pragma: no cover - a socket must not break unregister
                status = None
            # 1006: no close frame went either way (RFC 6455 section 7.1.5).
            code, reason = status if status is not None else (1006, "no close frame")
        duration = self._monotonic() - conn.opened
        self.disconnects[code] += 1
        if self.observe_duration is not None:
            self.observe_duration(duration)
        connection_logger.info(
            "realtime disconnect %s user=%s channels=%s code=%d reason=%r duration=%.3fs",
            conn.id,
            conn.user_id if conn.user_id is not None else "-",
            ",".join(conn.channels) or "-",
            code,
            reason,
            duration,
            extra={
                "realtime_event": "disconnect",
                "client_id": conn.id,
                "user_id": conn.user_id,
                "channels": list(conn.channels),
                "close_code": code,
                "close_reason": reason,
                "duration_s": round(duration, 3),
            },
        )

    @staticmethod
    def _closed_with(conn: Connection, code: int, reason: str) -> None:
        if conn.close_code is None:
            conn.close_code, conn.close_reason = code, reason

    # ----------------------------------------------------------------- identity and expiry

    def _schedule_expiry(self, conn: Connection) -> None:
        """Close ``conn`` with 1008 at its token's ``exp`` (+ ``auth.leeway``)."""
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None
        identity = conn.identity
        if identity is None or identity.expires_at is None:
            return
        delay = identity.expires_at + self.config.auth.leeway - self._clock()
        conn.expiry = asyncio.get_running_loop().call_later(max(delay, 0.0), self._expire, conn)

    def _expire(self, conn: Connection) -> None:
        conn.expiry = None
        if conn.id in self._conns and not conn.closing:
            self._spawn(self.close(conn, CloseCode.POLICY, "token expired"))

    def reidentify(self, conn: Connection, identity: Identity) -> None:
        """A refreshed token (same user): new roles and a new expiry for ``conn``."""
        if identity.user_id != conn.user_id:
            raise ValueError("a refreshed token must belong to the connection's user")
        conn.set_identity(identity)
        self._schedule_expiry(conn)

    async def disconnect(
        self,
        *,
        user_id: str | None = None,
        role: str | None = None,
        code: int = CloseCode.POLICY,
        reason: str = "access revoked",
    ) -> int:
        """Close every connection of ``user_id`` (or holding ``role``); returns how many.
        What is already queued for them is flushed first."""
        if user_id is None and role is None:
            raise ValueError("disconnect() needs user_id or role")
        conns = [
            c
            for c in self._conns.values()
            if not c.closing
            and ((user_id is not None and c.user_id == user_id) or (role in c.roles))
        ]
        await asyncio.gather(*(self.close(c, code, reason) for c in conns), return_exceptions=True)
        return len(conns)

    def touch(self, conn: Connection) -> None:
        """The client sent something: it is alive."""
        conn.last_seen = self._monotonic()

    @property
    def connections(self) -> Mapping[str, Connection]:
        return self._conns

    # ----------------------------------------------------------------- publish and fan-out

    async def publish(
        self,
        channel: str,
        type: str,
        data: Any = None,
        *,
        user_id: str | None = None,
        role: str | None = None,
    ) -> PublishResult:
        if channel not in self.config.channels:
            raise UnknownChannel(channel, list(self.config.channels))
        if not isinstance(type, str) or not type:
            raise ValueError(f"an event type must be a non-empty string, got {type!r}")
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "publish() runs on the server's event loop; from another thread use "
                "asyncio.run_coroutine_threadsafe(realtime.publish(...), loop)"
            )
        event, recipients = await self.backplane.publish(
            channel, type, data, user_id=user_id, role=role
        )
        self.published[channel] += 1
        return PublishResult(channel, str(event.id), recipients)

    def deliver(self, event: Event) -> int:
        """Queue ``event`` for every local subscriber it matches; return how many.

        Synchronous and never blocks: this is the hot path.
        """
        channel = event.channel
        room = self._rooms.get(channel)
        warming = self._warming.get(channel)
        if room is None and not warming:
            return 0
        frame = text_frame(event.payload)
        etype, data = event.type, event.data
        targeted = event.user_id is not None or event.role is not None
        enqueue = self._enqueue
        count = written = 0
        # A fan-out with no flush pending (events are not arriving back to back) writes
        # straight to each connection with nothing queued: one write per event, as
        # broadcast() does. Otherwise frames are queued and coalesced (see _flush).
        direct = not self._flush_scheduled
        if room is not None:
            self._fanouts += 1
            for group in room.groups.values():
                f = group.filter
                if f is not None:
                    if not f.matches(etype, data):
                        continue
                    if f.interval:
                        count += self._deliver_throttled(group.members, f, event, targeted)
                        continue
                for conn in group.members:
                    if targeted and not conn.accepts(event):
                        continue
                    if (
                        direct
                        and not conn.queue
                        and not conn.blocked
                        and not conn.closing
                        and not conn.dropped
                        and conn.socket.try_write(frame)
                    ):
                        written += 1
                    elif not enqueue(conn, channel, frame):
                        continue
                    count += 1
        if direct:
            self.messages_sent += written
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        if warming:
            for w in warming.values():
                if w.conn.closing or not w.match(event):
                    continue
                if len(w.pending) >= self._buffer_size:
                    if not self._drop_oldest:
                        self.messages_dropped += 1  # this event
                        self._overflow(w.conn)
                        continue
                    w.pending.pop(0)
                    self._count_drop(w.conn, channel)
                w.pending.append(event)
                count += 1
        if count:
            self.delivered[channel] += count
            if self.observe_latency is not None:
                if written == count:  # every copy went out in this fan-out
                    self.observe_latency(self._clock() - event.time)
                else:  # observed when the flush writes the queued copies
                    self._latency_pending.append(event.time)
        return count

    # ----------------------------------------------------------------- throttling

    def _deliver_throttled(
        self, members: Mapping[Connection, None], f: Filter, event: Event, targeted: bool
    ) -> int:
        """Fan-out to a group of throttled subscribers (``?interval=``): each gets the
        event now if its interval has passed and it has nothing held, else the event is
        held, replacing the held one with the same conflation key, until the interval
        has passed. Events go out in publish order; what is replaced is skipped on
        purpose (the subscriber asked for the latest, at most once per interval)."""
        count = 0
        channel = event.channel
        now = self._monotonic()
        key = f.conflation_key(event.data)
        frame: bytes | None = None
        for conn in members:
            if conn.closing or (targeted and not conn.accepts(event)):
                continue
            throttles = conn.throttles
            if throttles is None:
                throttles = conn.throttles = {}
            state = throttles.get(channel)
            if state is None:
                state = throttles[channel] = _Throttle()
            if not state.pending and now - state.last >= f.interval:
                state.last = now
                if frame is None:
                    frame = text_frame(event.payload)
                if self._enqueue(conn, channel, frame):
                    count += 1
                continue
            pending = state.pending
            pending.pop(key, None)  # the replacement goes last: publish order
            pending[key] = event
            count += 1
            if len(pending) > self._buffer_size:
                # More distinct keys than a buffer holds: release now (the buffer's own
                # bound and slow_client policy then apply).
                self._release(conn, channel)
            elif state.timer is None:
                delay = max(state.last + f.interval - now, 0.0)
                state.timer = asyncio.get_running_loop().call_later(
                    delay, self._release, conn, channel
                )
        return count

    def _release(self, conn: Connection, channel: str) -> None:
        """The interval has passed: queue the held events (oldest first)."""
        throttles = conn.throttles
        state = throttles.get(channel) if throttles is not None else None
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        events = list(state.pending.values())
        state.pending.clear()
        if conn.closing or channel not in conn.channels or not events:
            return
        state.last = self._monotonic()
        for event in events:
            self._enqueue(conn, channel, text_frame(event.payload))

    def _forget_throttle(self, conn: Connection, channel: str) -> None:
        throttles = conn.throttles
        if throttles is not None:
            state = throttles.pop(channel, None)
            if state is not None:
                state.cancel()
            if not throttles:
                conn.throttles = None

    def _enqueue(
        self, conn: Connection, channel: str | None, frame: bytes, force: bool = False
    ) -> bool:
        """Queue one frame (``channel`` None: a control message). Returns False when the
        connection will not get it."""
        if conn.closing:
            return False
        queue = conn.queue
        if channel is None:
            # Control replies are not bounded by buffer_size, but a client that keeps
            # asking and never reads must not grow its queue forever.
            if len(queue) >= self._buffer_size + conn.allowance + CONTROL_MARGIN and not (
                self._can_write_now(conn) and self._write(conn)
            ):
                self._overflow(conn, "slow consumer: too many unread replies")
                return False
        else:
            if not force and conn.events >= self._buffer_size + conn.allowance:
                # Full. If the transport can take it, this is a burst, not a slow client:
                # write the queue now. Otherwise the slow_client policy decides.
                if self._can_write_now(conn):
                    if not self._write(conn):  # the connection turned out to be gone
                        self.messages_dropped += 1
                        return False
                elif self._drop_oldest:
                    self._drop_one(conn)
                else:
                    self.messages_dropped += 1  # this event: the client will not get it
                    self._overflow(conn)
                    return False
            conn.events += 1
        queue.append((channel, frame))
        if not conn.dirty:
            conn.dirty = True
            self._dirty.append(conn)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        return True

    @staticmethod
    def _can_write_now(conn: Connection) -> bool:
        return not conn.blocked and conn.socket.writable()

    def _count_drop(self, conn: Connection, channel: str) -> None:
        conn.dropped[channel] = conn.dropped.get(channel, 0) + 1
        self.messages_dropped += 1

    def _drop_one(self, conn: Connection) -> None:
        """drop_oldest: remove the oldest queued event (control messages are kept)."""
        queue = conn.queue
        for i, (channel, _) in enumerate(queue):
            if channel is not None:
                del queue[i]
                conn.events -= 1
                self._count_drop(conn, channel)
                return

    def _overflow(self, conn: Connection, reason: str = "") -> None:
        """The buffer is full and the client is not reading: close with 4008, outside the
        fan-out loop."""
        if conn.closing:
            return
        conn.closing = True
        self.slow_disconnects += 1
        reason = reason or f"slow consumer: buffer of {self._buffer_size} events full"
        self._closed_with(conn, CloseCode.SLOW_CONSUMER, reason)
        asyncio.get_running_loop().call_soon(self.abort, conn, CloseCode.SLOW_CONSUMER, reason)

    def send(self, conn: Connection, message: ControlMessage) -> None:
        """Queue a control message (bounded by buffer_size + CONTROL_MARGIN, not by events)."""
        self._enqueue(conn, None, text_frame(encode(message)))

    def timestamp(self) -> str:
        """Now, as control messages carry it."""
        return utc_timestamp(self._clock())

    # ----------------------------------------------------------------- writing

    def _flush(self) -> None:
        """Write every dirty connection's queue, one write per connection.

        Adaptive coalescing. While fan-outs come in consecutive loop iterations (a burst,
        or a rate the loop only just keeps up with), the flush stays scheduled, so new
        events are queued rather than written directly, and it waits for more events,
        up to ``LINGER_ITERATIONS`` iterations and ``LINGER_SECONDS``, before writing:
        each connection then gets several frames per ``transport.write``, one syscall
        instead of several (the write is ~80% of a delivery's cost in a py-spy profile).
        An iteration without a fan-out writes at once and ends it, so an isolated event
        is never delayed and the end of a burst waits at most one iteration.
        """
        loop = asyncio.get_running_loop()
        busy = self._fanouts
        self._fanouts = 0
        if busy:
            if self._dirty and self._lingered < LINGER_ITERATIONS:
                now = loop.time()
                if not self._lingered:
                    self._linger_start = now
                if now - self._linger_start < LINGER_SECONDS:
                    self._lingered += 1
                    loop.call_soon(self._flush)
                    return
            loop.call_soon(self._flush)  # stay scheduled: the next events are queued
        else:
            self._flush_scheduled = False
        self._lingered = 0
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.dirty = False
            if not conn.blocked:
                self._write(conn)
        if self._latency_pending and self.observe_latency is not None:
            now, observe = self._clock(), self.observe_latency
            for published in self._latency_pending:
                observe(now - published)
            self._latency_pending.clear()

    def _write(self, conn: Connection) -> bool:
        """Write everything queued for ``conn`` in one write, or wait until it can be.
        Returns False when the connection turned out to be closed or blocked.

        May run inside a fan-out loop: it never changes rooms itself (closing is deferred).
        """
        queue = conn.queue
        if not queue:
            return True
        socket = conn.socket
        # One frame (a connection that gets few of the events): one call that checks and
        # writes. What it refuses (closed, blocked) is handled below.
        if len(queue) == 1 and not conn.dropped and socket.try_write(queue[0][1]):
            queue.clear()
            conn.events = conn.allowance = 0
            self.messages_sent += 1
            return True
        if not socket.is_open():
            conn.closing = True
            asyncio.get_running_loop().call_soon(self.unregister, conn)
            return False
        if not socket.writable():
            conn.blocked = True
            self._spawn(self._write_when_writable(conn))
            return False
        parts: list[bytes] = []
        for channel, frame in conn.queue:
            if channel is not None and conn.dropped:
                # The loss is reported right before the next event the client gets.
                parts.extend(self._drop_notices(conn))
            parts.append(frame)
        events = conn.events
        conn.queue.clear()
        conn.events = 0
        conn.allowance = 0
        try:
            socket.write(b"".join(parts))
        except Exception:
            logger.exception("writing to %s failed; closing it", conn)
            self.messages_dropped += events
            conn.closing = True
            asyncio.get_running_loop().call_soon(
                self.abort, conn, CloseCode.SERVER_ERROR, "write failed"
            )
            return False
        self.messages_sent += len(parts)
        return True

    def _drop_notices(self, conn: Connection) -> list[bytes]:
        ts = self.timestamp()
        notices = [
            text_frame(
                encode(MessagesDropped(timestamp=ts, data=MessagesDroppedData(channel=ch, count=n)))
            )
            for ch, n in conn.dropped.items()
        ]
        conn.dropped.clear()
        return notices

    async def _write_when_writable(self, conn: Connection) -> None:
        try:
            await conn.socket.wait_writable()
        except Exception:
            pass  # the connection is gone; _write sees it closed
        finally:
            conn.blocked = False
        self._write(conn)

    # ----------------------------------------------------------------- closing

    def abort(self, conn: Connection, code: int, reason: str) -> None:
        """Close now, discarding what is queued (counted as dropped). Never blocks."""
        self._closed_with(conn, code, reason)
        conn.closing = True
        try:
            conn.socket.abort(code, reason)
        except Exception:
            logger.debug("abort of %s failed", conn, exc_info=True)
        self.unregister(conn)

    async def close(
        self, conn: Connection, code: int, reason: str, timeout: float | None = None
    ) -> None:
        """Flush what is queued, then close with ``code``; abort after ``timeout``."""
        if conn.closing and conn.id not in self._conns:
            return
        self._closed_with(conn, code, reason)
        conn.closing = True  # no new events; what is queued still goes out
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._drain_and_close(conn, code, reason), timeout)
        except Exception:
            self.abort(conn, code, reason)
        finally:
            self.unregister(conn)

    async def _drain_and_close(self, conn: Connection, code: int, reason: str) -> None:
        socket = conn.socket
        while conn.queue and socket.is_open():
            if socket.writable():
                self._write(conn)
            else:
                await socket.wait_writable()
        if socket.is_open():
            await socket.close(code, reason)

    # ----------------------------------------------------------------- subscriptions

    def _stop_warming(self, conn: Connection, channel: str) -> _Warming | None:
        table = self._warming.get(channel)
        if not table:
            return None
        w = table.pop(conn, None)
        if not table:
            del self._warming[channel]
        return w

    async def subscribe(
        self,
        conn: Connection,
        requests: Sequence[SubRequest],
        *,
        reply: Callable[[Reply], ControlMessage] | None = None,
        hooks: Mapping[str, InitialHook] | None = None,
        positions: bool = False,
    ) -> None:
        """Subscribe ``conn`` to each request's channel, then send, in this order:
        the control message ``reply`` builds (``connection_established`` or
        ``subscribed``, with ``recovered`` when a resume was asked), per channel its
        ``initial_state``, the replayed events, and then live events, with no gap and no duplicate.

        A channel already subscribed is re-subscribed with the new filter. With
        ``positions``, the reply maps each channel to the id of its newest event, read
        before the subscription sees any: ``since`` that id gives every event the
        subscription could have missed (and a few from just before it, at most).
        """
        hooks = hooks or {}
        where: dict[str, str] = {}
        if positions:
            # Read before the subscription can see any event: an event delivered to it is
            # newer than its position, so a resume from the position never skips one.
            for req in requests:
                position = await self.backplane.position(req.channel)
                if position is not None:
                    where[req.channel] = str(position)
        warmers: dict[str, _Warming] = {}
        for req in requests:
            self._rooms.remove(conn, req.channel)
            self._stop_warming(conn, req.channel)
            w = _Warming(conn, req.filter)
            self._warming.setdefault(req.channel, {})[conn] = w
            if req.channel not in conn.channels:
                self._join(req.channel)
            conn.channels[req.channel] = req.filter
            warmers[req.channel] = w

        recovered: dict[str, bool] = {}
        replays: dict[str, list[Event]] = {}
        #: channel -> the last event (initial: last) or the hook's encoded message.
        initials: dict[str, Event | bytes] = {}
        failures: list[tuple[str, str]] = []
        try:
            for req in requests:
                # From here on, every event of the channel reaches the warming entry.
                await self.backplane.ready(req.channel)
            for req in requests:
                channel, w = req.channel, warmers[req.channel]
                if req.since is not None:
                    replay = await self.backplane.since(channel, req.since)
                    recovered[channel] = replay is not None
                    if replay is not None:
                        replays[channel] = [e for e in replay if w.match(e)]
                if recovered.get(channel):
                    continue  # the client has the state, and gets what it missed
                hook = hooks.get(channel)
                if hook is not None:
                    try:
                        state = await hook()
                        if state is not None:  # None: nothing to send
                            initials[channel] = encode(
                                InitialState(
                                    channel=channel, timestamp=self.timestamp(), data=state
                                )
                            )
                    except Exception as e:
                        logger.exception("initial_state hook of channel %r failed", channel)
                        failures.append((channel, f"{type(e).__name__}: {e}"[:200]))
                elif self.config.channels[channel].initial == "last":
                    last = await self.backplane.last(channel, w.match)
                    if last is not None:
                        initials[channel] = last
        except BaseException:  # the client left (cancelled) or a backplane failed
            self._abandon(conn, requests)
            raise

        # Commit: synchronous from here, so no event can slip between the parts.
        if conn.closing:
            self._abandon(conn, requests)
            return
        for req in requests:
            self._stop_warming(conn, req.channel)
        ts = self.timestamp()
        self.send(
            conn,
            (reply or subscribed)(
                Reply(
                    timestamp=ts,
                    channels=[req.channel for req in requests],
                    recovered=recovered or msgspec.UNSET,
                    positions=where if positions else msgspec.UNSET,
                )
            ),
        )
        for channel, error in failures:
            message = f"the initial state of {channel!r} could not be computed ({error})"
            self.send(
                conn,
                InBandError(
                    timestamp=ts, data=ErrorData(code="initial_state_failed", message=message)
                ),
            )
        for req in requests:
            channel, w = req.channel, warmers[req.channel]
            pending = w.pending
            initial = initials.get(channel)
            if isinstance(initial, Event):
                # An event that arrived during set-up is newer: it is delivered instead.
                if not pending or initial.offset < pending[0].offset:
                    self.send(conn, InitialState(channel=channel, timestamp=ts, data=initial.data))
            elif initial is not None:
                self._enqueue(conn, None, text_frame(initial))
            events = replays.get(channel, [])
            if channel in replays:
                cut = events[-1].id if events else req.since
                assert cut is not None
                # Live events the replay already holds are dropped (same epoch, offset
                # not beyond the replay's end).
                events = events + [
                    e for e in pending if e.id.epoch != cut.epoch or e.offset > cut.offset
                ]
            else:
                events = pending
            # A re-subscription starts its throttling afresh (held events were for the
            # old filter); a throttled resume gets only the latest event per key.
            self._forget_throttle(conn, channel)
            f = req.filter
            if f is not None and f.interval and events:
                latest: dict[Any, Event] = {}
                for held in events:  # the newest per key, in publish order
                    k = f.conflation_key(held.data)
                    latest.pop(k, None)
                    latest[k] = held
                events = list(latest.values())
                state = _Throttle()
                state.last = self._monotonic()
                conn.throttles = {**(conn.throttles or {}), channel: state}
            conn.allowance += len(events)
            for event in events:
                self._enqueue(conn, channel, text_frame(event.payload), force=True)
            self._rooms.add(conn, channel, req.filter)

    def _discard_warming(self, conn: Connection, channel: str) -> None:
        """Stop setting up ``channel`` for ``conn``; the events held for it are lost."""
        warming = self._stop_warming(conn, channel)
        if warming is not None:
            self.messages_dropped += len(warming.pending)

    def _abandon(self, conn: Connection, requests: Sequence[SubRequest]) -> None:
        """Drop subscriptions that were being set up."""
        for req in requests:
            self._discard_warming(conn, req.channel)
            self._forget_throttle(conn, req.channel)
            if conn.channels.pop(req.channel, _NOT_SUBSCRIBED) is not _NOT_SUBSCRIBED:
                self._leave(req.channel)

    def unsubscribe(self, conn: Connection, channels: Sequence[str]) -> list[str]:
        """Leave ``channels``; returns those that were subscribed."""
        removed = []
        for channel in channels:
            if conn.channels.pop(channel, _NOT_SUBSCRIBED) is _NOT_SUBSCRIBED:
                continue
            self._rooms.remove(conn, channel)
            self._stop_warming(conn, channel)
            self._forget_throttle(conn, channel)
            self._leave(channel)
            removed.append(channel)
        return removed

    def _join(self, channel: str) -> None:
        self._channel_use[channel] += 1
        if self._channel_use[channel] == 1:
            self.backplane.watch(channel)

    def _leave(self, channel: str) -> None:
        self._channel_use[channel] -= 1
        if self._channel_use[channel] <= 0:
            del self._channel_use[channel]
            self.backplane.unwatch(channel)

    def report_loss(self, channel: str, count: int | None, reason: str) -> None:
        """Events of ``channel`` were lost before reaching this process (the backplane
        saw a gap it could not fill): every local subscriber is told at once, with a
        ``messages_dropped`` message (``count`` null when unknown)."""
        room = self._rooms.get(channel)
        conns = set(room) if room is not None else set()
        conns.update(self._warming.get(channel, {}))
        message = MessagesDropped(
            timestamp=self.timestamp(),
            data=MessagesDroppedData(
                channel=channel, count=count, reason=cast("LossReason", reason)
            ),
        )
        for conn in conns:
            if not conn.closing:
                self.send(conn, message)

    # ----------------------------------------------------------------- liveness

    async def _tick_forever(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            try:
                self._tick()
            except Exception:  # pragma: no cover - a bug must not stop heartbeats
                logger.exception("heartbeat tick failed")

    def _tick(self) -> None:
        now = self._monotonic()
        heartbeat = self.config.heartbeat_interval
        timeout = self.config.client_timeout
        # One ping frame per tick, the same bytes for every connection (as for events).
        self._pings += 1
        payload = b"rt" + self._pings.to_bytes(6, "big")
        frame = Frame(Opcode.PING, payload).serialize(mask=False)
        for conn in list(self._conns.values()):
            if conn.closing:
                continue
            if now - conn.last_seen > timeout:
                self.abort(
                    conn,
                    CloseCode.SERVER_ERROR,
                    f"client timeout: nothing received for {timeout:g}s",
                )
            elif now - conn.last_ping >= heartbeat and not conn.blocked:
                conn.last_ping = now
                try:
                    conn.socket.ping(frame, payload, partial(self.touch, conn))
                except Exception:  # pragma: no cover - a socket must not stop heartbeats
                    logger.debug("ping to %s failed", conn, exc_info=True)

    # ----------------------------------------------------------------- figures

    def stats(self) -> dict[str, Any]:
        by_channel = self._rooms.counts()
        for channel, table in self._warming.items():
            by_channel[channel] = by_channel.get(channel, 0) + len(table)
        by_role: Counter[str] = Counter()
        for conn in self._conns.values():
            by_role.update(conn.roles)
        return {
            "total_clients": len(self._conns),
            "total_users": len(self._user_conns),
            "by_channel": by_channel,
            "by_role": dict(by_role),
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "slow_disconnects": self.slow_disconnects,
            "uptime_s": round(self._monotonic() - self.started_at, 3) if self.started else 0.0,
        }


_NOT_SUBSCRIBED: Any = object()
