"""Channel -> subscribers bookkeeping. Pure: no I/O.

A :class:`Room` groups its subscribers by filter key, so that fan-out evaluates each
distinct filter at most once per event and then queues for every member of the group.
Subscribers are any hashable objects (the hub's connections, or plain strings in tests).

Groups whose filter has an ``eq`` term (``component=db``, or any of ``component=db,api``)
are indexed: the room files such a group under each value of one such term, per field
(of the filter's :meth:`~sanic_realtime.filters.Filter.index_terms`, the one whose
buckets hold the fewest groups when the group is made), and an event looks its field's
text up (:func:`~sanic_realtime.filters.field_text`, the text the ``eq`` check
compares by) instead of testing every group. Only the groups found there are evaluated,
on the rest of their filter. The other groups (no filter, or no ``eq`` term) are
evaluated for every event, as before. :meth:`Room.matching` gives the groups an event
matches: the same groups, each once, as evaluating every group's filter would.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

from .filters import Filter, FilterKey, IndexTerm, field_text

__all__ = ["Group", "Room", "Rooms"]

S = TypeVar("S", bound=Hashable)

#: value text -> the groups filed under it, by filter key
Buckets = dict[str, dict[FilterKey, "Group[Any]"]]


class Group(Generic[S]):
    """Subscribers of one room that share one filter (``None``: no filter).

    ``term`` is the index term the room files the group under (None: not indexed),
    number ``position`` of the filter's ``index_terms()``; ``rest``: whether an event
    found through it must still pass the rest of the filter."""

    __slots__ = ("filter", "members", "position", "rest", "term")

    def __init__(self, filter: Filter | None, position: int | None = None) -> None:
        self.filter = filter
        # A dict keeps insertion order and removes in O(1).
        self.members: dict[S, None] = {}
        self.position = position or 0
        self.term: IndexTerm | None = None
        self.rest = False
        if filter is not None and position is not None:
            self.term = filter.index_terms()[position]
            self.rest = filter.has_rest(position)


class Room(Generic[S]):
    __slots__ = ("_index", "_plain", "_where", "channel", "groups")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        #: Every group, by filter key.
        self.groups: dict[FilterKey | None, Group[S]] = {}
        #: The groups that are not indexed: evaluated for every event.
        self._plain: dict[FilterKey | None, Group[S]] = {}
        #: field path -> value text -> the indexed groups filed under it.
        self._index: dict[tuple[str, ...], Buckets] = {}
        self._where: dict[S, FilterKey | None] = {}

    def add(self, subscriber: S, filter: Filter | None) -> None:
        """Subscribe, replacing the subscriber's previous filter in this room."""
        self.remove(subscriber)
        key = filter.key if filter is not None else None
        group = self.groups.get(key)
        if group is None:
            terms = filter.index_terms() if filter is not None else ()
            if not terms:
                group = self._plain[key] = Group(filter)
            else:
                group = Group(filter, self._choose(terms))
                path, values = terms[group.position]
                buckets = self._index.get(path)
                if buckets is None:
                    buckets = self._index[path] = {}
                for value in values:
                    bucket = buckets.get(value)
                    if bucket is None:
                        bucket = buckets[value] = {}
                    bucket[key] = group  # type: ignore[index]
            self.groups[key] = group
        group.members[subscriber] = None
        self._where[subscriber] = key

    def _choose(self, terms: tuple[IndexTerm, ...]) -> int:
        """Which of a new group's ``eq`` terms to file it under: the one whose buckets
        hold the fewest groups now, counting the new group once per value (so that an
        event finds as few groups to evaluate as possible); a tie goes to the filter's
        preferred order (fewest values first)."""
        best = 0
        best_load = -1
        for position, (path, values) in enumerate(terms):
            buckets = self._index.get(path)
            load = len(values)
            if buckets is not None:
                load += sum(len(buckets.get(value, ())) for value in values)
            if best_load < 0 or load < best_load:
                best, best_load = position, load
        return best

    def remove(self, subscriber: S) -> bool:
        key = self._where.pop(subscriber, _ABSENT)
        if key is _ABSENT:
            return False
        group = self.groups[key]  # type: ignore[index]
        del group.members[subscriber]
        if not group.members:
            del self.groups[key]  # type: ignore[arg-type]
            term = group.term
            if term is None:
                del self._plain[key]  # type: ignore[arg-type]
            else:
                path, values = term
                buckets = self._index[path]
                for value in values:
                    bucket = buckets[value]
                    del bucket[key]  # type: ignore[arg-type]
                    if not bucket:
                        del buckets[value]
                if not buckets:
                    del self._index[path]
        return True

    def matching(self, event_type: str, data: Any) -> list[Group[S]]:
        """The groups whose filter the event matches (no filter: every event), each once:
        the non-indexed groups that pass their filter, then, per indexed field, the
        groups filed under the event's value that pass the rest of theirs."""
        out: list[Group[S]] = []
        for group in self._plain.values():
            f = group.filter
            if f is None or f.matches(event_type, data):
                out.append(group)
        for path, buckets in self._index.items():
            text = field_text(data, path)
            if text is None:
                continue
            bucket = buckets.get(text)
            if bucket is None:
                continue
            for group in bucket.values():
                if not group.rest or group.filter.matches_rest(  # type: ignore[union-attr]
                    event_type, data, group.position
                ):
                    out.append(group)
        return out

    def filter_of(self, subscriber: S) -> Filter | None:
        return self.groups[self._where[subscriber]].filter

    def index_sizes(self) -> dict[tuple[str, ...], int]:
        """Per indexed field: how many values have groups filed under them."""
        return {path: len(buckets) for path, buckets in self._index.items()}

    def __contains__(self, subscriber: object) -> bool:
        return subscriber in self._where

    def __len__(self) -> int:
        return len(self._where)

    def __iter__(self) -> Iterator[S]:
        return iter(self._where)


_ABSENT: object = object()


class Rooms(Generic[S]):
    """All rooms of a hub; a room exists while it has subscribers."""

    __slots__ = ("_rooms",)

    def __init__(self) -> None:
        self._rooms: dict[str, Room[S]] = {}

    def get(self, channel: str) -> Room[S] | None:
        return self._rooms.get(channel)

    def add(self, subscriber: S, channel: str, filter: Filter | None) -> None:
        room = self._rooms.get(channel)
        if room is None:
            room = self._rooms[channel] = Room(channel)
        room.add(subscriber, filter)

    def remove(self, subscriber: S, channel: str) -> bool:
        room = self._rooms.get(channel)
        if room is None or not room.remove(subscriber):
            return False
        if not room:
            del self._rooms[channel]
        return True

    def counts(self) -> dict[str, int]:
        return {channel: len(room) for channel, room in self._rooms.items()}
