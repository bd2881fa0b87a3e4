"""Cluster-wide ``max_connections_per_user`` (``connection_limits: cluster``): one user's
connections counted in Redis across every worker and host.

Keys, under ``{prefix}:uconn:``:

- ``{user}``  hash: worker (node) -> that worker's connections of the user, with a TTL
  (:data:`TTL`) renewed by every change and by the holders' periodic sync: one key per
  user, so one hash slot per user (Redis Cluster keeps each script atomic);
- ``nodes``   zset: worker -> when its heartbeat expires (ms), renewed every
  :data:`HEARTBEAT` to ``3 * HEARTBEAT`` ahead; an entry stays :data:`GRACE` after it
  expired, so that every worker knows that worker is dead.

Each connect runs one script (``user_slots.lua``, ``claim``): the fields of the live
workers are summed and a slot taken if the sum is below the limit, atomically, so of two
workers racing for a user's last slot one wins. Fields of workers known dead (their
heartbeat expired: killed with SIGKILL, or cut off from Redis) are deleted and not
counted: a killed worker's connections stop counting within ``3 * HEARTBEAT`` plus a
heartbeat. A worker this one has not seen yet (just started) is counted.

A release (a close, an abort, a handshake refused after its claim, a stop) is never
awaited by the caller: it is noted here (a count per user) and one task gives it back
(``release``, a decrement, which commutes with concurrent claims). A release that fails
stays noted and is retried; after a Redis error, or when this worker finds its own
heartbeat had expired (others dropped its fields), it re-registers: ``set`` writes its
true count for each of its users. Every :data:`SYNC` it does the same for all its users,
which renews their keys' TTL and drops dead workers' fields.

Bounded: one task; what waits is at most one entry per user of this worker; a claim is
awaited by its handshake (one script per connection at most).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from ...exceptions import ServerUnavailable
from ...log import logger
from . import scripts
from .connection import Connection, OnError
from .presence import HEARTBEAT

__all__ = ["CLAIM_TIMEOUT", "GRACE", "SYNC", "TTL", "UserSlots"]

#: How often every worker re-writes its counts (renewing the keys' TTL).
SYNC = 30.0
#: A user's key expires this long after its last change or sync.
TTL = 4 * SYNC
#: How long a dead worker's entry stays in the zset (longer than TTL: by then every key
#: it had a field in was synced by a live holder or expired).
GRACE = 3600.0
#: How long a connect waits for its claim before it is refused (503).
CLAIM_TIMEOUT = 5.0
#: How long a stop spends marking this worker dead.
STOP_TIMEOUT = 2.0


class UserSlots:
    """One worker's side of the cluster-wide per-user limit (see the module docstring)."""

    def __init__(self, conn: Connection, prefix: str, node: str) -> None:
        self._conn = conn
        self._base = f"{prefix}:uconn:"
        self._nodes = f"{self._base}nodes"
        self.node = node
        #: user -> slots this worker holds in Redis (claimed, not given back)
        self.own: Counter[str] = Counter()
        #: user -> slots given back here, not yet in Redis
        self.releases: Counter[str] = Counter()
        #: users whose field must be re-written (``set``) with their count in ``own``
        self.stale: set[str] = set()
        #: users with a claim in flight (not re-written meanwhile)
        self._claiming: Counter[str] = Counter()
        #: workers whose heartbeat expired, as of the last heartbeat
        self.dead: list[str] = []
        self._script: Any = None
        self._wake = asyncio.Event()
        self._first_beat = asyncio.Event()
        self._beaten = False
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start the task if it is not running (at the first claim; the backplane's stop
        cancels it with the other tasks of the connection)."""
        if self._task is None or self._task.done():
            self._script = self._conn.redis.register_script(scripts.USER_SLOTS)
            self._wake = asyncio.Event()
            self._first_beat = asyncio.Event()
            self._beaten = False
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="realtime-redis-user-slots"
            )
            self._conn.tasks.add(self._task)
            self._task.add_done_callback(self._conn.tasks.discard)

    def _key(self, user_id: str) -> str:
        return f"{self._base}{user_id}"

    async def _call(self, op: str, user_id: str, n: int) -> tuple[bool, int]:
        ok, held = await self._script(
            keys=[self._key(user_id)],
            args=[op, self.node, n, int(TTL * 1000), *self.dead],
        )
        return bool(ok), int(held)

    # ------------------------------------------------------------------ claims

    async def claim(self, user_id: str, limit: int) -> int | None:
        """Take one of ``user_id``'s ``limit`` slots: the count held after, or None if
        every slot is taken (by any worker). ``ServerUnavailable`` if Redis does not
        answer (the caller refuses the connection: fail closed)."""
        self.ensure_running()
        if not self._beaten:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_beat.wait(), CLAIM_TIMEOUT)
        if not self._beaten:
            # Not registered as a live worker (Redis unreachable): others could take this
            # worker's fields for a dead one's.
            raise ServerUnavailable(
                "the backplane is unavailable (Redis unreachable); try again shortly",
                code="backplane_unavailable",
            )
        self._claiming[user_id] += 1
        try:
            with self._conn.errors(OnError.IGNORE) as failed:
                ok, held = await asyncio.wait_for(
                    self._call("claim", user_id, limit), CLAIM_TIMEOUT
                )
            if failed.error is not None:
                # Redis may or may not have taken it: re-write this worker's true count.
                self._mark_stale(user_id)
                raise ServerUnavailable(
                    "the backplane is unavailable (Redis unreachable); try again shortly",
                    code="backplane_unavailable",
                )
        except asyncio.CancelledError:
            self._mark_stale(user_id)
            raise
        finally:
            self._claiming[user_id] -= 1
            if self._claiming[user_id] <= 0:
                del self._claiming[user_id]
        if not ok:
            return None
        self.own[user_id] += 1
        return held

    def release(self, user_id: str) -> None:
        """Give back one slot of ``user_id`` (not awaited: the task sends it)."""
        if self.own[user_id] <= 1:
            self.own.pop(user_id, None)
        else:
            self.own[user_id] -= 1
        if user_id not in self.stale:
            self.releases[user_id] += 1
        self._wake.set()

    def _mark_stale(self, user_id: str) -> None:
        self.stale.add(user_id)
        self.releases.pop(user_id, None)
        self._wake.set()

    # ------------------------------------------------------------------ the task

    async def run(self) -> None:
        """Beat every HEARTBEAT, send the releases, re-write stale users (until
        cancelled)."""
        try:
            await self._loop()
        except asyncio.CancelledError:
            # The backplane stops (after the hub closed its connections): this worker is
            # marked dead at once, so whatever it still holds stops counting.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._mark_dead(), STOP_TIMEOUT)
            raise

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        next_sync = loop.time() + SYNC
        while True:
            now = loop.time()
            if now >= next_beat:
                next_beat = now + HEARTBEAT
                with self._conn.errors(OnError.IGNORE) as beat:
                    await self._beat()
                if beat.error is not None:
                    self._resync()
            if now >= next_sync:
                next_sync = now + SYNC
                self._resync()
            with self._conn.errors(OnError.IGNORE):
                await self._flush(deadline=next_beat)
            self._wake.clear()
            if not self._pending():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_beat - loop.time()))
            else:
                # Redis failed on the last one: wait for the next heartbeat.
                await asyncio.sleep(max(0.0, next_beat - loop.time()))

    def _pending(self) -> bool:
        return bool(self.releases) or any(u not in self._claiming for u in self.stale)

    def _resync(self) -> None:
        """Re-write every user of this worker (and those it gave back) at the next flush."""
        self.stale.update(self.own)
        self.stale.update(self.releases)
        self.releases.clear()
        self._wake.set()

    async def _beat(self) -> None:
        redis = self._conn.redis
        now_ms = int(time.time() * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zscore(self._nodes, self.node)
            pipe.zadd(self._nodes, {self.node: now_ms + int(3 * HEARTBEAT * 1000)})
            pipe.zremrangebyscore(self._nodes, "-inf", now_ms - int(GRACE * 1000))
            pipe.zrangebyscore(self._nodes, "-inf", now_ms)
            previous, _, _, dead = await pipe.execute()
        self.dead = [d.decode() if isinstance(d, bytes) else str(d) for d in dead]
        if self._beaten and (previous is None or float(previous) < now_ms):
            # Others took this worker for dead and dropped its fields.
            logger.warning("connection limits: this worker's entry had expired; re-registering")
            self._resync()
        self._beaten = True
        self._first_beat.set()

    async def _flush(self, deadline: float) -> None:
        """Send the releases and the stale users, one script each, until ``deadline``
        (loop time); what fails stays for the next round."""
        loop = asyncio.get_running_loop()
        while self.releases and loop.time() < deadline:
            user_id, n = next(iter(self.releases.items()))
            await self._call("release", user_id, n)
            if self.releases.get(user_id) == n:
                del self.releases[user_id]
            elif user_id in self.releases:
                self.releases[user_id] -= n
        for user_id in list(self.stale):
            if loop.time() >= deadline:
                break
            if user_id in self._claiming:
                continue
            self.stale.discard(user_id)
            try:
                await self._call("set", user_id, self.own.get(user_id, 0))
            except BaseException:
                self.stale.add(user_id)
                raise

    async def _mark_dead(self) -> None:
        beaten = self._beaten
        self.own.clear()
        self.releases.clear()
        self.stale.clear()
        self._beaten = False
        if beaten:
            with self._conn.errors(OnError.IGNORE):
                await self._conn.redis.zadd(self._nodes, {self.node: 0})
