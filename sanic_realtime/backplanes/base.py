"""The backplane interface: where ids and history live, and how events reach every
process. Chosen by the ``backplane`` URL (see :func:`sanic_realtime.backplanes.create`).

A backplane gives each published event its id (``epoch:offset``, strictly increasing
per channel), keeps history for resume, and calls the hub's local fan-out (``deliver``)
for every event, its own and (once there are several processes) other processes'.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from ..events import Event, EventId

__all__ = ["Backplane", "Deliver"]

#: The hub's local fan-out: queue ``event`` for matching local subscribers, return how many.
Deliver = Callable[[Event], int]


class Backplane(abc.ABC):
    #: Shown by the health route.
    kind: str = "?"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    def attach(self, deliver: Deliver) -> None:
        """Called once by the hub before :meth:`start`."""
        self._deliver = deliver

    def deliver(self, event: Event) -> int:
        if self._deliver is None:
            raise RuntimeError("backplane used before a hub was attached")
        return self._deliver(event)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect (before the server starts accepting)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect and release everything."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> tuple[Event, int]:
        """Give the event its id, record it, deliver it everywhere. Returns the event and
        the number of local recipients."""

    @abc.abstractmethod
    async def since(self, channel: str, since: EventId) -> list[Event] | None:
        """Exactly the events after ``since``, or None when they cannot all be given."""

    @abc.abstractmethod
    async def last(self, channel: str, match: Callable[[Event], bool]) -> Event | None:
        """The newest recorded event of ``channel`` for which ``match`` is true."""

    @abc.abstractmethod
    async def put_ticket(self, ticket: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` under ``ticket`` for ``ttl`` seconds (every process must see it)."""

    @abc.abstractmethod
    async def take_ticket(self, ticket: str) -> bytes | None:
        """Remove and return the value of an unexpired ``ticket``; None if there is none.
        Atomic: of two concurrent takers, one gets None (single use)."""

    def health(self) -> dict[str, Any]:
        """``{"kind": ..., "ok": bool, ...}`` for the health route."""
        return {"kind": self.kind, "ok": True}
