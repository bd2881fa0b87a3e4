"""What ``latest()`` and ``recent()`` read: per channel the newest message, the newest of
each type, and the last events received."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from .event import INITIAL_STATE, Event

__all__ = ["EventCache", "data_matches"]


def data_matches(data: Any, filters: Mapping[str, Any]) -> bool:
    """``recent()``'s test: each key of ``filters`` names a field of ``data``; the value is
    equal, or ``in`` a list/tuple/set given, or makes a given function return true."""
    if not filters:
        return True
    if not isinstance(data, Mapping):
        return False
    for key, want in filters.items():
        if key not in data:
            return False
        value = data[key]
        if callable(want):
            if not want(value):
                return False
        elif isinstance(want, list | tuple | set | frozenset):
            if value not in want:
                return False
        elif value != want:
            return False
    return True


class EventCache:
    """The messages a client keeps for ``latest()`` and ``recent()``."""

    def __init__(self) -> None:
        self._latest: dict[str, Event] = {}
        self._latest_typed: dict[tuple[str, str], Event] = {}
        self._recent: dict[str, deque[Event]] = {}

    def keep(self, event: Event, size: int) -> None:
        """A published event of ``event.channel``: one of the last ``size`` kept."""
        channel = event.channel
        assert channel is not None
        kept = self._recent.get(channel)
        if kept is None:
            kept = self._recent[channel] = deque(maxlen=size)
        kept.append(event)

    def note(self, event: Event) -> None:
        """Any message dispatched: an event (client messages included) or an
        ``initial_state`` becomes its channel's latest (and the latest of its type)."""
        channel = event.channel
        if channel is not None and (event.is_event or event.type == INITIAL_STATE):
            self._latest[channel] = event
            self._latest_typed[(channel, event.type)] = event

    def latest(self, channel: str, type: str | None = None) -> Event | None:
        if type is None:
            return self._latest.get(channel)
        return self._latest_typed.get((channel, type))

    def recent(self, channel: str, n: int, filters: Mapping[str, Any]) -> list[Event]:
        kept = self._recent.get(channel)
        if not kept or n <= 0:
            return []
        found: list[Event] = []
        for event in reversed(kept):
            if data_matches(event.data, filters):
                found.append(event)
                if len(found) == n:
                    break
        found.reverse()
        return found
