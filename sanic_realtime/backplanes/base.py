"""The backplane interface: where ids and history live, and how events reach every
process. Chosen by the ``backplane`` URL (see :func:`sanic_realtime.backplanes.create`).

A backplane gives each published event its id (``epoch:offset``, strictly increasing
per channel), keeps history for resume, and hands every event of a channel in use here,
its own and other processes', to this process's hub (:class:`Local`), in id order.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Protocol

from ..events import Event, EventId

__all__ = ["Backplane", "Local"]


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


class Backplane(abc.ABC):
    #: Shown by the health route.
    kind: str = "?"

    def __init__(self) -> None:
        self._local: Local | None = None

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
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> tuple[Event, int]:
        """Give the event its id, record it, deliver it everywhere. Returns the event and
        the number of this process's recipients. Raises ``ServerUnavailable`` when the
        event could not be published (then no subscriber anywhere gets it)."""

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
