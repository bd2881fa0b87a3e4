"""The in-memory backplane: one process, history in a ring per channel.

Ids carry a random epoch chosen at start-up, so a client resuming with an id from an
earlier run of the server is told ``recovered: false`` rather than replayed the wrong
events.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..config import HistoryConfig
from ..events import NO_ID, Event, EventId
from ..history import ChannelHistory
from ..protocol.server import Sender
from .base import Backplane

__all__ = ["MemoryBackplane", "new_epoch"]

_ALPHABET = string.ascii_lowercase + string.digits


def new_epoch(length: int = 4) -> str:
    """``length`` (at most 12) random base-36 characters, e.g. ``k3x9``: digits of 64
    random bits (``os.urandom``; the Redis backplane makes one per publish, so it is
    cheap: about 1 µs)."""
    n = int.from_bytes(os.urandom(8), "big")
    chars = []
    for _ in range(length):
        n, digit = divmod(n, 36)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


class MemoryBackplane(Backplane):
    kind = "memory"

    def __init__(
        self,
        histories: Mapping[str, HistoryConfig],
        *,
        epoch: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.epoch = epoch or new_epoch()
        self._clock = clock
        self._configs = histories
        #: the channels that exist from the start (iterating ``histories`` gives them)
        self._static = frozenset(histories)
        self._histories = {
            channel: ChannelHistory(self.epoch, cfg.size, cfg.ttl, cfg.initial_scan)
            for channel, cfg in histories.items()
        }
        #: ticket -> (expires at, value); expired ones are swept as new ones arrive.
        self._tickets: dict[str, tuple[float, bytes]] = {}
        self._ticket_sweep = 0.0

    async def stop(self) -> None:
        """Forget history and tickets, and take a new epoch: served again in the same
        process (one test after another), the app starts as a new process would, and a
        client resuming with an id of the earlier run is told ``recovered: false``."""
        self.epoch = new_epoch()
        self._histories = {
            channel: ChannelHistory(self.epoch, cfg.size, cfg.ttl, cfg.initial_scan)
            for channel, cfg in self._configs.items()
        }
        self._tickets.clear()
        self.reset_presence()

    def history(self, channel: str) -> ChannelHistory:
        """The channel's history; a template instance's is made at its first use, with an
        epoch of its own, so that the ids of an instance forgotten and used again are
        never mistaken for the earlier ones."""
        history = self._histories.get(channel)
        if history is None:
            cfg = self._configs[channel]
            history = ChannelHistory(new_epoch(), cfg.size, cfg.ttl, cfg.initial_scan)
            self._histories[channel] = history
        return history

    def forget(self, channel: str) -> None:
        if channel not in self._static:
            self._histories.pop(channel, None)

    async def publish(
        self,
        channel: str,
        type: str,
        data: Any,
        *,
        user_id: str | None,
        role: str | None,
        sender: Sender | None = None,
        exclude: str | None = None,
    ) -> tuple[Event, int]:
        history = self.history(channel)
        # Encoding happens in Event(); if data cannot be encoded, no id is used up.
        event = Event(
            channel,
            type,
            history.next_id(),
            self._clock(),
            data,
            user_id=user_id,
            role=role,
            exclude=exclude,
            sender=sender,
        )
        history.append(event)
        return event, self.deliver(event)

    async def transmit(
        self, channel: str, type: str, data: Any, *, sender: Sender, exclude: str | None
    ) -> int:
        event = Event(channel, type, NO_ID, self._clock(), data, exclude=exclude, sender=sender)
        return self.deliver(event)

    async def since(self, channel: str, since: EventId) -> list[Event] | None:
        return self.history(channel).since(since, self._clock())

    async def position(self, channel: str) -> EventId | None:
        history = self.history(channel)
        return EventId(history.epoch, history.top)

    async def last(self, channel: str, match: Callable[[Event], bool]) -> Event | None:
        return self.history(channel).last(match, self._clock())

    async def put_ticket(self, ticket: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        if now >= self._ticket_sweep:  # at most once a second: O(tickets) each time
            self._tickets = {k: v for k, v in self._tickets.items() if v[0] > now}
            self._ticket_sweep = now + 1.0
        self._tickets[ticket] = (now + ttl, value)

    async def peek_ticket(self, ticket: str) -> bytes | None:
        entry = self._tickets.get(ticket)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    async def take_ticket(self, ticket: str) -> bytes | None:
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]
