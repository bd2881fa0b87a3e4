"""The hub: the registry of connections, rooms, fan-out, flushing, closing.

Runtime (asyncio), but no sanic: a connection's socket is anything that implements
:class:`~sanic_realtime.hub.connection.Socket` (the Sanic adapter is in
``transport.py``; tests may use a fake).

Fan-out: each event is encoded once (by the backplane) and framed once (here), and the
same bytes go to every matching connection; a filter is evaluated once per distinct
filter of a room, not once per subscriber. Publishing never waits for a socket: an
isolated event is written at once to each connection with nothing queued; while events
come back to back they are queued, and each connection's frames are written together
(adaptive coalescing, see ``Hub._flush``). One failing socket never stops a fan-out.

The hub's other jobs are its parts': the outbox (queues, the slow-client policy,
writes), subscriptions and recovery (set-up, replay), throttling and liveness.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import msgspec

from ..auth import Identity
from ..backplanes.base import Backplane
from ..channels import Instances, Resolved
from ..config import PresenceConfig, RealtimeConfig
from ..events import Event, utc_timestamp
from ..exceptions import ClientError
from ..framing import text_frame
from ..hooks import ConnectionView, HookRunner, Hooks
from ..log import logger
from ..protocol import CloseCode, ControlMessage, PresenceData, Sender
from ..rooms import Rooms
from ..subscriptions import SubRequest
from .connection import CLOSED, OPEN, Connection, Socket
from .liveness import Liveness
from .outbox import Outbox
from .recovery import Recovery
from .registry import Registry, Reservation
from .subscribe import InitialHook, Reply, Subscriptions, subscribed
from .throttle import Throttler

__all__ = ["LINGER_ITERATIONS", "LINGER_SECONDS", "Hub", "PublishResult"]

#: While events arrive in consecutive loop iterations, a flush waits up to this many
#: iterations, and at most LINGER_SECONDS, for more frames to share each write.
LINGER_ITERATIONS = 4
LINGER_SECONDS = 0.005


class PublishResult(msgspec.Struct, frozen=True):
    """What :meth:`Hub.publish` returns."""

    channel: str
    id: str
    #: Connections the event was queued for: of this process, or with
    #: ``count="cluster"`` of every process.
    recipients: int
    #: False when ``count="cluster"`` and some process did not answer in time (then
    #: ``recipients`` counts those that did).
    complete: bool = True


class Hub:
    """The realtime hub of one process (see the module docstring)."""

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
        self._registry = registry = Registry(config, monotonic)
        self._conns = registry.conns
        self._rooms: Rooms[Connection] = Rooms()
        # The parts: each owns its fields of a Connection (see connection.py).
        self._outbox = outbox = Outbox(
            config,
            timestamp=self.timestamp,
            abort=self.abort,
            unregister=self.unregister,
            spawn=self._spawn,
            flush=self._flush,
        )
        self._recovery = Recovery(outbox)
        self._warming = self._recovery.table  # channel -> connection -> its set-up
        self._throttler = Throttler(outbox.enqueue, config.buffer_size, monotonic)
        #: the channels and templates of the config, and the template instances in use
        self.catalog = catalog = config.catalog
        self.instances = Instances(
            config.max_channels,
            self._idle_time,
            in_use=lambda name: self._subs.in_use(name),
            forget=backplane.forget,
        )
        self._subs = Subscriptions(
            config,
            backplane,
            self._rooms,
            outbox,
            self._recovery,
            self._throttler,
            self.timestamp,
            lambda resolved: self.instances.use(resolved, self._monotonic()),
        )
        self._static = catalog.static
        #: The app's hooks (``Realtime`` shares its own), and the runner of the lifecycle
        #: ones, off the delivery path.
        self.hooks = Hooks()
        self.lifecycle = HookRunner()
        self._liveness = Liveness(
            config,
            self._conns,
            clock=clock,
            monotonic=monotonic,
            abort=self.abort,
            close=self.close,
            spawn=self._spawn,
        )
        #: fan-outs since the last flush, and iterations the current flush has lingered
        self._fanouts = 0
        self._lingered = 0
        self._linger_start = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.started = False
        self.closing = False
        self.started_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Figures read by the metrics (metrics.py): connections closed by close code,
        #: events published here and queued for subscribers here, per channel.
        self.disconnects = registry.disconnects
        self.published: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        #: Set by the metrics: called with the time from an event's publish to its write
        #: to the subscribers (and, observe_duration, with each connection's duration).
        self.observe_latency: Callable[[float], None] | None = None
        #: Publish times of events queued by fan-outs, observed when the flush writes them.
        self._latency_pending: list[float] = []
        backplane.attach(self)
        backplane.presence_settings(self.presence_config)

    def admit_channels(self, channels: Sequence[str]) -> list[Resolved]:
        """Resolve ``channels`` and record the use of those that are template instances;
        raises TooManyChannels when a new one does not fit (``max_channels``)."""
        targets = [self.catalog.resolve(channel) for channel in channels]
        now = self._monotonic()
        for target in targets:
            if target.is_instance:
                self.instances.use(target, now)
        return targets

    def presence_config(self, channel: str) -> PresenceConfig | None:
        """The presence settings of ``channel`` (None: no presence, or not a channel)."""
        try:
            return self.catalog.resolve(channel).spec.presence_config
        except ClientError:
            return None

    def key_of(self, channel: str) -> str:
        """The config key figures name ``channel`` by: itself, or its template."""
        if channel in self._static:
            return channel
        return self.instances.key_of(channel) or self.catalog.key_of(channel)

    def _idle_time(self, key: str) -> float:
        """How long an instance of template ``key`` is kept after its last use: as long
        as its history (nothing to keep without one)."""
        history = self.config.history_for(key)
        return float(history.ttl) if history.size else 0.0

    @property
    def connections_opened(self) -> int:
        return self._registry.opened

    @property
    def observe_duration(self) -> Callable[[float], None] | None:
        return self._registry.observe_duration

    @observe_duration.setter
    def observe_duration(self, observe: Callable[[float], None] | None) -> None:
        self._registry.observe_duration = observe

    @property
    def messages_sent(self) -> int:
        return self._outbox.messages_sent

    @property
    def messages_dropped(self) -> int:
        return self._outbox.messages_dropped

    @property
    def slow_disconnects(self) -> int:
        return self._outbox.slow_disconnects

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self.started:
            return
        await self.backplane.start()
        self._loop = asyncio.get_running_loop()
        self.started = True
        self.closing = False
        self.started_at = self._monotonic()
        self._ticker = asyncio.create_task(self._liveness.run(), name="realtime-heartbeat")

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
        # The on_disconnect hooks of the connections just closed run before the stop
        # (bounded by the same timeout).
        await self.lifecycle.drain(self.config.shutdown_timeout)
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
        return self._registry.reserve(user_id, self.closing)

    def release(self, reservation: Reservation) -> None:
        """Give back a slot whose request was not upgraded after all."""
        self._registry.release(reservation)

    def register(
        self,
        socket: Socket,
        reservation: Reservation | None = None,
        identity: Identity | None = None,
        remote_addr: str = "",
    ) -> Connection:
        conn = Connection("c_" + secrets.token_urlsafe(9), socket, identity, self._monotonic())
        conn.remote_addr = remote_addr
        self._registry.add(conn, reservation)
        self._liveness.schedule_expiry(conn)
        return conn

    def unregister(self, conn: Connection) -> None:
        """Forget ``conn``: it leaves every room; its queue is discarded. Idempotent."""
        conn.mark_closed()
        if not self._registry.remove(conn):
            return
        self._liveness.cancel_expiry(conn)
        hooks = self.hooks
        if hooks.on_unsubscribe or hooks.on_disconnect:
            view = self.view(conn)
            for channel in conn.channels:
                self.lifecycle.call(hooks.on_unsubscribe, view, channel, "disconnect")
            code, reason = conn.end_status()
            self.lifecycle.call(hooks.on_disconnect, view, code, reason)
        self._subs.leave_all(conn)
        self._outbox.discard(conn)
        if conn.present:
            for channel in conn.present:
                self._presence_remove(conn, channel)
            conn.present = None

    def view(self, conn: Connection) -> ConnectionView:
        """What a lifecycle hook sees of ``conn`` (a snapshot)."""
        return ConnectionView(
            client_id=conn.id,
            user_id=conn.user_id,
            roles=tuple(sorted(conn.roles)),
            remote_addr=conn.remote_addr,
            channels=tuple(conn.channels),
        )

    def reidentify(self, conn: Connection, identity: Identity) -> None:
        """A refreshed token (same user): new roles and a new expiry for ``conn``."""
        if identity.user_id != conn.user_id:
            raise ValueError("a refreshed token must belong to the connection's user")
        conn.set_identity(identity)
        self._liveness.schedule_expiry(conn)

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
        conns = self._registry.matching(user_id, role)
        await asyncio.gather(*(self.close(c, code, reason) for c in conns), return_exceptions=True)
        return len(conns)

    def touch(self, conn: Connection) -> None:
        """The client sent something: it is alive."""
        self._liveness.touch(conn)

    def _tick(self) -> None:  # one liveness check now (the heartbeat task's, every tick)
        self._liveness.tick()

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
        sender: Sender | None = None,
        exclude: str | None = None,
        count: str = "process",
    ) -> PublishResult:
        resolved = self.catalog.resolve(channel)  # UnknownChannel, InvalidChannel
        if count not in ("process", "cluster"):
            raise ValueError(f"count must be 'process' or 'cluster', got {count!r}")
        if not isinstance(type, str) or not type:
            raise ValueError(f"an event type must be a non-empty string, got {type!r}")
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "publish() runs on the server's event loop; from another thread use "
                "asyncio.run_coroutine_threadsafe(realtime.publish(...), loop)"
            )
        if resolved.is_instance:
            self.instances.use(resolved, self._monotonic())  # TooManyChannels
        complete = True
        if count == "cluster":
            event, recipients, complete = await self.backplane.publish_counted(
                channel, type, data, user_id=user_id, role=role
            )
        else:
            event, recipients = await self.backplane.publish(
                channel, type, data, user_id=user_id, role=role, sender=sender, exclude=exclude
            )
        self.published[resolved.key] += 1
        return PublishResult(channel, str(event.id), recipients, complete)

    async def publish_many(
        self,
        channel: str,
        events: Sequence[tuple[str, Any]],
        *,
        user_id: str | None = None,
        role: str | None = None,
    ) -> list[PublishResult]:
        """:meth:`publish` for several events of one channel, in order (with Redis, in
        one round trip when they fit in one write)."""
        resolved = self.catalog.resolve(channel)  # UnknownChannel, InvalidChannel
        items = list(events)
        for item in items:
            if not isinstance(item, tuple) or len(item) != 2:
                raise ValueError(f"publish_many() takes (type, data) pairs, got {item!r}")
            if not isinstance(item[0], str) or not item[0]:
                raise ValueError(f"an event type must be a non-empty string, got {item[0]!r}")
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise RuntimeError(
                "publish_many() runs on the server's event loop; from another thread use "
                "asyncio.run_coroutine_threadsafe(realtime.publish_many(...), loop)"
            )
        if not items:
            return []
        if resolved.is_instance:
            self.instances.use(resolved, self._monotonic())  # TooManyChannels
        published = await self.backplane.publish_many(channel, items, user_id=user_id, role=role)
        self.published[resolved.key] += len(published)
        return [PublishResult(channel, str(e.id), n) for e, n in published]

    def deliver(self, event: Event) -> int:
        """Queue ``event`` for every local subscriber it matches; return how many.

        Synchronous and never blocks: this is the hot path. Per connection, the outbox's
        fan-out loop writes or queues (one call per group of a room, not per connection).
        """
        channel = event.channel
        room = self._rooms.get(channel)
        warming = self._warming.get(channel)
        if room is None and not warming:
            return 0
        outbox = self._outbox
        frame = text_frame(event.payload)
        etype, data = event.type, event.data
        targeted = event.user_id is not None or event.role is not None or event.exclude is not None
        count = written = 0
        # A fan-out with no flush pending (events are not arriving back to back) writes
        # straight to each connection with nothing queued: one write per event, as
        # broadcast() does. Otherwise frames are queued and coalesced (see _flush).
        direct = not outbox.flush_scheduled
        if room is not None:
            self._fanouts += 1
            fan_out = outbox.fan_out
            for group in room.matching(etype, data):  # indexed eq filters: looked up
                f = group.filter
                if f is not None and f.interval:
                    count += self._throttler.deliver(group.members, f, event, targeted)
                    continue
                got, wrote = fan_out(group.members, channel, frame, event, targeted, direct)
                count += got
                written += wrote
        if direct:
            outbox.messages_sent += written
            if not outbox.flush_scheduled:
                outbox.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        if warming:
            count += self._recovery.hold(warming, event)
        if count:
            self.delivered[self.key_of(channel)] += count
            if self.observe_latency is not None:
                if written == count:  # every copy went out in this fan-out
                    self.observe_latency(self._clock() - event.time)
                else:  # observed when the flush writes the queued copies
                    self._latency_pending.append(event.time)
        return count

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
        outbox = self._outbox
        busy = self._fanouts
        self._fanouts = 0
        if busy:
            if outbox.dirty and self._lingered < LINGER_ITERATIONS:
                now = loop.time()
                if not self._lingered:
                    self._linger_start = now
                if now - self._linger_start < LINGER_SECONDS:
                    self._lingered += 1
                    loop.call_soon(self._flush)
                    return
            loop.call_soon(self._flush)  # stay scheduled: the next events are queued
        else:
            outbox.flush_scheduled = False
        self._lingered = 0
        outbox.write_dirty()
        if self._latency_pending and self.observe_latency is not None:
            now, observe = self._clock(), self.observe_latency
            for published in self._latency_pending:
                observe(now - published)
            self._latency_pending.clear()

    def send(self, conn: Connection, message: ControlMessage) -> None:
        """Queue a control message (bounded by buffer_size + CONTROL_MARGIN, not by events)."""
        self._outbox.send(conn, message)

    def timestamp(self) -> str:
        """Now, as control messages carry it."""
        return utc_timestamp(self._clock())

    def report_loss(self, channel: str, count: int | None, reason: str) -> None:
        """Events of ``channel`` were lost before reaching this process (a gap the
        backplane could not fill): each local subscriber gets ``messages_dropped``."""
        self._subs.report_loss(channel, count, reason)

    # ----------------------------------------------------------------- closing

    def abort(self, conn: Connection, code: int, reason: str) -> None:
        """Close now, discarding what is queued (counted as dropped). Never blocks."""
        conn.begin_closing(code, reason)
        try:
            conn.socket.abort(code, reason)
        except Exception:
            logger.debug("abort of %s failed", conn, exc_info=True)
        self.unregister(conn)

    async def close(
        self, conn: Connection, code: int, reason: str, timeout: float | None = None
    ) -> None:
        """Flush what is queued, then close with ``code``; abort after ``timeout``."""
        if conn.state is CLOSED:
            return
        conn.begin_closing(code, reason)  # no new events; what is queued still goes out
        timeout = self.config.shutdown_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._outbox.drain_and_close(conn, code, reason), timeout)
        except Exception:
            self.abort(conn, code, reason)
        finally:
            self.unregister(conn)

    # ----------------------------------------------------------------- subscriptions

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
        await self._subs.subscribe(conn, requests, reply or subscribed, hooks or {}, positions)
        if conn.state is not OPEN:
            return
        for req in requests:
            channel = req.channel
            if channel in conn.channels and (conn.present is None or channel not in conn.present):
                settings = self.presence_config(channel)
                if settings is not None:
                    if conn.present is None:
                        conn.present = set()
                    conn.present.add(channel)
                    self.backplane.presence_add(channel, conn.user_id, conn.role, settings)
        if self.hooks.on_subscribe:
            view = self.view(conn)
            for req in requests:
                if req.channel in conn.channels:
                    params = dict(self.catalog.resolve(req.channel).params)
                    self.lifecycle.call(self.hooks.on_subscribe, view, req.channel, params)

    def unsubscribe(
        self, conn: Connection, channels: Sequence[str], reason: str = "client"
    ) -> list[str]:
        """Leave ``channels``; returns those that were subscribed. ``reason`` is what
        ``on_unsubscribe`` hooks get: ``client`` (asked), ``forbidden`` (no longer
        allowed)."""
        removed = self._subs.unsubscribe(conn, channels)
        if conn.present:
            for channel in removed:
                if channel in conn.present:
                    conn.present.discard(channel)
                    self._presence_remove(conn, channel)
        if removed and self.hooks.on_unsubscribe:
            view = self.view(conn)
            for channel in removed:
                self.lifecycle.call(self.hooks.on_unsubscribe, view, channel, reason)
        return removed

    # ----------------------------------------------------------------- presence and messages

    def _presence_remove(self, conn: Connection, channel: str) -> None:
        settings = self.presence_config(channel)
        if settings is not None:
            self.backplane.presence_remove(channel, conn.user_id, settings)

    async def presence(self, channel: str) -> PresenceData:
        """Who is subscribed to the presence channel ``channel``, on every worker.
        ``UnknownChannel`` / ``InvalidChannel``, or ``no_presence`` without presence."""
        settings = self.catalog.resolve(channel).spec.presence_config
        if settings is None:
            raise ClientError(
                f"channel {channel!r} has no presence (see channels.<name>.presence)",
                code="no_presence",
            )
        return await self.backplane.presence(channel, settings.list)

    def announce(self, channel: str, payload: bytes) -> int:
        """Queue ``payload`` (presence_join / presence_leave) for every local subscriber
        of ``channel``, whatever their filters; like an event, it counts toward
        ``buffer_size``. Returns how many got it."""
        room = self._rooms.get(channel)
        if room is None:
            return 0
        frame = text_frame(payload)
        enqueue = self._outbox.enqueue
        return sum(1 for conn in list(room) if enqueue(conn, channel, frame))

    async def transmit(
        self, channel: str, type: str, data: Any, *, sender: Sender, exclude: str | None
    ) -> int:
        """Deliver a client message not kept in history (no id) on every worker."""
        count = await self.backplane.transmit(channel, type, data, sender=sender, exclude=exclude)
        self.published[self.key_of(channel)] += 1
        return count

    # ----------------------------------------------------------------- figures

    def _present_users(self) -> dict[str, int]:
        """Users present per presence channel template (or static channel), with a
        connection in this process."""
        by_key: dict[str, int] = {}
        for channel, n in self.backplane.presence_counts().items():
            key = self.key_of(channel)
            by_key[key] = by_key.get(key, 0) + n
        return by_key

    def stats(self) -> dict[str, Any]:
        by_channel: dict[str, int] = {}
        for channel, n in self._rooms.counts().items():
            key = self.key_of(channel)
            by_channel[key] = by_channel.get(key, 0) + n
        for channel, table in self._warming.items():
            key = self.key_of(channel)
            by_channel[key] = by_channel.get(key, 0) + len(table)
        by_role: Counter[str] = Counter()
        for conn in self._conns.values():
            by_role.update(conn.roles)
        return {
            "total_clients": len(self._conns),
            "total_users": len(self._registry.users),
            "by_channel": by_channel,
            "by_role": dict(by_role),
            "channel_instances": self.instances.counts(),
            "present_users": self._present_users(),
            "messages_sent": self.messages_sent,
            "messages_dropped": self.messages_dropped,
            "slow_disconnects": self.slow_disconnects,
            "uptime_s": round(self._monotonic() - self.started_at, 3) if self.started else 0.0,
        }
