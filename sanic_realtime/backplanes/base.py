"""The backplane interface: where ids and history live, and how events reach every
process. Chosen by the ``backplane`` URL (see :func:`sanic_realtime.backplanes.create`).

A backplane gives each published event its id (``epoch:offset``, strictly increasing
per channel), keeps history for resume, and hands every event of a channel in use here,
its own and other processes', to this process's hub (:class:`Local`), in id order.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ..config import PresenceConfig
from ..events import Event, EventId, utc_timestamp
from ..exceptions import ServerUnavailable
from ..presence import PresenceTable
from ..protocol.server import (
    PresenceChangeData,
    PresenceData,
    PresenceJoin,
    PresenceLeave,
    Sender,
    encode,
)

__all__ = ["Backplane", "Local"]

_check_encoder = msgspec.json.Encoder()


class Local(Protocol):
    """What a backplane needs from this process's hub."""

    def deliver(self, event: Event) -> int:
        """Queue ``event`` for the matching local subscribers; return how many."""
        ...

    def report_loss(self, channel: str, count: int | None, reason: str) -> None:
        """Tell ``channel``'s local subscribers that ``count`` events (None: an unknown
        number) could not be delivered."""
        ...

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        """Close this process's connections of ``user_id`` / holding ``role``."""
        ...

    def stats(self) -> dict[str, Any]:
        """This process's figures (the admin stats route's shape)."""
        ...

    def announce(self, channel: str, payload: bytes) -> int:
        """Send ``payload`` (a control message of the channel: presence_join or
        presence_leave) to every local subscriber of ``channel``; return how many."""
        ...


class Backplane(abc.ABC):
    #: Shown by the health route.
    kind: str = "?"

    def __init__(self) -> None:
        self._local: Local | None = None
        #: In one process, the whole presence (the Redis backplane keeps it in Redis).
        self._presence = PresenceTable()
        self._presence_timer: asyncio.TimerHandle | None = None
        self._presence_at = 0.0
        #: channel -> its presence settings (set by the hub), for leaves announced later
        self._catalog: Callable[[str], PresenceConfig | None] | None = None

    def attach(self, local: Local) -> None:
        """Called once by the hub before :meth:`start`."""
        self._local = local

    @property
    def local(self) -> Local:
        if self._local is None:
            raise RuntimeError("backplane used before a hub was attached")
        return self._local

    def deliver(self, event: Event) -> int:
        return self.local.deliver(event)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (before the server starts accepting)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect and release everything."""

    # ------------------------------------------------------------ channels in use here

    def watch(self, channel: str) -> None:  # noqa: B027 - optional hook
        """This process now has subscribers of ``channel``: start receiving its events.
        The hub calls it when the first local subscriber arrives."""

    def unwatch(self, channel: str) -> None:  # noqa: B027 - optional hook
        """The last local subscriber of ``channel`` left."""

    def forget(self, channel: str) -> None:  # noqa: B027 - optional hook
        """The hub no longer keeps the template instance ``channel`` (idle, no local
        subscriber, its history expired): release what is kept for it here."""

    async def ready(self, channel: str) -> None:  # noqa: B027 - optional hook
        """Return once every event published from now on reaches :meth:`Local.deliver`
        (after :meth:`watch`). Raises ``ServerUnavailable`` if it cannot be promised."""

    # ------------------------------------------------------------ publish and history

    @abc.abstractmethod
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
        """Give the event its id, record it, deliver it everywhere. Returns the event and
        the number of this process's recipients. Raises ``ServerUnavailable`` when the
        event could not be published (then no subscriber anywhere gets it). ``sender``
        (a client message's ``from``) is in the envelope; ``exclude`` names a connection
        that does not get it."""

    async def publish_counted(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> tuple[Event, int, bool]:
        """:meth:`publish`, with the recipients of every process (``count="cluster"``)
        and whether all of them answered. One process: its own count."""
        event, count = await self.publish(channel, type, data, user_id=user_id, role=role)
        return event, count, True

    async def publish_many(
        self, channel: str, events: list[tuple[str, Any]], *, user_id: str | None, role: str | None
    ) -> list[tuple[Event, int]]:
        """Publish ``events`` (type, data) in order, each as :meth:`publish` does; the
        results in order. A ``TypeError`` (data that cannot be encoded) publishes none;
        ``ServerUnavailable`` says how many went out before the failure."""
        for _type, data in events:
            _check_encoder.encode(data)  # TypeError before anything is published
        results = []
        for type, data in events:
            try:
                results.append(await self.publish(channel, type, data, user_id=user_id, role=role))
            except ServerUnavailable as e:
                raise ServerUnavailable(
                    f"{len(results)} of {len(events)} events were published: {e.message}",
                    code=e.code,
                ) from None
        return results

    @abc.abstractmethod
    async def transmit(
        self, channel: str, type: str, data: Any, *, sender: Sender, exclude: str | None
    ) -> int:
        """Deliver a client message not kept in history everywhere: no id (``"id":
        null``), no history. Returns this process's recipients."""

    @abc.abstractmethod
    async def since(self, channel: str, since: EventId) -> list[Event] | None:
        """Exactly the events after ``since``, or None when they cannot all be given.
        Reads no more than the history holds after ``since``, and nothing of the events
        when it answers None (another epoch, an offset beyond the newest, trimmed or
        expired)."""

    @abc.abstractmethod
    async def position(self, channel: str) -> EventId | None:
        """The id of the channel's newest event (offset 0: none yet), from which ``since``
        gives every later event; None when it cannot be told (Redis: no history yet)."""

    @abc.abstractmethod
    async def last(self, channel: str, match: Callable[[Event], bool]) -> Event | None:
        """The newest recorded event of ``channel`` for which ``match`` is true, among its
        newest ``history.initial_scan`` unexpired events (None when none of them matches):
        what a subscribe can make the server read is bounded."""

    @abc.abstractmethod
    async def put_ticket(self, ticket: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` under ``ticket`` for ``ttl`` seconds (every process must see it)."""

    @abc.abstractmethod
    async def peek_ticket(self, ticket: str) -> bytes | None:
        """The value of an unexpired ``ticket``, left in place; None if there is none."""

    @abc.abstractmethod
    async def take_ticket(self, ticket: str) -> bytes | None:
        """Remove and return the value of an unexpired ``ticket``; None if there is none.
        Atomic: of two concurrent takers, one gets None (single use)."""

    # ------------------------------------------------------------ presence

    def presence_add(
        self, channel: str, user_id: str | None, role: str | None, settings: PresenceConfig
    ) -> None:
        """A connection of ``user_id`` (None: anonymous) subscribed to ``channel``: a
        join is announced if it is the user's first anywhere. Never blocks."""
        now = time.time()
        if self._presence.add(channel, user_id, role, now) and settings.events:
            assert user_id is not None
            self.announce_change(PresenceJoin, channel, user_id, role, now)

    def presence_remove(self, channel: str, user_id: str | None, settings: PresenceConfig) -> None:
        """That connection left ``channel``: when it was the user's last anywhere, their
        leave is announced after ``settings.leave_delay`` unless they come back."""
        now = time.time()
        at = self._presence.remove(channel, user_id, now, settings.leave_delay)
        if at is not None:
            self._schedule_leaves(at)

    async def presence(self, channel: str, listed: bool) -> PresenceData:
        """Who is on ``channel``, on every worker (at most ``LIST_MAX`` users listed)."""
        return self._presence.snapshot(channel, listed)

    def presence_counts(self) -> dict[str, int]:
        """Users present per channel, as this process knows them."""
        return dict(self._presence.counts())

    def announce_change(
        self,
        kind: type[PresenceJoin] | type[PresenceLeave],
        channel: str,
        user_id: str,
        role: str | None,
        now: float,
    ) -> None:
        message = kind(
            channel=channel,
            timestamp=utc_timestamp(now),
            data=PresenceChangeData(user_id=user_id, role=role),
        )
        self.local.announce(channel, encode(message))

    def _schedule_leaves(self, at: float) -> None:
        """Look for due leaves at ``at`` (wall clock), unless a look is due before."""
        if self._presence_timer is not None:
            if self._presence_at <= at:
                return
            self._presence_timer.cancel()
        self._presence_at = at
        delay = max(0.0, at - time.time())
        self._presence_timer = asyncio.get_running_loop().call_later(delay, self._leaves_due)

    def _leaves_due(self) -> None:
        self._presence_timer = None
        now = time.time()
        catalog = self._catalog
        for channel, user_id, role in self._presence.due(now):
            settings = catalog(channel) if catalog is not None else None
            if settings is None or settings.events:
                self.announce_change(PresenceLeave, channel, user_id, role, now)
        upcoming = self._presence.next_due()
        if upcoming is not None:
            self._schedule_leaves(upcoming)

    def reset_presence(self) -> None:
        """Forget every member and pending leave (at stop)."""
        if self._presence_timer is not None:
            self._presence_timer.cancel()
            self._presence_timer = None
        self._presence = PresenceTable()

    def presence_settings(self, lookup: Callable[[str], PresenceConfig | None]) -> None:
        """How to find a channel's presence settings (the hub's catalog)."""
        self._catalog = lookup

    # ------------------------------------------------------------ cluster-wide

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        """Close the connections of ``user_id`` / holding ``role`` in every process.
        Returns how many this process closed."""
        return await self.local.disconnect(user_id=user_id, role=role, reason=reason)

    async def stats(self) -> dict[str, Any]:
        """The figures of every process, summed (``workers``: how many reported)."""
        figures = self.local.stats()
        figures["workers"] = 1
        return figures

    @property
    def available(self) -> bool:
        """False while the backplane cannot publish (new connections are refused)."""
        return True

    def health(self) -> dict[str, Any]:
        """``{"kind": ..., "ok": bool, ...}`` for the health route."""
        return {"kind": self.kind, "ok": self.available}

    # ------------------------------------------------------------ cluster-wide limits

    async def claim_user_slot(self, user_id: str, limit: int) -> int | None:
        """Take one of ``user_id``'s ``limit`` connection slots across every worker
        (``connection_limits: cluster``): the slots the user holds after, or None if all
        are taken. ``ServerUnavailable`` if the count cannot be read. This default
        counts nothing (0): the per-process count applies."""
        return 0

    def release_user_slot(self, user_id: str) -> None:
        """Give back a slot :meth:`claim_user_slot` took (not awaited: never fails)."""
        return None
