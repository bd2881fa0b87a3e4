"""History reads: the events after an id (resume), the newest matching event
(``initial: last``), and where a channel's history stands.

What a client can make the server read is bounded: ``since.lua`` checks run id, epoch,
offset, trim and ttl before any event is read, and ``last`` looks at no more than
``history.initial_scan`` events, newest first, in pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ...config import HistoryConfig
from ...events import Event, EventId
from . import scripts
from .codec import decode_entries
from .connection import Connection, OnError
from .keys import Keys

__all__ = ["LAST_FIRST_PAGE", "LAST_PAGE", "History"]

#: ``initial: last`` reads the newest events in pages: a first small one (the newest
#: events usually match), then pages of LAST_PAGE, up to ``history.initial_scan`` events.
LAST_FIRST_PAGE = 10
LAST_PAGE = 100


class History:
    """The history reads of the backplane interface, on the client with one retry."""

    def __init__(
        self,
        conn: Connection,
        keys: Keys,
        histories: Mapping[str, HistoryConfig],
        *,
        clock: Callable[[], float],
    ) -> None:
        self._conn = conn
        self._meta, self._stream = keys.meta, keys.stream
        self._histories = histories
        self._clock = clock
        self._unavailable = conn.errors(OnError.UNAVAILABLE)
        self._since_script: Any = None
        self._meta_script: Any = None

    def start(self) -> None:
        """After the clients are made."""
        self._since_script = self._conn.redis.register_script(scripts.SINCE)
        self._meta_script = self._conn.redis.register_script(scripts.META)

    async def position_of(self, channel: str) -> tuple[str, int]:
        """The channel's (epoch, last offset); ("", 0) when it has no history of this Redis
        process (none yet, or from before Redis restarted: the next publish starts a new
        epoch at offset 1). Redis errors are the caller's to handle."""
        reply = await self._meta_script(
            keys=[self._meta(channel)], args=[], client=self._conn.redis
        )
        if not reply or not reply[2]:
            return "", 0
        return reply[0].decode(), int(reply[1])

    async def since(self, channel: str, since: EventId) -> list[Event] | None:
        horizon = self._clock() - self._histories[channel].ttl
        with self._unavailable:
            reply = await self._since_script(
                keys=[self._meta(channel), self._stream(channel)],
                args=[since.epoch, str(since.offset), repr(horizon)],
                client=self._conn.redis,
            )
        self._conn.ok()
        if reply is None:
            return None  # the script found the events cannot all be given (see since.lua)
        top_b, entries = reply
        top = int(top_b)
        if since.offset >= top:
            return []
        events = [e for _, e in decode_entries(entries) if e.offset <= top]
        want = top - since.offset
        if len(events) != want or events[0].offset != since.offset + 1:
            return None  # trimmed (size) or expired meanwhile, or an entry is undecodable
        if events[0].time < horizon:
            return None  # older than history.ttl, as the memory backplane would say
        return events

    async def position(self, channel: str) -> EventId | None:
        with self._unavailable:
            epoch, top = await self.position_of(channel)
        self._conn.ok()
        return EventId(epoch, top) if epoch else None

    async def last(self, channel: str, match: Callable[[Event], bool]) -> Event | None:
        history = self._histories[channel]
        horizon = self._clock() - history.ttl
        left = history.initial_scan
        count = min(left, LAST_FIRST_PAGE)
        upper = "+"
        with self._unavailable:
            while count > 0:
                entries = await self._conn.redis.xrevrange(
                    self._stream(channel), max=upper, min="-", count=count
                )
                for _, event in decode_entries(entries):
                    if event.time < horizon:
                        return None
                    if match(event):
                        return event
                if len(entries) < count:
                    return None  # the oldest kept event was read
                left -= count
                count = min(left, LAST_PAGE)
                upper = "(" + entries[-1][0].decode()
        return None  # none of the newest initial_scan events matches
