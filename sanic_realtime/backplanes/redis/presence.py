"""Presence in Redis: per user, deduplicated across every worker, with per-worker
heartbeats so that a killed worker's members expire.

Keys, under ``{prefix}:presence:``:

- ``{channel}:u``   hash: user -> their connections on every worker (0 while their leave
  is pending: still listed);
- ``{channel}:i``   hash: user -> ``[role, since]``;
- ``{channel}:a``   string: anonymous connections;
- ``node:{node}``   hash: one worker's share (``u{channel}\\0{user}`` / ``a{channel}`` ->
  its connections), what is taken out when the worker dies;
- ``nodes``         zset: worker -> when its heartbeat expires (ms);
- ``leaving``       zset: ``{channel}\\0{user}`` -> when their leave is due (ms).

Each change is one Lua script (``presence_*.lua``), so that of two workers only one sees
a user's first join or takes a due leave: joins and leaves are announced once per
cluster. Joins are published by the script itself on the channel's pub/sub (``?`` then
the message, see :mod:`.codec`); leaves by the worker whose sweep took them.

Every worker, every :data:`HEARTBEAT`: renews its expiry (``3 * HEARTBEAT``), reaps the
workers whose expiry passed, and takes the due leaves. A worker killed with SIGKILL thus
has its users leave within ``3 * HEARTBEAT`` plus one heartbeat (no ``leave_delay``:
its clients have had that long to reconnect elsewhere). A worker whose own entry was
reaped (cut off from Redis that long), or whose change failed, re-registers all its
connections: their users are announced again.

Changes go through one task, in order, at most :data:`QUEUE` waiting; past it they are
dropped and the worker re-registers at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import msgspec

from ...config import PresenceConfig
from ...events import utc_timestamp
from ...log import logger
from ...presence import LIST_MAX, presence_data
from ...protocol.server import (
    PresenceChangeData,
    PresenceData,
    PresenceJoin,
    PresenceLeave,
    encode,
)
from . import scripts
from .connection import Connection, OnError

__all__ = ["ANNOUNCE", "HEARTBEAT", "QUEUE", "RedisPresence"]

#: How often each worker renews its heartbeat, reaps dead workers and takes due leaves.
HEARTBEAT = 1.0
#: Presence changes waiting for Redis at most (then: re-register at the next heartbeat).
QUEUE = 100_000
#: The first byte of a presence announcement on a channel's pub/sub.
ANNOUNCE = b"?"
#: How long a graceful stop spends on the changes still waiting.
STOP_TIMEOUT = 2.0
#: Leaves one sweep takes at most (it sweeps again at once while it gets this many).
DUE_BATCH = 500

_json = msgspec.json.Encoder()
_info = msgspec.json.Decoder(tuple[str | None, float])


class RedisPresence:
    """One worker's side of presence in Redis (see the module docstring)."""

    def __init__(
        self,
        conn: Connection,
        prefix: str,
        node: str,
        pubsub_name: Callable[[str], bytes],
        announce: Callable[[str, bytes], int],
        settings: Callable[[str], PresenceConfig | None],
    ) -> None:
        self._conn = conn
        self._base = f"{prefix}:presence:"
        self.node = node
        self._pubsub_name = pubsub_name
        self._announce = announce
        self._settings = settings
        self._own_key = f"{self._base}node:{node}"
        self._nodes = f"{self._base}nodes"
        self._leaving = f"{self._base}leaving"
        #: (channel, user or None) -> this worker's connections; role per (channel, user)
        self.own: Counter[tuple[str, str | None]] = Counter()
        self._roles: dict[tuple[str, str | None], str | None] = {}
        self._ops: deque[tuple[str, str, str | None, str | None, float]] = deque()
        self._wake = asyncio.Event()
        self._resync = False
        self._registered = False
        self._scripts: dict[str, Any] = {}
        #: when (loop time) a pending leave of this worker's is due: a sweep then
        self._sweep_at: float | None = None

    def start(self) -> None:
        redis = self._conn.redis
        self._scripts = {
            "add": redis.register_script(scripts.PRESENCE_ADD),
            "remove": redis.register_script(scripts.PRESENCE_REMOVE),
            "due": redis.register_script(scripts.PRESENCE_DUE),
            "reap": redis.register_script(scripts.PRESENCE_REAP),
        }
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ changes

    def add(self, channel: str, user_id: str | None, role: str | None) -> None:
        key = (channel, user_id)
        self.own[key] += 1
        self._roles.setdefault(key, role)
        self._submit(("add", channel, user_id, role, 0.0))

    def remove(self, channel: str, user_id: str | None, delay: float) -> None:
        key = (channel, user_id)
        if self.own[key] <= 1:
            self.own.pop(key, None)
            self._roles.pop(key, None)
        else:
            self.own[key] -= 1
        self._submit(("remove", channel, user_id, None, delay))

    def _submit(self, op: tuple[str, str, str | None, str | None, float]) -> None:
        if len(self._ops) >= QUEUE:
            if not self._resync:
                logger.error(
                    "presence: more than %d changes waiting for Redis; this worker "
                    "re-registers its connections at the next heartbeat",
                    QUEUE,
                )
            self._ops.clear()
            self._resync = True
            return
        self._ops.append(op)
        self._wake.set()

    def counts(self) -> dict[str, int]:
        """Users with a connection here, per channel."""
        out: Counter[str] = Counter()
        for channel, user_id in self.own:
            if user_id is not None:
                out[channel] += 1
        return dict(out)

    # ------------------------------------------------------------------ the task

    async def run(self) -> None:
        """Apply the changes in order, and beat every HEARTBEAT (until cancelled)."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        while True:
            if loop.time() >= next_beat:
                next_beat = loop.time() + HEARTBEAT
                with self._conn.errors(OnError.IGNORE) as beat:
                    await self._beat()
                if beat.error is not None:
                    self._resync = True
            elif self._sweep_at is not None and loop.time() >= self._sweep_at:
                self._sweep_at = None
                with self._conn.errors(OnError.IGNORE):
                    await self.sweep()
            while self._ops:
                op = self._ops[0]
                with self._conn.errors(OnError.IGNORE) as apply:
                    await self._apply(*op)
                if self._ops and self._ops[0] is op:
                    self._ops.popleft()
                if apply.error is not None:
                    # Redis may or may not have it: re-register at the next heartbeat.
                    self._resync = True
                if loop.time() >= next_beat:
                    break
            self._wake.clear()
            if not self._ops:
                wake_at = next_beat if self._sweep_at is None else min(next_beat, self._sweep_at)
                timeout = max(0.0, wake_at - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    def _fields(self, channel: str, user_id: str | None) -> tuple[str, str, str]:
        """(user, kind, this worker's field) of one member."""
        if user_id is None:
            return "", "a", f"a{channel}"
        return user_id, "u", f"u{channel}\0{user_id}"

    def _keys(self, channel: str) -> list[str]:
        base = f"{self._base}{channel}"
        return [f"{base}:u", f"{base}:i", f"{base}:a", self._own_key, self._leaving, self._nodes]

    async def _apply(
        self, op: str, channel: str, user_id: str | None, role: str | None, delay: float
    ) -> None:
        user, kind, field = self._fields(channel, user_id)
        member = f"{channel}\0{user}"
        now = time.time()
        if op == "add":
            settings = self._settings(channel)
            announce = settings is not None and settings.events and user_id is not None
            join = b""
            if announce:
                message = PresenceJoin(
                    channel=channel,
                    timestamp=utc_timestamp(now),
                    data=PresenceChangeData(user_id=user, role=role),
                )
                join = ANNOUNCE + encode(message)
            await self._scripts["add"](
                keys=self._keys(channel),
                args=[
                    user,
                    kind,
                    field,
                    _json.encode((role, now)),
                    member,
                    self.node,
                    int((now + 3 * HEARTBEAT) * 1000),
                    self._pubsub_name(channel) if announce else b"",
                    join,
                ],
            )
            self._registered = True
        else:
            pending = await self._scripts["remove"](
                keys=self._keys(channel),
                args=[user, kind, field, member, int((now + delay) * 1000)],
            )
            if pending:
                at = asyncio.get_running_loop().time() + delay + 0.01
                self._sweep_at = at if self._sweep_at is None else min(self._sweep_at, at)

    async def _beat(self) -> None:
        redis = self._conn.redis
        now = time.time()
        if self.own or self._registered:
            added = await redis.zadd(self._nodes, {self.node: int((now + 3 * HEARTBEAT) * 1000)})
            if added and self._registered:
                # Our entry was gone: reaped while we were cut off, or Redis lost it.
                logger.warning("presence: this worker's entry had expired; re-registering")
                self._resync = True
        reaped = await self._scripts["reap"](
            keys=[self._nodes], args=[int(now * 1000), self._base, ""]
        )
        if reaped:
            logger.warning("presence: workers gone, their members removed: %s", reaped)
        if self._resync:
            await self._reregister()
        await self.sweep()

    async def sweep(self) -> None:
        """Announce the leaves that are due (each taken by one worker only)."""
        while True:
            now = time.time()
            out = await self._scripts["due"](
                keys=[self._leaving], args=[int(now * 1000), DUE_BATCH, self._base]
            )
            for i in range(0, len(out), 3):
                channel = _text(out[i])
                user = _text(out[i + 1])
                try:
                    role = _info.decode(out[i + 2])[0]
                except (msgspec.DecodeError, msgspec.ValidationError):
                    role = None
                settings = self._settings(channel)
                if settings is None or not settings.events:
                    continue
                message = PresenceLeave(
                    channel=channel,
                    timestamp=utc_timestamp(now),
                    data=PresenceChangeData(user_id=user, role=role),
                )
                await self._conn.redis.publish(
                    self._pubsub_name(channel), ANNOUNCE + encode(message)
                )
            if len(out) < 3 * DUE_BATCH:
                return

    async def _reregister(self) -> None:
        """Take this worker's share out of Redis and put what it has now back."""
        self._ops.clear()
        self._resync = False
        await self._scripts["reap"](
            keys=[self._nodes], args=[int(time.time() * 1000), self._base, self.node]
        )
        self._registered = False
        for (channel, user_id), n in list(self.own.items()):
            role = self._roles.get((channel, user_id))
            for _ in range(n):
                self._ops.append(("add", channel, user_id, role, 0.0))

    async def stop(self) -> None:
        """A graceful stop (the run task cancelled): the changes still waiting are made
        (the leaves of the connections just closed, with their leave_delay: clients that
        reconnect to another worker in time are not announced as gone), then whatever
        is left of this worker's share is taken out."""
        self.own.clear()
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._ops and time.monotonic() < deadline and not self._resync:
            with self._conn.errors(OnError.IGNORE) as apply:
                await self._apply(*self._ops.popleft())
            if apply.error is not None:
                break
        self._ops.clear()
        if self._registered or self._resync:
            with self._conn.errors(OnError.IGNORE):
                await self._scripts["reap"](
                    keys=[self._nodes], args=[int(time.time() * 1000), self._base, self.node]
                )
        self._registered = self._resync = False

    # ------------------------------------------------------------------ reading

    async def read(self, channel: str, listed: bool) -> PresenceData:
        redis = self._conn.redis
        base = f"{self._base}{channel}"
        with self._conn.errors(OnError.UNAVAILABLE):
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hlen(f"{base}:u")
                pipe.get(f"{base}:a")
                count, anonymous = await pipe.execute()
            rows: list[tuple[str, str | None, int, float]] = []
            if listed and count:
                counts: dict[bytes, bytes] = {}
                async for user, n in redis.hscan_iter(f"{base}:u", count=LIST_MAX):
                    counts[user] = n
                    if len(counts) >= LIST_MAX:
                        break
                users = list(counts)
                infos = await redis.hmget(f"{base}:i", users) if users else []
                for user, info in zip(users, infos, strict=True):
                    try:
                        role, since = _info.decode(info) if info else (None, 0.0)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        role, since = None, 0.0
                    rows.append((_text(user), role, max(0, int(counts[user])), since))
        return presence_data(rows, int(count), max(0, int(anonymous or 0)), listed)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
