"""The queue behind ``async for``: the messages waiting for a loop."""

from __future__ import annotations

import asyncio
from collections import deque

from .event import Event, logger

__all__ = ["Feed"]


class Feed:
    """The messages waiting for ``async for``, kept from the moment the client starts.

    While a loop is running, a full feed makes the reader wait (a slow loop slows reading;
    the server holds events or, past its buffer, closes with 4008 and the client resumes).
    While none is, the feed keeps the newest ``limit`` messages for the next loop, and
    counts the older ones it drops (a client used only through ``on()`` must not stall).
    """

    def __init__(self, limit: int) -> None:
        self._items: deque[Event] = deque()
        self._limit = max(limit, 1)
        self._wake_get: asyncio.Future[None] | None = None
        self._wake_put: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        #: running ``async for`` loops
        self.consumers = 0
        #: messages dropped while no loop was running
        self.dropped = 0

    @staticmethod
    def _wake(future: asyncio.Future[None] | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    @property
    def blocking(self) -> bool:
        """A put would wait for a loop to take messages."""
        return len(self._items) >= self._limit and self.consumers > 0 and not self._ended

    async def put(self, event: Event) -> None:
        while self.blocking:
            self._wake_put = asyncio.get_running_loop().create_future()
            await self._wake_put
        if self._ended:
            return
        if len(self._items) >= self._limit:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1:
                logger.warning(
                    "realtime client: no `async for` loop is reading; keeping the newest "
                    "%d messages for the next one (use on() callbacks if you do not iterate)",
                    self._limit,
                )
        self._items.append(event)
        self._wake(self._wake_get)

    def end(self, error: BaseException | None) -> None:
        """No more messages: loops take what is left, then stop (raising ``error``)."""
        if not self._ended:
            self._ended, self._error = True, error
        self._wake(self._wake_get)
        self._wake(self._wake_put)

    def leave(self) -> None:
        self.consumers -= 1
        self._wake(self._wake_put)  # with no loop left, the reader stops waiting

    async def get(self) -> Event:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wake_get = asyncio.get_running_loop().create_future()
            await self._wake_get
        item = self._items.popleft()
        self._wake(self._wake_put)
        return item
