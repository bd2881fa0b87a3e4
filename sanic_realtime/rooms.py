"""Channel -> subscribers bookkeeping. Pure: no I/O.

A :class:`Room` groups its subscribers by filter key, so that fan-out evaluates each
distinct filter once per event and then queues for every member of the group.
Subscribers are any hashable objects (the hub's connections, or plain strings in tests).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from .filters import Filter, FilterKey

__all__ = ["Group", "Room", "Rooms"]

S = TypeVar("S", bound=Hashable)


class Group(Generic[S]):
    """Subscribers of one room that share one filter (``None``: no filter)."""

    __slots__ = ("filter", "members")

    def __init__(self, filter: Filter | None) -> None:
        self.filter = filter
        # A dict keeps insertion order and removes in O(1).
        self.members: dict[S, None] = {}


class Room(Generic[S]):
    __slots__ = ("_where", "channel", "groups")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.groups: dict[FilterKey | None, Group[S]] = {}
        self._where: dict[S, FilterKey | None] = {}

    def add(self, subscriber: S, filter: Filter | None) -> None:
        """Subscribe, replacing the subscriber's previous filter in this room."""
        self.remove(subscriber)
        key = filter.key if filter is not None else None
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(filter)
        group.members[subscriber] = None
        self._where[subscriber] = key

    def remove(self, subscriber: S) -> bool:
        key = self._where.pop(subscriber, _ABSENT)
        if key is _ABSENT:
            return False
        group = self.groups[key]  # type: ignore[index]
        del group.members[subscriber]
        if not group.members:
            del self.groups[key]  # type: ignore[arg-type]
        return True

    def filter_of(self, subscriber: S) -> Filter | None:
        return self.groups[self._where[subscriber]].filter

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
