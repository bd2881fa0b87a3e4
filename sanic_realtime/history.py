"""Per-channel history for resume (the memory side). Pure: time is passed in.

A :class:`ChannelHistory` gives out ids (``epoch:offset``, offsets growing by one per
event) and keeps the last ``size`` events, each for at most ``ttl`` seconds. ``last``
looks at no more than the newest ``initial_scan`` of them.
``since(id)`` answers all-or-nothing: either exactly the events after ``id`` (which
may be none), or ``None`` when history no longer reaches back that far, or the id
belongs to another epoch (another server run). A Redis stream holds the same ids:
see the scale-out issue and docs/protocol.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice

from .events import Event, EventId

__all__ = ["ChannelHistory"]


class ChannelHistory:
    __slots__ = ("_events", "epoch", "initial_scan", "size", "top", "ttl")

    def __init__(self, epoch: str, size: int, ttl: float, initial_scan: int = 100) -> None:
        self.epoch = epoch
        self.size = size
        self.ttl = ttl
        self.initial_scan = initial_scan
        #: The offset of the newest event given an id (0: none yet).
        self.top = 0
        self._events: deque[Event] = deque(maxlen=size)

    def next_id(self) -> EventId:
        return EventId(self.epoch, self.top + 1)

    def append(self, event: Event) -> None:
        """Record ``event``, whose id must be :meth:`next_id`."""
        if event.id != self.next_id():
            raise ValueError(f"event id {event.id} is not the next id {self.next_id()}")
        self.top = event.id.offset
        if self.size:
            self._events.append(event)

    def _prune(self, now: float) -> None:
        horizon = now - self.ttl
        events = self._events
        while events and events[0].time < horizon:
            events.popleft()

    def since(self, since: EventId, now: float) -> list[Event] | None:
        """Exactly the events after ``since``, or None if they cannot all be given."""
        if since.epoch != self.epoch or since.offset > self.top:
            return None
        if since.offset == self.top:
            return []
        self._prune(now)
        events = self._events
        first = events[0].id.offset if events else self.top + 1
        if first > since.offset + 1:
            return None
        return list(islice(events, since.offset + 1 - first, None))

    def last(self, match: Callable[[Event], bool], now: float) -> Event | None:
        """The newest kept event for which ``match`` is true, among the newest
        ``initial_scan`` (``match`` is called at most that many times)."""
        self._prune(now)
        for event in islice(reversed(self._events), self.initial_scan):
            if match(event):
                return event
        return None

    def __len__(self) -> int:
        return len(self._events)
