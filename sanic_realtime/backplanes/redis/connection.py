"""The connection to Redis: the clients, the pub/sub listener (reads, pings, reconnects
with backoff), the state that health and metrics report, and :class:`RedisErrors`, the
one place where a failed Redis command is turned into what its caller reports.

Two clients: reads, tickets and figures are retried once on a broken connection (one
that Redis closed while it sat in the pool, e.g. across a Redis restart); publishes and
the pub/sub listener use a pool without retries: a publish fails at once (503), so an
event whose reply was lost is not published twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, NoReturn, Protocol

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...exceptions import ServerUnavailable
from ...log import logger
from . import endpoints

__all__ = [
    "REDIS_ERRORS",
    "Connection",
    "Listener",
    "OnError",
    "RedisErrors",
    "Subscriber",
    "Unattached",
    "redact_url",
    "unavailable",
]

#: Listener reconnect backoff: full jitter, from BACKOFF_BASE doubling up to BACKOFF_CAP.
BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
#: The listener pings Redis after this long without traffic, and gives the connection up
#: (and reconnects) after DEAD_AFTER without any reply.
PING_INTERVAL = 5.0
DEAD_AFTER = 15.0

#: What a failed Redis command raises: redis-py's errors and the socket's own.
REDIS_ERRORS = (RedisError, OSError)


def redact_url(url: str) -> str:
    """``url`` without its password (a Sentinel URL's ``sentinel_password`` too)."""
    return endpoints.redact(url)


def unavailable(error: BaseException) -> ServerUnavailable:
    """The ``backplane_unavailable`` error of a failed Redis command."""
    return ServerUnavailable(
        f"the Redis backplane is unavailable ({type(error).__name__}: {error})",
        code="backplane_unavailable",
    )


class Unattached:
    """The hub as the components see it until ``attach``: any use raises, as
    ``Backplane.local`` does."""

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("backplane used before a hub was attached")

    deliver = report_loss = stats = announce = _fail

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        self._fail()


class OnError(enum.Enum):
    """What :class:`RedisErrors` does after ``Connection.fail``."""

    #: Raise ``ServerUnavailable`` (code ``backplane_unavailable``) from None.
    UNAVAILABLE = "unavailable"
    #: Re-raise the Redis error itself.
    RAISE = "raise"
    #: Carry on after the ``with`` block; the error is in ``.error``.
    IGNORE = "ignore"


class RedisErrors:
    """``with conn.errors(then):`` around Redis commands. A ``RedisError`` or ``OSError``
    raised in the block is recorded by :meth:`Connection.fail` (health shows it as
    ``last_error``; a PING decides whether Redis is down), then handled as ``then`` says.
    Anything else (``ServerUnavailable`` before start, ``CancelledError``) passes
    unchanged. An instance holds no state but ``.error``, so one with ``UNAVAILABLE`` or
    ``RAISE`` can be made once and shared (publish's is); read ``.error`` (``IGNORE``)
    of an instance made for the block."""

    __slots__ = ("_conn", "_then", "error")

    def __init__(self, conn: Connection, then: OnError) -> None:
        self._conn = conn
        self._then = then
        #: The error the block raised, if it did.
        self.error: BaseException | None = None

    def __enter__(self) -> RedisErrors:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if error is None or not isinstance(error, REDIS_ERRORS):
            return False  # success (the hot path: publish), or not a Redis failure
        self.error = error
        self._conn.fail(error)
        if self._then is OnError.UNAVAILABLE:
            raise unavailable(error) from None
        return self._then is OnError.IGNORE


class Connection:
    """The two clients and the state of the command connection."""

    def __init__(self, url: str, *, prefix: str, node: str) -> None:
        self.url = url
        #: CLIENT LIST shows which worker each connection belongs to.
        self.client_name = f"sanic-realtime:{prefix}:{node}"
        self._redis: Any = None
        #: The pool without retries: publishes and the pub/sub listener.
        self.unretried: Any = None
        #: The last command (or the PING after a failure) succeeded.
        self.commands_ok = False
        self.last_error: str | None = None
        self.verifying: asyncio.Task[None] | None = None
        #: Tasks of subscribe commands and remote disconnects (cancelled by stop).
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def redis(self) -> Any:  # redis-py's reply types are too loose to be useful here
        """The client with one retry; raises ``ServerUnavailable`` before start."""
        if self._redis is None:
            raise ServerUnavailable(
                "the Redis backplane is not started: it connects when the server starts "
                "(before_server_start), and publish() works from then on",
                code="backplane_unavailable",
            )
        return self._redis

    @property
    def started(self) -> bool:
        return self._redis is not None

    def publishing_client(self) -> Any:
        self.redis  # noqa: B018 - raises ServerUnavailable when not started
        return self.unretried

    def open(self) -> None:
        """The two clients (:func:`.endpoints.build_clients`: plain or through Sentinel)."""
        options: dict[str, Any] = {
            "socket_connect_timeout": 2.0,
            "socket_timeout": 5.0,
            "socket_keepalive": True,
            "client_name": self.client_name,
        }
        self._redis, self.unretried = endpoints.build_clients(
            self.url,
            options,
            retried=Retry(NoBackoff(), 1, (RedisConnectionError,)),
            unretried=Retry(NoBackoff(), 0),
        )

    async def close(self) -> None:
        await self._redis.aclose()
        await self.unretried.aclose()
        self._redis = self.unretried = None

    async def drop_idle(self) -> None:
        """Redis may have restarted: the idle pooled connections are dead too, and a
        command on one would fail once Redis is back."""
        for client in (self._redis, self.unretried):
            with contextlib.suppress(Exception):
                await client.connection_pool.disconnect(inuse_connections=False)

    def errors(self, then: OnError = OnError.UNAVAILABLE) -> RedisErrors:
        """A :class:`RedisErrors` for a ``with`` block."""
        return RedisErrors(self, then)

    def ok(self) -> None:
        self.commands_ok = True

    def fail(self, error: BaseException) -> None:
        """A command failed: Redis counts as unavailable if a PING fails too (one broken
        pooled connection does not turn new clients away)."""
        self.last_error = f"{type(error).__name__}: {error}"
        if self.verifying is None and self._redis is not None:
            self.verifying = asyncio.get_running_loop().create_task(self._verify())

    async def _verify(self) -> None:
        try:
            await self.redis.ping()
            self.ok()
        except (RedisError, OSError, ServerUnavailable):
            self.commands_ok = False
        finally:
            self.verifying = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class Subscriber(Protocol):
    """What the listener tells about the channels in use (the broker)."""

    async def before_resubscribe(self) -> list[bytes]:
        """On (re)connecting, before the SUBSCRIBE: the pub/sub names of the channels in
        use (and whatever must be read before subscribing to them)."""
        ...

    async def before_subscribe(self, name: bytes) -> None:
        """Before the SUBSCRIBE of a newly watched channel."""
        ...

    async def on_subscribed(self, name: bytes) -> None:
        """Redis confirmed the subscription of a channel."""
        ...

    async def on_message(self, name: bytes, raw: bytes) -> None:
        """A message on a channel's pub/sub channel."""
        ...

    def on_disconnected(self) -> None:
        """The listener lost its subscriptions (it reconnects)."""
        ...


class Listener:
    """The pub/sub connection: one SUBSCRIBE of every channel in use on connecting, one
    per channel watched later; reads, pings after PING_INTERVAL of silence, and
    reconnects (with backoff) on any failure or after DEAD_AFTER without a reply."""

    def __init__(
        self,
        conn: Connection,
        control: bytes,
        subscriber: Subscriber,
        on_control: Callable[[bytes], None],
        answers: bytes = b"",
        on_answer: Callable[[bytes], None] | None = None,
    ) -> None:
        self._conn = conn
        self._control = control
        #: This worker's own channel of answers (``count="cluster"``), and their reader.
        self._answers = answers
        self._on_answer = on_answer
        self._subscriber = subscriber
        self._on_control = on_control
        self.pubsub: Any = None
        self.lock = asyncio.Lock()
        #: pub/sub (un)subscribe commands sent and not yet confirmed, per name.
        self.unconfirmed: dict[bytes, int] = {}
        self.connected = False  # subscribed
        self.listening = asyncio.Event()  # set while subscribed
        self.reconnects = 0

    def reset(self) -> None:
        """asyncio primitives belong to the loop that first waits on them: a start after
        a stop may run in a new loop (one test after another), so make them again."""
        self.listening = asyncio.Event()
        self.lock = asyncio.Lock()

    def send(self, command: str, name: bytes) -> None:
        """(UN)SUBSCRIBE ``name`` now if connected (else the next connect covers it)."""
        if self.pubsub is not None:
            self._conn.spawn(self._command(self.pubsub, command, name))

    async def _command(self, pubsub: Any, command: str, name: bytes) -> None:
        # The lock is FIFO, so commands go out in the order watch/unwatch asked for them.
        async with self.lock:
            if pubsub is not self.pubsub:
                return  # reconnected meanwhile: the new subscription covers it
            if command == "SUBSCRIBE":
                await self._subscriber.before_subscribe(name)
            try:
                self.unconfirmed[name] = self.unconfirmed.get(name, 0) + 1
                await pubsub.execute_command(command, name)
            except REDIS_ERRORS as e:
                logger.debug("pub/sub %s %r failed: %s (the listener reconnects)", command, name, e)

    async def run_forever(self) -> None:
        attempt = 0
        while True:
            # On the pool without retries: redis-py would otherwise reconnect a broken
            # pub/sub connection by itself, without this listener's subscriptions.
            pubsub = self._conn.unretried.pubsub()
            try:
                async with self.lock:
                    # Set first: a watch() from now on queues its own SUBSCRIBE behind
                    # this one; the channels watched before are in this one.
                    self.pubsub = pubsub
                    extra = [self._answers] if self._answers else []
                    names = [
                        self._control,
                        *extra,
                        *await self._subscriber.before_resubscribe(),
                    ]
                    self.unconfirmed = dict.fromkeys(names, 1)
                    await pubsub.execute_command("SUBSCRIBE", *names)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # RedisError, OSError, or a bug: reconnect either way
                if self.connected or attempt == 0:
                    logger.warning("Redis backplane listener lost its connection: %s", e)
                self._conn.fail(e)
                await self._conn.drop_idle()
            finally:
                if self.connected:
                    attempt = 0  # it worked for a while: start the backoff again
                self.pubsub = None
                self.connected = False
                self.listening.clear()
                self._subscriber.on_disconnected()
                # Exception, not BaseException: a stop() that cancels the listener while
                # it closes a broken connection must end it, not be swallowed here.
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            # Full jitter: a fleet of workers does not come back in lockstep.
            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt))
            attempt = min(attempt + 1, 16)
            self.reconnects += 1
            await asyncio.sleep(delay)

    async def _read(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        control, on_control = self._control, self._on_control
        answers, on_answer = self._answers, self._on_answer
        on_message = self._subscriber.on_message
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is None:
                if now - heard > DEAD_AFTER:
                    raise TimeoutError(f"no reply from Redis for {DEAD_AFTER:g}s")
                if now - heard > PING_INTERVAL and not pinged:
                    pinged = True
                    await pubsub.ping()
                continue
            heard, pinged = now, False
            kind = message["type"]
            if kind == "message":
                name = message["channel"]
                if name == control:
                    on_control(message["data"])
                elif name == answers and on_answer is not None:
                    on_answer(message["data"])
                else:
                    await on_message(name, message["data"])
            elif kind in ("subscribe", "unsubscribe"):
                await self._on_confirm(kind, message["channel"])

    async def _on_confirm(self, kind: str, name: bytes) -> None:
        left = self.unconfirmed.get(name, 1) - 1
        if left > 0:
            self.unconfirmed[name] = left
            return
        self.unconfirmed.pop(name, None)
        if kind != "subscribe":
            return
        if name == self._control:
            if self.reconnects:
                logger.warning("Redis backplane listener (re)connected")
            self.connected = True
            self.listening.set()
            self._conn.ok()
            return
        await self._subscriber.on_subscribed(name)
