"""Subscribing: a connection joins and leaves rooms, and a new subscription is set up
(history replayed, initial state sent) with no gap and no duplicate.

A subscription goes through three steps (:meth:`Subscriptions.subscribe`): it starts
warming (its channel's live events are held for it, ``recovery.py``), then set-up reads
what it needs (the replay from the backplane, the initial state from a hook or the
channel's last event), then one synchronous commit sends the reply, the initial state,
the replay and the held events, and puts the connection in the room. If the client
leaves or the backplane fails during set-up, the subscription is abandoned and the
events held for it are counted as dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import msgspec

from ..backplanes.base import Backplane
from ..channels import Resolved
from ..config import RealtimeConfig
from ..events import Event
from ..framing import text_frame
from ..log import logger
from ..protocol import (
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
from ..rooms import Rooms
from ..subscriptions import SubRequest
from .connection import OPEN, Connection
from .outbox import Outbox
from .recovery import Recovery, Warming, initial_is_current, merge_replay
from .throttle import Throttler

__all__ = ["InitialHook", "Reply", "Subscriptions", "subscribed"]

#: Called with the channel's template parameters ({} for a static channel).
InitialHook = Callable[[Mapping[str, str]], Awaitable[Any]]


class Reply(NamedTuple):
    """What the hub knows when it answers a subscription: the reply's builder (the
    caller's) turns it into ``connection_established`` or ``subscribed``."""

    timestamp: str
    channels: list[str]
    #: Per channel whose resume was asked: whether it succeeded.
    recovered: dict[str, bool] | msgspec.UnsetType
    #: With ``positions``: per channel, the id of its newest event.
    positions: dict[str, str] | msgspec.UnsetType


def subscribed(reply: Reply, ref: str | msgspec.UnsetType = msgspec.UNSET) -> Subscribed:
    """The reply to a ``subscribe`` message (the default of :meth:`Hub.subscribe`),
    with the message's ``ref``."""
    data = SubscribedData(
        channels=reply.channels, recovered=reply.recovered, positions=reply.positions
    )
    return Subscribed(timestamp=reply.timestamp, data=data, ref=ref)


class _SetUp:
    """What set-up found, per channel, for the commit."""

    __slots__ = ("failures", "initials", "recovered", "replays")

    def __init__(self) -> None:
        #: Per channel whose resume was asked: whether it succeeded.
        self.recovered: dict[str, bool] = {}
        #: Per recovered channel: the replay (the subscriber's events only).
        self.replays: dict[str, list[Event]] = {}
        #: channel -> the last event (initial: last) or the hook's encoded message.
        self.initials: dict[str, Event | bytes] = {}
        #: (channel, error) of the initial_state hooks that failed.
        self.failures: list[tuple[str, str]] = []


_NOT_SUBSCRIBED: Any = object()


class Subscriptions:
    """Who subscribes to what in one hub: joins and leaves ``rooms`` (shared with the
    hub's fan-out), and tells the backplane which channels are in use here."""

    def __init__(
        self,
        config: RealtimeConfig,
        backplane: Backplane,
        rooms: Rooms[Connection],
        outbox: Outbox,
        recovery: Recovery,
        throttler: Throttler,
        timestamp: Callable[[], str],
        use_instance: Callable[[Resolved], None] = lambda resolved: None,
    ) -> None:
        self._config = config
        self._catalog = config.catalog
        #: records a template instance's use (raises TooManyChannels past max_channels)
        self._use_instance = use_instance
        self._backplane = backplane
        self._rooms = rooms
        self._outbox = outbox
        self._recovery = recovery
        self._throttler = throttler
        self._timestamp = timestamp
        #: channel -> connections subscribed or subscribing here (the backplane watches
        #: the channels in use)
        self._channel_use: Counter[str] = Counter()

    async def subscribe(
        self,
        conn: Connection,
        requests: Sequence[SubRequest],
        reply: Callable[[Reply], ControlMessage],
        hooks: Mapping[str, InitialHook],
        positions: bool,
    ) -> None:
        """See :meth:`Hub.subscribe`."""
        resolved = {req.channel: self._catalog.resolve(req.channel) for req in requests}
        for target in resolved.values():
            if target.is_instance:
                self._use_instance(target)  # before anything changes: TooManyChannels
        where: dict[str, str] = {}
        if positions:
            # Read before the subscription can see any event: an event delivered to it is
            # newer than its position, so a resume from the position never skips one.
            for req in requests:
                position = await self._backplane.position(req.channel)
                if position is not None:
                    where[req.channel] = str(position)
        warmers: dict[str, Warming] = {}
        for req in requests:
            self._rooms.remove(conn, req.channel)
            warmers[req.channel] = self._recovery.start(conn, req.channel, req.filter)
            if req.channel not in conn.channels:
                self._join(req.channel)
            conn.channels[req.channel] = req.filter
        try:
            found = await self._set_up(requests, warmers, hooks, resolved)
        except BaseException:  # the client left (cancelled) or a backplane failed
            self._abandon(conn, requests)
            raise
        # Commit: synchronous from here, so no event can slip between the parts.
        if conn.state is not OPEN:
            self._abandon(conn, requests)
            return
        self._commit(conn, requests, warmers, found, reply, where if positions else None)

    async def _set_up(
        self,
        requests: Sequence[SubRequest],
        warmers: Mapping[str, Warming],
        hooks: Mapping[str, InitialHook],
        resolved: Mapping[str, Resolved],
    ) -> _SetUp:
        """Read each channel's replay or initial state (the live events are held)."""
        backplane, found = self._backplane, _SetUp()
        for req in requests:
            # From here on, every event of the channel reaches the warming entry.
            await backplane.ready(req.channel)
        for req in requests:
            channel, w = req.channel, warmers[req.channel]
            if req.since is not None:
                replay = await backplane.since(channel, req.since)
                found.recovered[channel] = replay is not None
                if replay is not None:
                    found.replays[channel] = [e for e in replay if w.match(e)]
            if found.recovered.get(channel):
                continue  # the client has the state, and gets what it missed
            target = resolved[channel]
            hook = hooks.get(channel) or hooks.get(target.key)
            if hook is not None:
                try:
                    state = await hook(target.params)
                    if state is not None:  # None: nothing to send
                        found.initials[channel] = encode(
                            InitialState(channel=channel, timestamp=self._timestamp(), data=state)
                        )
                except Exception as e:
                    logger.exception("initial_state hook of channel %r failed", channel)
                    found.failures.append((channel, f"{type(e).__name__}: {e}"[:200]))
            elif target.spec.initial == "last":
                last = await backplane.last(channel, w.match)
                if last is not None:
                    found.initials[channel] = last
        return found

    def _commit(
        self,
        conn: Connection,
        requests: Sequence[SubRequest],
        warmers: Mapping[str, Warming],
        found: _SetUp,
        reply: Callable[[Reply], ControlMessage],
        where: dict[str, str] | None,
    ) -> None:
        """Send the reply, then per channel its initial state, replay and held events,
        and put ``conn`` in the rooms: in one go, without yielding."""
        outbox, send = self._outbox, self._outbox.send
        for req in requests:
            self._recovery.stop(conn, req.channel)
        ts = self._timestamp()
        channels = [req.channel for req in requests]
        recovered = found.recovered or msgspec.UNSET
        send(conn, reply(Reply(ts, channels, recovered, msgspec.UNSET if where is None else where)))
        for channel, error in found.failures:
            message = f"the initial state of {channel!r} could not be computed ({error})"
            data = ErrorData(code="initial_state_failed", message=message)
            send(conn, InBandError(timestamp=ts, data=data))
        for req in requests:
            channel, pending = req.channel, warmers[req.channel].pending
            initial = found.initials.get(channel)
            if isinstance(initial, Event):
                # An event that arrived during set-up is newer: it is delivered instead.
                if initial_is_current(initial, pending):
                    send(conn, InitialState(channel=channel, timestamp=ts, data=initial.data))
            elif initial is not None:
                outbox.enqueue(conn, None, text_frame(initial))
            events = merge_replay(found.replays.get(channel), pending, req.since)
            # A re-subscription starts its throttling afresh (held events were for the
            # old filter); a throttled resume gets only the latest event per key.
            self._throttler.forget(conn, channel)
            f = req.filter
            if f is not None and f.interval and events:
                events = self._throttler.resume(conn, channel, f, events)
            conn.allowance += len(events)
            for event in events:
                outbox.enqueue(conn, channel, text_frame(event.payload), force=True)
            self._rooms.add(conn, channel, req.filter)

    def _abandon(self, conn: Connection, requests: Sequence[SubRequest]) -> None:
        """Drop subscriptions that were being set up."""
        for req in requests:
            self._recovery.discard(conn, req.channel)
            self._throttler.forget(conn, req.channel)
            if conn.channels.pop(req.channel, _NOT_SUBSCRIBED) is not _NOT_SUBSCRIBED:
                self._leave(req.channel)

    def unsubscribe(self, conn: Connection, channels: Sequence[str]) -> list[str]:
        """Leave ``channels``; returns those that were subscribed."""
        removed = []
        for channel in channels:
            if conn.channels.pop(channel, _NOT_SUBSCRIBED) is _NOT_SUBSCRIBED:
                continue
            self._rooms.remove(conn, channel)
            self._recovery.stop(conn, channel)
            self._throttler.forget(conn, channel)
            self._leave(channel)
            removed.append(channel)
        return removed

    def leave_all(self, conn: Connection) -> None:
        """``conn`` is gone: out of every room; events held for its set-ups are lost."""
        for channel in conn.channels:
            self._rooms.remove(conn, channel)
            self._recovery.discard(conn, channel)
            self._throttler.forget(conn, channel)
            self._leave(channel)
        conn.channels.clear()

    def report_loss(self, channel: str, count: int | None, reason: str) -> None:
        """Tell every local subscriber of ``channel`` (those being set up too) that
        events were lost before reaching this process (``count`` None: unknown)."""
        room = self._rooms.get(channel)
        conns = set(room) if room is not None else set()
        conns.update(self._recovery.table.get(channel, {}))
        message = MessagesDropped(
            timestamp=self._timestamp(),
            data=MessagesDroppedData(
                channel=channel, count=count, reason=cast("LossReason", reason)
            ),
        )
        for conn in conns:
            if conn.state is OPEN:
                self._outbox.send(conn, message)

    def in_use(self, channel: str) -> bool:
        """Whether connections here are subscribed (or subscribing) to ``channel``."""
        return channel in self._channel_use

    def _join(self, channel: str) -> None:
        self._channel_use[channel] += 1
        if self._channel_use[channel] == 1:
            self._backplane.watch(channel)

    def _leave(self, channel: str) -> None:
        self._channel_use[channel] -= 1
        if self._channel_use[channel] <= 0:
            del self._channel_use[channel]
            self._backplane.unwatch(channel)
