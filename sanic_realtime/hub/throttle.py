"""Per-subscription throttling (``?interval=``, a channel's ``throttle``): a throttled
subscriber gets at most one event per conflation key per interval, always the latest,
in publish order. What is replaced while held is skipped on purpose (the subscriber
asked for the latest, at most once per interval).

:class:`Throttle` is one subscription's state and :func:`conflate` the pure "latest per
key" rule; :class:`Throttler` applies them for a hub: it queues through the outbox's
``enqueue`` and releases held events with loop timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..events import Event
from ..filters import Filter
from ..framing import text_frame
from .connection import OPEN, Connection

__all__ = ["Throttle", "Throttler", "conflate"]

Enqueue = Callable[[Connection, str, bytes], bool]


class Throttle:
    """One throttled subscription (a connection's channel): when it last got an event,
    and the latest event per conflation key held until its interval has passed."""

    __slots__ = ("last", "pending", "timer")

    def __init__(self, last: float = float("-inf")) -> None:
        self.last = last
        #: conflation key -> newest event, in the order they arrived (publish order).
        self.pending: dict[Any, Event] = {}
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending.clear()


def conflate(events: Iterable[Event], key: Callable[[Any], Any]) -> list[Event]:
    """The newest event per conflation key (``key`` of its data), ordered as the kept
    events were published. Pure."""
    latest: dict[Any, Event] = {}
    for event in events:
        k = key(event.data)
        latest.pop(k, None)
        latest[k] = event
    return list(latest.values())


class Throttler:
    """Throttled fan-out and release for one hub. ``limit``: more distinct keys held
    than this (the buffer size) releases them at once, and the outbox's own bound and
    slow_client policy then apply."""

    def __init__(self, enqueue: Enqueue, limit: int, monotonic: Callable[[], float]) -> None:
        self._enqueue = enqueue
        self._limit = limit
        self._monotonic = monotonic

    def deliver(
        self, members: Mapping[Connection, None], f: Filter, event: Event, targeted: bool
    ) -> int:
        """Fan-out to a group of throttled subscribers: each gets the event now if its
        interval has passed and it has nothing held, else the event is held, replacing
        the held one with the same conflation key, until the interval has passed.
        Returns how many got or hold it."""
        count = 0
        channel = event.channel
        now = self._monotonic()
        key = f.conflation_key(event.data)
        interval = f.interval
        frame: bytes | None = None
        for conn in members:
            if conn.state is not OPEN or (targeted and not conn.accepts(event)):
                continue
            throttles = conn.throttles
            if throttles is None:
                throttles = conn.throttles = {}
            state = throttles.get(channel)
            if state is None:
                state = throttles[channel] = Throttle()
            pending = state.pending
            if not pending and now - state.last >= interval:
                state.last = now
                if frame is None:
                    frame = text_frame(event.payload)
                if self._enqueue(conn, channel, frame):
                    count += 1
                continue
            pending.pop(key, None)  # the replacement goes last: publish order
            pending[key] = event
            count += 1
            if len(pending) > self._limit:
                # More distinct keys than a buffer holds: release now (the buffer's own
                # bound and slow_client policy then apply).
                self.release(conn, channel)
            elif state.timer is None:
                delay = max(state.last + interval - now, 0.0)
                state.timer = asyncio.get_running_loop().call_later(
                    delay, self.release, conn, channel
                )
        return count

    def release(self, conn: Connection, channel: str) -> None:
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
        if conn.state is not OPEN or channel not in conn.channels or not events:
            return
        state.last = self._monotonic()
        for event in events:
            self._enqueue(conn, channel, text_frame(event.payload))

    def forget(self, conn: Connection, channel: str) -> None:
        """``conn`` left ``channel`` (or subscribes afresh): its held events are lost."""
        throttles = conn.throttles
        if throttles is not None:
            state = throttles.pop(channel, None)
            if state is not None:
                state.cancel()
            if not throttles:
                conn.throttles = None

    def resume(self, conn: Connection, channel: str, f: Filter, events: list[Event]) -> list[Event]:
        """A throttled subscription starts with ``events`` (a replay and what arrived
        during set-up): it gets only the latest per key, and its interval starts now."""
        events = conflate(events, f.conflation_key)
        conn.throttles = {**(conn.throttles or {}), channel: Throttle(self._monotonic())}
        return events
