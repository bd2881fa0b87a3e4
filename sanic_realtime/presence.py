"""Presence: who is subscribed to a channel, per user. Pure: no I/O, no event loop.

A user is present on a channel while at least one of their connections is subscribed
to it; their connections are counted, not listed. When the last one leaves, the user
stays listed (``connections: 0``) for the channel's ``leave_delay``: a connection of the
same user that joins meanwhile (a page reload) cancels the leave, and nothing is
announced. Connections without a user are counted (``anonymous``), never listed.

:class:`PresenceTable` is the whole truth in one process (the memory backplane; with
Redis it lives in Redis, see ``backplanes/redis/presence.py``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from .events import utc_timestamp
from .protocol.server import PresenceData, PresenceUser

__all__ = ["LIST_MAX", "Member", "PresenceTable", "presence_data"]

#: Users a presence query lists at most (``truncated: true`` beyond): what one query can
#: make the server read and send is bounded however large the channel.
LIST_MAX = 1000


class Member:
    """One user present on one channel."""

    __slots__ = ("connections", "role", "since")

    def __init__(self, role: str | None, since: float, connections: int = 1) -> None:
        self.role = role
        #: When the user's first connection joined (wall clock).
        self.since = since
        #: Their connections subscribed (0 while a leave is pending).
        self.connections = connections


class _Channel:
    __slots__ = ("anonymous", "leaving", "users")

    def __init__(self) -> None:
        self.users: dict[str, Member] = {}
        #: user -> when their leave is due (their member has connections == 0)
        self.leaving: dict[str, float] = {}
        self.anonymous = 0


class PresenceTable:
    """Members per channel, with pending leaves (see the module docstring)."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        #: (due, channel, user): pending leaves, earliest first (stale entries skipped)
        self._due: list[tuple[float, str, str]] = []

    def add(self, channel: str, user_id: str | None, role: str | None, now: float) -> bool:
        """One more connection of ``user_id`` (None: anonymous) on ``channel``; True when
        it is the user's first, a join to announce (not one that cancels a leave)."""
        ch = self._channels.get(channel)
        if ch is None:
            ch = self._channels[channel] = _Channel()
        if user_id is None:
            ch.anonymous += 1
            return False
        member = ch.users.get(user_id)
        if member is None:
            ch.users[user_id] = Member(role, now)
            return True
        member.connections += 1
        ch.leaving.pop(user_id, None)  # back within the delay: no leave, no join
        return False

    def remove(self, channel: str, user_id: str | None, now: float, delay: float) -> float | None:
        """One connection fewer; the time its user's leave is due when it was their last
        (see :meth:`due`), else None."""
        ch = self._channels.get(channel)
        if ch is None:
            return None
        if user_id is None:
            ch.anonymous = max(0, ch.anonymous - 1)
            self._drop_if_empty(channel, ch)
            return None
        member = ch.users.get(user_id)
        if member is None or member.connections <= 0:
            return None
        member.connections -= 1
        if member.connections:
            return None
        at = now + delay
        ch.leaving[user_id] = at
        heapq.heappush(self._due, (at, channel, user_id))
        return at

    def due(self, now: float) -> list[tuple[str, str, str | None]]:
        """The leaves due by ``now`` (channel, user, role), removed from the table."""
        out: list[tuple[str, str, str | None]] = []
        heap = self._due
        while heap and heap[0][0] <= now:
            at, channel, user_id = heapq.heappop(heap)
            ch = self._channels.get(channel)
            if ch is None or ch.leaving.get(user_id) != at:
                continue  # cancelled (the user came back), or a later leave is pending
            del ch.leaving[user_id]
            member = ch.users.pop(user_id)
            out.append((channel, user_id, member.role))
            self._drop_if_empty(channel, ch)
        return out

    def next_due(self) -> float | None:
        """When the earliest pending leave is due (None: none pending)."""
        return self._due[0][0] if self._due else None

    def _drop_if_empty(self, channel: str, ch: _Channel) -> None:
        if not ch.users and not ch.anonymous:
            del self._channels[channel]

    # ------------------------------------------------------------------ reading

    def members(self, channel: str) -> dict[str, Member]:
        ch = self._channels.get(channel)
        return {} if ch is None else ch.users

    def anonymous(self, channel: str) -> int:
        ch = self._channels.get(channel)
        return 0 if ch is None else ch.anonymous

    def counts(self) -> Iterator[tuple[str, int]]:
        """(channel, users present) for every channel with someone present."""
        for channel, ch in self._channels.items():
            if ch.users:
                yield channel, len(ch.users)

    def snapshot(self, channel: str, listed: bool, limit: int = LIST_MAX) -> PresenceData:
        return presence_data(
            ((u, m.role, m.connections, m.since) for u, m in self.members(channel).items()),
            len(self.members(channel)),
            self.anonymous(channel),
            listed,
            limit,
        )


def presence_data(
    users: Iterable[tuple[str, str | None, int, float]],
    count: int,
    anonymous: int,
    listed: bool,
    limit: int = LIST_MAX,
) -> PresenceData:
    """The ``presence`` reply's data from (user, role, connections, since) entries:
    at most ``limit`` users, sorted by user id; none unless ``listed``."""
    if not listed:
        return PresenceData(users=None, count=count, anonymous=anonymous)
    rows = heapq.nsmallest(limit, users)
    listed_users = [
        PresenceUser(user_id=u, role=role, connections=n, since=utc_timestamp(since))
        for u, role, n, since in rows
    ]
    data = PresenceData(users=listed_users, count=count, anonymous=anonymous)
    if count > len(listed_users):
        data.truncated = True
    return data
