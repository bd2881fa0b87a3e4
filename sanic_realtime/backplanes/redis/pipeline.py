"""Automatic pipelining of publishes: every publish script call made in one loop
iteration goes to Redis in one write, on one dedicated connection, without waiting for
the replies of the writes before it; a reader takes the replies in order.

One connection, FIFO: Redis runs the scripts in the order the calls were made, so ids
are strictly increasing and each channel's order is the order of the calls. Calls not
yet written are bounded by :data:`PENDING` (a call past it fails with
``backplane_unavailable`` rather than queueing without end); calls written and not yet
answered are bounded by what Redis answers (each reply is read at once).

The connection's handshake reads the Redis process's ``run_id`` (``INFO server``) and
loads the script. Each call passes that run_id to ``publish.lua``, which starts a new
epoch when a history was started by another Redis process (a restart, a failover to a
replica): an id is never given out twice, and no script call runs ``INFO``. A Redis that
restarted broke the connection, so a new handshake reads the new run_id before anything
is written on the new one. :meth:`Pipeliner.reset` (the pub/sub listener lost its
connection) makes the next write use a new connection once the old one's calls are
answered.

A failed connection fails every call written on it and not answered (their replies are
lost: they may or may not have run; the caller answers 503 and never retries a
publish); calls not yet written go out on a new connection. A ``NOSCRIPT`` reply (the
script cache was flushed under a live connection) fails that call with
``backplane_unavailable`` (it did not run) and the next write loads the script again.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from ...exceptions import ServerUnavailable
from ...log import logger
from .connection import REDIS_ERRORS, Connection, unavailable

__all__ = ["BATCH", "PENDING", "Pipeliner"]

#: Calls written in one write at most.
BATCH = 1000
#: Calls waiting to be written, at most.
PENDING = 100_000

_pack = hiredis.pack_command


class _Link:
    """One connection and the futures of its calls written and not answered."""

    __slots__ = ("answered", "inflight", "reader", "redis", "run", "stale")

    def __init__(self, redis: Any, run: str) -> None:
        self.redis = redis
        self.run = run
        self.inflight: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.reader: asyncio.Task[None] | None = None
        #: Set when nothing is in flight (a stale link is given up then).
        self.answered = asyncio.Event()
        self.answered.set()
        #: reset() was called, or the script went missing: no new writes on it.
        self.stale = False


def _stopped() -> ServerUnavailable:
    return ServerUnavailable("the Redis backplane stopped", code="backplane_unavailable")


def _fail(futures: Any, error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)


class Pipeliner:
    """One script, called with automatic pipelining on a connection of its own."""

    def __init__(self, conn: Connection, script: str) -> None:
        self._conn = conn
        self._script = script.encode()
        self._sha = hashlib.sha1(self._script).hexdigest()  # Redis names a script by its SHA1
        #: (the call's EVALSHA arguments after the SHA, future), not yet written.
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._link: _Link | None = None
        self._pool: Any = None
        #: Writes and calls written (for the benchmarks and tests).
        self.writes = 0
        self.calls = 0

    @property
    def run(self) -> str | None:
        """The run_id of the Redis process the current connection reached."""
        return self._link.run if self._link is not None and not self._link.stale else None

    def call(self, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Queue one call (``args`` without the run_id, which is added when it is
        written); its future gets the script's reply or the error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if len(self._pending) >= PENDING:
            future.set_exception(
                ServerUnavailable(
                    f"the Redis backplane is not keeping up: {PENDING} publishes are "
                    "waiting to be sent",
                    code="backplane_unavailable",
                )
            )
            return future
        self._pending.append(((len(keys), *keys, *args), future))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name="realtime-redis-pipeline"
            )
        return future

    def reset(self) -> None:
        """Redis may have restarted (the pub/sub listener lost its connection): the next
        write goes out on a new connection, after a new handshake."""
        if self._link is not None:
            self._link.stale = True

    # ------------------------------------------------------------------ writing

    async def _write(self) -> None:
        """Write what is queued (started by the first call of a loop iteration, so every
        call of that iteration is in the first write), until nothing is."""
        batch: list[Any] = []
        try:
            while self._pending:
                link = await self._current()
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                run, sha = link.run, self._sha
                packed = b"".join([_pack(("EVALSHA", sha, *args, run)) for args, _ in batch])
                futures = [future for _, future in batch]
                link.inflight.extend(futures)
                link.answered.clear()
                batch = []
                if link.reader is None:
                    link.reader = asyncio.get_running_loop().create_task(
                        self._read(link), name="realtime-redis-pipeline-replies"
                    )
                self.writes += 1
                self.calls += len(futures)
                try:
                    await link.redis.send_packed_command(packed, check_health=False)
                except REDIS_ERRORS as e:
                    self._broken(link, e)
        except (*REDIS_ERRORS, ServerUnavailable) as e:  # no connection, or not started
            _fail([f for _, f in batch], e)
            _fail([f for _, f in self._pending], e)
            self._pending.clear()
        except BaseException:
            _fail([f for _, f in batch], _stopped())
            _fail([f for _, f in self._pending], _stopped())
            self._pending.clear()
            raise
        finally:
            self._writer = None

    async def _current(self) -> _Link:
        """The connection to write on: a new one (after a handshake) when there is none,
        or when the current one is stale, once its calls are answered (so that calls
        run in the order they were made)."""
        link = self._link
        if link is not None and not link.stale and link.redis.is_connected:
            return link
        if link is not None:
            await link.answered.wait()
            self._link = None
            await self._give_back(link.redis)
        if self._pool is None:
            self._pool = self._conn.publishing_client().connection_pool
        redis = await self._pool.get_connection()
        try:
            if redis.is_connected:
                await redis.disconnect()  # an idle pooled connection may be to a past Redis
            await redis.connect()
            await redis.send_command("INFO", "server")
            info = await redis.read_response()
            run = _run_id(info)
            await redis.send_command("SCRIPT", "LOAD", self._script)
            await redis.read_response()
        except BaseException:
            await self._give_back(redis)
            raise
        self._link = _Link(redis, run)
        return self._link

    # ------------------------------------------------------------------ replies

    async def _read(self, link: _Link) -> None:
        """Take the replies of ``link``'s calls, in order, while any is in flight."""
        inflight = link.inflight
        read = link.redis.read_response
        try:
            while inflight:
                try:
                    reply = await read()
                except NoScriptError:
                    link.stale = True  # the next write loads it again, on a new connection
                    logger.warning("Redis lost the publish script (SCRIPT FLUSH?): reloading it")
                    _fail([inflight.popleft()], unavailable(NoScriptError("NOSCRIPT")))
                    continue
                except ResponseError as e:  # the script failed: this call's own error
                    _fail([inflight.popleft()], e)
                    continue
                future = inflight.popleft()
                if not future.done():
                    future.set_result(reply)
        except REDIS_ERRORS as e:
            self._broken(link, e)
        except BaseException:
            self._broken(link, _stopped())
            raise
        finally:
            link.reader = None
            link.answered.set()

    def _broken(self, link: _Link, error: BaseException) -> None:
        """``link`` failed: its unanswered calls fail; the next write makes a new one."""
        link.stale = True
        _fail(link.inflight, error)
        link.inflight.clear()
        link.answered.set()

    async def _give_back(self, redis: Any) -> None:
        try:
            await redis.disconnect()
        finally:
            await self._pool.release(redis)

    async def close(self) -> None:
        """At stop: what is queued or in flight fails; the connection goes back."""
        tasks = [t for t in (self._writer, self._link.reader if self._link else None) if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, *REDIS_ERRORS):
                pass
        _fail([f for _, f in self._pending], _stopped())
        self._pending.clear()
        link, self._link = self._link, None
        if link is not None:
            self._broken(link, _stopped())
            await self._give_back(link.redis)


def _run_id(info: Any) -> str:
    text = info.decode() if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line[len("run_id:") :].strip()
    raise ResponseError("INFO server did not give a run_id")
