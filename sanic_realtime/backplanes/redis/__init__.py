"""The Redis backplane: every worker and host shares ids, history, tickets and figures.

The only package that imports ``redis`` (``pip install sanic-realtime[redis]``; redis-py
uses hiredis to parse replies when it is installed).

Keys and pub/sub channels, all under ``redis.prefix`` (default ``realtime``, see
:mod:`.keys`):

- ``{prefix}:{channel}:meta``   hash: ``e`` the epoch, ``s`` the last offset given out;
- ``{prefix}:{channel}:stream`` stream: the history, entry id ``<offset>-0``, field ``d``;
- ``{prefix}:ch:{channel}``     pub/sub: live events of one channel, subscribed by a
  worker only while it has subscribers of that channel;
- ``{prefix}:control``          pub/sub: cluster-wide commands (disconnect);
- ``{prefix}:node:{node}``      string: one worker's figures, refreshed every few seconds;
- ``{prefix}:ticket:{ticket}``  string: a one-time ticket, with its TTL;
- ``{prefix}:presence:...``     presence (see :mod:`.presence`).

One Lua script (``publish.lua``) assigns the offset (and, for a new history, the epoch),
appends to the stream and publishes, atomically: ids are strictly increasing across all
publishers and pub/sub carries events in id order. Each message is ``<header
JSON>\\n<envelope>`` (:mod:`.codec`).

The parts, composed by :class:`RedisBackplane`:

- :mod:`.connection`: the clients, the pub/sub listener and its reconnects, the state
  health reports, and ``RedisErrors``, what a failed command turns into;
- :mod:`.broker`: publish, watch/ready, what pub/sub delivers, gap fill from the stream;
- :mod:`.history`: resume (``since``), ``initial: last``, positions;
- :mod:`.cluster`: tickets, every worker's figures, cluster-wide disconnect;
- :mod:`.presence`: who is on a channel, per user, with per-worker heartbeats;
- :mod:`.scripts`: the Lua scripts (``*.lua`` files of this package).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from redis.exceptions import RedisError

from ...config import HistoryConfig, PresenceConfig
from ...events import Event, EventId
from ...log import logger
from ...protocol.server import PresenceData, Sender
from ..base import Backplane, Local
from ..memory import new_epoch
from .broker import READY_TIMEOUT, Broker, Publication
from .cluster import Cluster, merge_stats
from .connection import Connection, Listener, OnError, redact_url
from .history import History
from .keys import Keys
from .limits import UserSlots
from .presence import RedisPresence

__all__ = ["Publication", "RedisBackplane", "merge_stats"]

#: Times stop() cancels a backplane task that is still running, 0.5 s apart.
STOP_RETRIES = 20


class RedisBackplane(Backplane):
    kind = "redis"

    def __init__(
        self,
        url: str,
        histories: Mapping[str, HistoryConfig],
        *,
        prefix: str = "realtime",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        #: This worker, as named in message headers and figures.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{new_epoch(4)}"
        own = histories
        keys = Keys(prefix)
        self._conn = Connection(url, prefix=prefix, node=self.node)
        self._history = History(self._conn, keys, own, clock=clock)
        self._broker = Broker(self._conn, self._history, keys, own, node=self.node, clock=clock)
        self._cluster = Cluster(self._conn, keys, node=self.node)
        self._listener = Listener(
            self._conn,
            keys.control,
            self._broker,
            self._cluster.on_control,
            answers=self._broker.replies,
            on_answer=self._broker.on_answer,
        )
        self._presence_redis = RedisPresence(
            self._conn,
            prefix,
            self.node,
            keys.pubsub,
            announce=lambda channel, payload: self.local.announce(channel, payload),
            settings=lambda channel: self._catalog(channel) if self._catalog else None,
        )
        self._listen_task: asyncio.Task[None] | None = None
        self._report_task: asyncio.Task[None] | None = None
        self._presence_task: asyncio.Task[None] | None = None

    def attach(self, local: Local) -> None:
        super().attach(local)
        self._broker.local = self._cluster.local = local

    @property
    def redis(self) -> Any:  # redis-py's reply types are too loose to be useful here
        """The client (reads, tickets, figures); ``ServerUnavailable`` before start."""
        return self._conn.redis

    @property
    def _script(self) -> Any:
        """The publish script (registered at start), for callers that batch publishes."""
        return self._broker.script

    @property
    def reconnects(self) -> int:
        return self._listener.reconnects

    @property
    def recovered_from_stream(self) -> int:
        """Events delivered from the stream because pub/sub missed them."""
        return self._broker.recovered_from_stream

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._listener.reset()
        self._conn.open()
        self._broker.start()
        self._history.start()
        with self._conn.errors(OnError.IGNORE) as ping:
            await self._conn.redis.ping()
            self._conn.ok()
        if ping.error is not None:
            logger.warning(
                "Redis backplane %s unreachable at start-up (%s); retrying in the "
                "background, health answers 503 until it is back",
                redact_url(self.url),
                ping.error,
            )
        self._listen_task = asyncio.create_task(
            self._listener.run_forever(), name="realtime-redis-listener"
        )
        self._report_task = asyncio.create_task(
            self._cluster.report_forever(), name="realtime-redis-stats"
        )
        self._presence_redis.start()
        self._presence_task = asyncio.create_task(
            self._presence_redis.run(), name="realtime-redis-presence"
        )
        if self._conn.commands_ok:
            # Redis answers: accept clients once the listener is subscribed too.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listener.listening.wait(), READY_TIMEOUT)

    async def stop(self) -> None:
        tasks = [
            t
            for t in (
                self._listen_task,
                self._report_task,
                self._presence_task,
                self._conn.verifying,
                *self._conn.tasks,
            )
            if t
        ]
        for task in tasks:
            task.cancel()
        # A cancellation can be lost inside redis-py (a connect or a close that turns it
        # into a connection error): a task still running after a moment is cancelled
        # again, so that stop() never waits on a listener that went on reconnecting.
        for _ in range(STOP_RETRIES):
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            await asyncio.wait(pending, timeout=0.5)
            for task in pending:
                task.cancel()
        else:
            logger.error("Redis backplane: tasks still running at stop: %s", pending)
        for task in tasks:
            if task.done():
                with contextlib.suppress(BaseException):
                    task.result()
        # _verify() resets verifying itself, but not when cancelled before it ran.
        self._listen_task = self._report_task = self._presence_task = None
        self._conn.verifying = None
        self._listener.connected = False
        if self._conn.started:
            await self._broker.pipeline.close()
            await self._presence_redis.stop()
            with contextlib.suppress(RedisError, OSError):
                await self._cluster.forget()
            await self._conn.close()

    @property
    def available(self) -> bool:
        return self._listener.connected and self._conn.commands_ok

    def health(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.available,
            "url": redact_url(self.url),
            "node": self.node,
            "listener": "connected" if self._listener.connected else "reconnecting",
            "reconnects": self._listener.reconnects,
            "recovered_from_stream": self._broker.recovered_from_stream,
            "last_error": self._conn.last_error,
            "channels": len(self._broker.chans),
        }

    # ------------------------------------------------------------------ channels in use

    def watch(self, channel: str) -> None:
        name = self._broker.watch(channel)
        if name is not None:
            self._listener.send("SUBSCRIBE", name)

    def unwatch(self, channel: str) -> None:
        name = self._broker.unwatch(channel)
        if name is not None:
            self._listener.send("UNSUBSCRIBE", name)

    async def ready(self, channel: str) -> None:
        await self._broker.ready(channel)

    # ------------------------------------------------------------------ publish and history

    def prepare(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> Publication:
        """Everything a publish sends to Redis, encoded (``TypeError`` if ``data`` cannot
        be: then nothing reaches Redis and no id is used up)."""
        return self._broker.prepare(channel, type, data, user_id=user_id, role=role)

    def publish(
        self,
        channel: str,
        type: str,
        data: Any,
        *,
        user_id: str | None,
        role: str | None,
        sender: Sender | None = None,
        exclude: str | None = None,
    ) -> Coroutine[Any, Any, tuple[Event, int]]:
        # The broker's coroutine itself (awaited by the caller, as an async def's would
        # be): no second coroutine per event on the hot path.
        return self._broker.publish(
            channel, type, data, user_id=user_id, role=role, sender=sender, exclude=exclude
        )

    async def publish_counted(
        self, channel: str, type: str, data: Any, *, user_id: str | None, role: str | None
    ) -> tuple[Event, int, bool]:
        return await self._broker.publish_counted(channel, type, data, user_id=user_id, role=role)

    async def publish_many(
        self, channel: str, events: list[tuple[str, Any]], *, user_id: str | None, role: str | None
    ) -> list[tuple[Event, int]]:
        return await self._broker.publish_many(channel, events, user_id=user_id, role=role)

    async def transmit(
        self, channel: str, type: str, data: Any, *, sender: Sender, exclude: str | None
    ) -> int:
        return await self._broker.transmit(channel, type, data, sender=sender, exclude=exclude)

    # ------------------------------------------------------------------ presence

    def presence_add(
        self, channel: str, user_id: str | None, role: str | None, settings: PresenceConfig
    ) -> None:
        self._presence_redis.add(channel, user_id, role)

    def presence_remove(self, channel: str, user_id: str | None, settings: PresenceConfig) -> None:
        self._presence_redis.remove(channel, user_id, settings.leave_delay)

    async def presence(self, channel: str, listed: bool) -> PresenceData:
        return await self._presence_redis.read(channel, listed)

    def presence_counts(self) -> dict[str, int]:
        return self._presence_redis.counts()

    async def since(self, channel: str, since: EventId) -> list[Event] | None:
        return await self._history.since(channel, since)

    async def position(self, channel: str) -> EventId | None:
        return await self._history.position(channel)

    async def last(self, channel: str, match: Callable[[Event], bool]) -> Event | None:
        return await self._history.last(channel, match)

    # ------------------------------------------------------------------ cluster-wide

    async def put_ticket(self, ticket: str, value: bytes, ttl: float) -> None:
        await self._cluster.put_ticket(ticket, value, ttl)

    async def peek_ticket(self, ticket: str) -> bytes | None:
        return await self._cluster.peek_ticket(ticket)

    async def take_ticket(self, ticket: str) -> bytes | None:
        return await self._cluster.take_ticket(ticket)

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        return await self._cluster.disconnect(user_id=user_id, role=role, reason=reason)

    async def stats(self) -> dict[str, Any]:
        return await self._cluster.stats()

    # ---- cluster-wide limits

    @functools.cached_property
    def _user_slots(self) -> UserSlots:
        return UserSlots(self._conn, self.prefix, self.node)

    async def claim_user_slot(self, user_id: str, limit: int) -> int | None:
        return await self._user_slots.claim(user_id, limit)

    def release_user_slot(self, user_id: str) -> None:
        self._user_slots.release(user_id)
