"""A Python client for sanic-realtime servers, on ``websockets`` alone (it imports no Sanic).

It connects to the general route (``ws://host/ws``), subscribes with ``subscribe``
messages, and keeps the subscriptions through network trouble and server restarts: it
reconnects with exponential backoff and full jitter, and resumes each channel from the last
event id it saw, so with history on the server nothing is missed; when the server cannot
fill the gap, the caller gets a ``resume_failed`` message instead of silence.

    async with RealtimeClient("ws://127.0.0.1:8000/ws", channels=["logs"],
                              filters={"level": "error"}) as client:
        async for event in client:
            print(event.type, event.data)

See docs/clients.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import urllib.error
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from .protocol import CloseCode, Ping, Subscribe, Unsubscribe

__all__ = [
    "ConnectionStatus",
    "Event",
    "GaveUp",
    "RealtimeClient",
    "RealtimeClientError",
    "Refused",
    "RequestFailed",
    "ServerClosed",
    "State",
    "publish",
]

logger = logging.getLogger("sanic_realtime.client")

State: TypeAlias = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]
Token: TypeAlias = "str | Callable[[], str | Awaitable[str]] | None"
Handler: TypeAlias = "Callable[[Event], Any]"
StatusHandler: TypeAlias = "Callable[[ConnectionStatus], Any]"

#: Close codes after which reconnecting would only repeat the failure (1008: the token
#: expired or access was revoked; reconnects anyway when ``token`` is a function).
_FATAL_CLOSES = frozenset({CloseCode.INVALID_DATA, CloseCode.POLICY, CloseCode.TOO_BIG})
#: Our close code when the server stopped answering pings (4000-4999: private use).
CLOSE_HEARTBEAT = CloseCode.HEARTBEAT
#: ``error`` messages the server sends on its own, not as a reply to a client message.
_UNSOLICITED_ERRORS = frozenset({"initial_state_failed"})
#: Replies to a (re)subscription that a later attempt may not get: retried, not fatal.
_TRANSIENT_ERRORS = frozenset({"backplane_unavailable"})


# --------------------------------------------------------------------------- messages


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A message from the server: a published event (it has an ``id``), or one of the
    data-bearing control messages: ``initial_state``, ``messages_dropped``, an unsolicited
    ``error`` or ``unsubscribed``, and the client's own ``resume_failed``."""

    type: str
    channel: str | None = None
    #: The event id (``epoch:offset``), opaque; None for control messages.
    id: str | None = None
    #: When it was published (events) or made (control messages): RFC 3339, UTC.
    timestamp: str | None = None
    data: Any = None

    @property
    def is_event(self) -> bool:
        """A published event (as opposed to a control message)."""
        return self.id is not None


_decoder = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()


# --------------------------------------------------------------------------- errors


class RealtimeClientError(Exception):
    """A failure the client reports; ``code`` is machine-readable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Refused(RealtimeClientError):
    """The server refused an HTTP request or a WebSocket handshake (before the upgrade)
    with ``status`` and its JSON error body's ``code`` and ``message``."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message)
        self.status = status
        #: Seconds, from a ``Retry-After`` header (429).
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.message}"

    @classmethod
    def from_response(cls, status: int, body: bytes, retry_after: str | None = None) -> Refused:
        code, message = f"http_{status}", body.decode("utf-8", "replace").strip()[:300]
        with contextlib.suppress(msgspec.DecodeError, RecursionError):
            error = msgspec.json.decode(body, type=_ErrorBody).error
            code, message = error.code, error.message
        delay = None
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                delay = float(retry_after)
        return cls(status, code, message or f"HTTP {status}", retry_after=delay)


class _ErrorDetail(msgspec.Struct):
    code: str
    message: str


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


class RequestFailed(RealtimeClientError):
    """The server answered a ``subscribe`` or ``unsubscribe`` with an ``error`` message
    (``unknown_channel``, ``unknown_filter``, ``bad_filter_value``, ``forbidden``, ...)."""


class ServerClosed(RealtimeClientError):
    """The server closed the connection with a code after which the client does not
    reconnect (1008 without a token function, 1007, 1009)."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"closed_{close_code}", f"the server closed with {close_code} {reason}")
        self.close_code = close_code
        self.reason = reason


class GaveUp(RealtimeClientError):
    """``max_reconnect_attempts`` attempts in a row failed."""


class _Fatal(Exception):
    """Ends the connection loop with ``error`` (state ``failed``)."""

    def __init__(self, error: RealtimeClientError) -> None:
        self.error = error


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ConnectionStatus:
    """A snapshot of the client's connection, given to ``on_connection_change`` callbacks."""

    state: State
    #: The retry being waited for or made: 1 for the first after a failed attempt or a lost
    #: connection; 0 when connected.
    attempt: int = 0
    #: This connection's id (``connection_established``); None when not connected.
    client_id: str | None = None
    user_id: str | None = None
    roles: tuple[str, ...] = ()
    #: Why the last connection or attempt ended, for people.
    last_error: str | None = None
    close_code: int | None = None
    close_reason: str | None = None
    #: Seconds until the next attempt, while ``reconnecting``.
    next_retry_in: float | None = None
    #: The last event id seen per channel: where a reconnect resumes.
    last_ids: Mapping[str, str] = field(default_factory=dict)
    #: Per channel resumed on the current connection, whether the server filled the gap.
    recovered: Mapping[str, bool] = field(default_factory=dict)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(n-1))]``."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))


def data_matches(data: Any, filters: Mapping[str, Any]) -> bool:
    """``recent()``'s test: each key of ``filters`` names a field of ``data``; the value is
    equal, or ``in`` a list/tuple/set given, or makes a given function return true."""
    if not filters:
        return True
    if not isinstance(data, Mapping):
        return False
    for key, want in filters.items():
        if key not in data:
            return False
        value = data[key]
        if callable(want):
            if not want(value):
                return False
        elif isinstance(want, list | tuple | set | frozenset):
            if value not in want:
                return False
        elif value != want:
            return False
    return True


# --------------------------------------------------------------------------- internals


class _Feed:
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


@dataclass
class _Pending:
    """A client message awaiting its reply (the server answers in order)."""

    kind: Literal["subscribe", "unsubscribe", "ping"]
    future: asyncio.Future[Any] | None = None
    #: subscribe: the channels asked for and their filter
    channels: list[str] = field(default_factory=list)
    filter: dict[str, Any] | None = None
    #: sent while (re)connecting: the connection counts as up once all of these answered
    welcome: bool = False


class _Lost(Exception):
    """The connection ended before the reply came."""


class _Retry(Exception):
    """This attempt failed in a way the next one may not (e.g. Redis briefly away)."""


def _filter_key(filter: Mapping[str, Any] | None) -> bytes:
    return msgspec.json.encode(dict(filter or {}), order="sorted")


async def _call(callback: Callable[..., Any], *args: Any) -> None:
    """Run a handler (sync or async); its failure is logged, never raised."""
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("realtime client handler %r failed", callback)


# --------------------------------------------------------------------------- the client


class RealtimeClient:
    """A connection to a sanic-realtime server that survives network trouble.

    ``url`` is the server's general WebSocket route, ``ws://host:port{url_prefix}``
    (``/ws`` by default). ``channels`` and ``filters`` are the first subscription (more
    with :meth:`subscribe`). ``token`` is a JWT, or a function (sync or async) called
    before every attempt, sent as ``Authorization: Bearer``.
    """

    def __init__(
        self,
        url: str,
        *,
        channels: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        token: Token = None,
        reconnect: bool = True,
        min_reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 20.0,
        max_reconnect_attempts: int | None = None,
        ping_interval: float | None = 30.0,
        pong_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        cache_size: int = 1000,
        queue_size: int = 1000,
        max_message_size: int | None = 16 * 1024 * 1024,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as e:
            raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r} ({e})") from None
        if max_reconnect_attempts is not None and max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must be >= 0 (None: unlimited)")
        self.url = url
        self.token = token
        self.reconnect = reconnect
        self.min_reconnect_delay = min_reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.max_reconnect_attempts = max_reconnect_attempts
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.connect_timeout = connect_timeout
        self.cache_size = cache_size
        self.queue_size = queue_size
        self.max_message_size = max_message_size
        self.headers = dict(headers or {})

        #: channel -> filter: what to (re)subscribe on every connection
        self._subs: dict[str, dict[str, Any] | None] = {}
        if channels:
            for channel in channels:
                self._subs[channel] = dict(filters) if filters else None
        elif filters:
            raise ValueError("filters without channels: pass channels=[...] too")
        self._last_ids: dict[str, str] = {}
        self._recovered: dict[str, bool] = {}
        self._status = ConnectionStatus("disconnected")
        self._handlers: dict[str, list[Handler]] = {}
        self._status_handlers: list[StatusHandler] = []
        self._feed = _Feed(queue_size)
        self._latest: dict[str, Event] = {}
        self._latest_typed: dict[tuple[str, str], Event] = {}
        self._recent: dict[str, deque[Event]] = {}

        self._ws: ClientConnection | None = None
        #: sends and the replies they wait for stay in one order
        self._send_lock = asyncio.Lock()
        self._pending: deque[_Pending] = deque()
        self._client_info: tuple[str | None, str | None, tuple[str, ...]] = (None, None, ())
        self._closed_by: tuple[int, str] | None = None
        #: the reader has recorded why the connection ended
        self._close_noted = False
        #: consecutive failed attempts (reset once connected)
        self._attempt = 0
        self._ever_connected = False
        self._welcome_left = 0
        self._runner: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closing = False
        self._failure: RealtimeClientError | None = None
        self._last_rx = 0.0
        #: the reader waits for an ``async for`` loop to take events: not a dead server
        self._consumer_blocked = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ public surface

    @property
    def status(self) -> ConnectionStatus:
        """The connection's state, with the current ``last_ids``."""
        return replace(self._status, last_ids=dict(self._last_ids), recovered=dict(self._recovered))

    @property
    def is_connected(self) -> bool:
        return self._status.state == "connected"

    @property
    def channels(self) -> list[str]:
        """The channels this client subscribes to (on every connection)."""
        return list(self._subs)

    def on(self, type: str, callback: Handler) -> Callable[[], None]:
        """Call ``callback(event)`` (sync or async) for each message of ``type``; ``"*"``
        for all. Returns a function that removes the callback. Callbacks run in order,
        in the reading task: a slow one slows reading."""
        self._handlers.setdefault(type, []).append(callback)
        return lambda: self._remove(self._handlers.get(type, []), callback)

    def on_connection_change(self, callback: StatusHandler) -> Callable[[], None]:
        """Call ``callback(status)`` on every change of :attr:`status`."""
        self._status_handlers.append(callback)
        return lambda: self._remove(self._status_handlers, callback)

    @staticmethod
    def _remove(items: list[Any], item: Any) -> None:
        with contextlib.suppress(ValueError):
            items.remove(item)

    def latest(self, channel: str, type: str | None = None) -> Event | None:
        """The newest event (or ``initial_state``) received on ``channel``, of ``type``
        if given; None if none yet."""
        if type is None:
            return self._latest.get(channel)
        return self._latest_typed.get((channel, type))

    def recent(self, channel: str, n: int = 100, **filters: Any) -> list[Event]:
        """The last ``n`` events of ``channel`` (oldest first) whose data match
        ``filters`` (see :func:`data_matches`); from the last ``cache_size`` kept."""
        kept = self._recent.get(channel)
        if not kept or n <= 0:
            return []
        found: list[Event] = []
        for event in reversed(kept):
            if data_matches(event.data, filters):
                found.append(event)
                if len(found) == n:
                    break
        found.reverse()
        return found

    async def __aenter__(self) -> RealtimeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> ConnectionStatus:
        """Connect and subscribe; returns once connected. Failed attempts are retried
        (``max_reconnect_attempts``); raises :class:`Refused` at once for a handshake the
        server refuses for good (400, 401, 403, 404), :class:`RequestFailed` if the first
        subscription is refused, :class:`GaveUp` after the attempts."""
        if self._closing:
            raise RealtimeClientError("closed", "this client was closed; make a new one")
        if self._runner is None:
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._runner = loop.create_task(self._run(), name="realtime-client")
        assert self._ready is not None
        await asyncio.shield(self._ready)
        return self.status

    async def close(self) -> None:
        """Close the connection (1000) and stop reconnecting; ``async for`` loops end."""
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    ws.close(CloseCode.NORMAL, "client closed"), self.connect_timeout
                )
        runner = self._runner
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        self._finish(None)
        if self._status.state != "failed":
            self._recovered = {}
            self._set_status("disconnected", attempt=0, client_id=None, next_retry_in=None)

    async def subscribe(
        self, channels: Sequence[str] | str, filter: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Subscribe to ``channels`` with ``filter`` (replacing an earlier filter of a
        channel). Connected: waits for the server's answer and returns the channels
        subscribed (``"all"`` expanded), or raises :class:`RequestFailed`. Otherwise the
        subscription is recorded and made at the next connection."""
        names = [channels] if isinstance(channels, str) else list(channels)
        if not names:
            raise ValueError("subscribe needs at least one channel")
        flt = dict(filter) if filter else None
        ws = self._ws
        if ws is None:
            for name in names:
                self._subs[name] = flt
            return names
        pending = _Pending("subscribe", asyncio.get_running_loop().create_future(), names, flt)
        try:
            # No since: a channel already subscribed switches filters without a gap (a
            # replay would repeat the events in flight); a new one starts from now.
            reply = await self._request(
                ws, Subscribe(channels=names, filter=flt or {}, positions=True), pending
            )
        except _Lost:
            for name in names:  # made on the next connection instead
                self._subs[name] = flt
            return names
        return list(reply.get("channels", names))

    async def unsubscribe(self, channels: Sequence[str] | str) -> list[str]:
        """Stop receiving ``channels`` (``"all"``: every one); returns those removed."""
        names = [channels] if isinstance(channels, str) else list(channels)
        ws = self._ws
        if ws is not None:
            pending = _Pending("unsubscribe", asyncio.get_running_loop().create_future())
            with contextlib.suppress(_Lost):  # if lost: not made on the next connection
                await self._request(ws, Unsubscribe(channels=names), pending)  # raises if refused
        if "all" in names:
            names = list(self._subs)
        removed = [n for n in names if self._subs.pop(n, _ABSENT) is not _ABSENT]
        for name in removed:  # a later subscribe starts from then, not from here
            self._last_ids.pop(name, None)
            self._recovered.pop(name, None)
        return removed

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        """Every message :meth:`on` would see, in order, from the client's start, until
        :meth:`close` (the loop ends) or the client gives up (the loop raises why).
        Loops running at once share the messages (each goes to one of them)."""
        feed = self._feed
        feed.consumers += 1
        try:
            while True:
                try:
                    event = await feed.get()
                except StopAsyncIteration:
                    return
                yield event
        finally:
            feed.leave()

    # ------------------------------------------------------------ status

    def _set_status(self, state: State, **changes: Any) -> None:
        status = replace(
            self._status,
            state=state,
            last_ids=dict(self._last_ids),
            recovered=dict(self._recovered),
            **changes,
        )
        if status == self._status:
            return
        self._status = status
        for callback in list(self._status_handlers):
            try:
                result = callback(status)
                if inspect.isawaitable(result):
                    self._spawn(_call(lambda r=result: r))
            except Exception:
                logger.exception("realtime client status handler %r failed", callback)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, error: RealtimeClientError | None) -> None:
        """The client stops for good: iterators end (raising ``error``), connect()
        returns or raises."""
        self._failure = self._failure or error
        self._feed.end(error)
        ready = self._ready
        if ready is not None and not ready.done():
            if error is not None:
                ready.set_exception(error)
            else:
                ready.set_exception(RealtimeClientError("closed", "the client was closed"))
            ready.exception()  # retrieved: no "never retrieved" warning if nobody waits

    # ------------------------------------------------------------ the connection loop

    def _stopping(self) -> bool:
        return self._closing

    async def _run(self) -> None:
        while not self._stopping():
            retry_after: float | None = None
            try:
                await self._connect_once()
            except _Fatal as fatal:
                self._fail(fatal.error)
                return
            except Refused as e:  # a retryable refusal (429, 503, ...)
                retry_after = e.retry_after
                self._note_error(str(e))
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed, _Lost, _Retry) as e:
                if not self._stopping() and not self._close_noted:
                    self._note_error(_describe(e))
            except Exception as e:  # a bug: fail loudly rather than hang connect()
                logger.exception("realtime client failed")
                self._fail(RealtimeClientError("client_error", f"{type(e).__name__}: {e}"))
                return
            if self._stopping():
                return
            if not self.reconnect:
                self._fail(GaveUp("connection_lost", self._status.last_error or "connection lost"))
                return
            self._attempt += 1
            attempt = self._attempt
            limit = self.max_reconnect_attempts
            if limit is not None and attempt > limit:
                what = "reconnect" if self._ever_connected else "connect"
                retries = {0: "no retry allowed", 1: "1 retry failed"}.get(
                    limit, f"{limit} retries failed"
                )
                self._fail(
                    GaveUp(
                        "gave_up",
                        f"could not {what} ({retries}); last error: {self._status.last_error}",
                    )
                )
                return
            delay = backoff(attempt, self.min_reconnect_delay, self.max_reconnect_delay)
            if retry_after is not None:
                delay = max(delay, retry_after)
            self._set_status(
                "reconnecting",
                attempt=attempt,
                client_id=None,
                next_retry_in=round(delay, 3),
            )
            await asyncio.sleep(delay)

    def _note_error(self, message: str) -> None:
        self._status = replace(self._status, last_error=message)

    def _fail(self, error: RealtimeClientError) -> None:
        self._set_status("failed", client_id=None, next_retry_in=None, last_error=str(error))
        self._finish(error)

    async def _token(self) -> str | None:
        token = self.token
        if token is None or isinstance(token, str):
            return token
        try:
            value = token()
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:  # retried: the token service may be back next time
            raise _Retry(f"the token function failed: {type(e).__name__}: {e}") from e
        return None if value is None else str(value)

    async def _connect_once(self) -> None:
        self._close_noted = False
        first = self._status.state in ("disconnected", "connecting")
        if first:
            self._set_status("connecting", next_retry_in=None)
        headers = dict(self.headers)
        token = await self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            ws = await connect(
                self.url,
                additional_headers=headers,
                open_timeout=self.connect_timeout,
                ping_interval=None,  # the app-level ping below also counts as traffic
                close_timeout=5,
                max_size=self.max_message_size,
            )
        except InvalidStatus as e:
            response = e.response
            refused = Refused.from_response(
                response.status_code,
                bytes(response.body or b""),
                response.headers.get("Retry-After"),
            )
            if response.status_code == 429 or response.status_code >= 500:
                raise refused from None
            if response.status_code == 401 and callable(self.token):
                raise refused from None  # the function may give a valid token next time
            raise _Fatal(refused) from None
        try:
            await self._serve(ws)
        finally:
            self._ws = None
            self._welcome_left = 0
            pending, self._pending = self._pending, deque()
            for item in pending:
                if item.future is not None and not item.future.done():
                    item.future.set_exception(_Lost())
                    item.future.exception()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)

    async def _serve(self, ws: ClientConnection) -> None:
        """One connection: the welcome, the subscriptions, then messages until it ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        raw = await asyncio.wait_for(ws.recv(), self.connect_timeout)
        try:
            welcome = _decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError) as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise _Fatal(
                RealtimeClientError(
                    "protocol_error", f"the server's first message is not an envelope: {reason}"
                )
            ) from None
        if welcome.type != "connection_established":
            raise _Fatal(
                RealtimeClientError(
                    "protocol_error", f"expected connection_established, got {welcome.type!r}"
                )
            )
        data = welcome.data if isinstance(welcome.data, dict) else {}
        if data.get("channels"):
            raise _Fatal(
                RealtimeClientError(
                    "not_general_route",
                    f"{self.url} subscribes to {', '.join(data['channels'])} by itself: give "
                    "the general route (ws://host/ws) and channels=[...] instead",
                )
            )
        self._ws = ws
        self._recovered = {}
        self._last_rx = loop.time()
        self._client_info = (
            data.get("client_id"),
            data.get("user_id"),
            tuple(data.get("roles") or ()),
        )
        await self._send_welcome(ws)
        timer = loop.call_at(deadline, self._welcome_timeout, ws)
        heartbeat = loop.create_task(self._heartbeat(ws))
        try:
            await self._read(ws)
        finally:
            timer.cancel()
            heartbeat.cancel()

    def _welcome_timeout(self, ws: ClientConnection) -> None:
        if self._welcome_left:
            self._note_error(
                f"the server did not answer the subscriptions within {self.connect_timeout}s"
            )
            ws.transport.abort()

    async def _send_welcome(self, ws: ClientConnection) -> None:
        """Re-subscribe every channel, one message per distinct filter, resuming each
        from its last id."""
        groups: dict[bytes, tuple[dict[str, Any] | None, list[str]]] = {}
        for channel, flt in self._subs.items():
            groups.setdefault(_filter_key(flt), (flt, []))[1].append(channel)
        if not groups:
            self._connected()
            return
        self._welcome_left = len(groups)
        async with self._send_lock:
            for flt, channels in groups.values():
                since = {c: self._last_ids[c] for c in channels if c in self._last_ids}
                self._pending.append(_Pending("subscribe", None, channels, flt, welcome=True))
                await ws.send(
                    _encoder.encode(
                        Subscribe(channels=channels, filter=flt or {}, since=since, positions=True)
                    ),
                    text=True,
                )

    def _connected(self) -> None:
        self._attempt, self._ever_connected = 0, True
        client_id, user_id, roles = self._client_info
        self._set_status(
            "connected",
            attempt=0,
            client_id=client_id,
            user_id=user_id,
            roles=roles,
            next_retry_in=None,
            close_code=None,
            close_reason=None,
        )
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    async def _request(self, ws: ClientConnection, message: Any, pending: _Pending) -> Any:
        try:
            async with self._send_lock:
                self._pending.append(pending)
                await ws.send(_encoder.encode(message), text=True)
        except ConnectionClosed:
            raise _Lost() from None
        assert pending.future is not None
        return await pending.future

    async def _heartbeat(self, ws: ClientConnection) -> None:
        """Send a ``ping`` every ``ping_interval``; no message at all within
        ``pong_timeout`` after it means the connection is dead: abort it."""
        interval = self.ping_interval
        if not interval:
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            if self._welcome_left:
                continue
            sent = loop.time()
            try:
                async with self._send_lock:
                    self._pending.append(_Pending("ping"))
                    await ws.send(_encoder.encode(Ping()), text=True)
            except ConnectionClosed:
                return
            await asyncio.sleep(self.pong_timeout)
            if self._last_rx < sent and not self._consumer_blocked:
                self._note_error(
                    f"heartbeat timeout: nothing received for {self.pong_timeout:g}s after a ping"
                )
                self._closed_by = (CLOSE_HEARTBEAT, "heartbeat timeout")
                ws.transport.abort()
                return

    async def _read(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        self._closed_by = None
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as e:
                self._on_closed(e)
                raise
            self._last_rx = loop.time()
            try:
                message = _decoder.decode(raw)
            except (msgspec.DecodeError, RecursionError) as e:  # ValidationError included
                reason = "nested too deeply" if isinstance(e, RecursionError) else e
                logger.warning(
                    "realtime client: ignoring a message that is not an envelope: %s", reason
                )
                continue
            if message.id is not None:
                await self._deliver(message)
            else:
                await self._control(message)

    def _on_closed(self, e: ConnectionClosed) -> None:
        rcvd = e.rcvd
        if rcvd is not None:
            code, reason = rcvd.code, rcvd.reason
        elif self._closed_by is not None:
            code, reason = self._closed_by
        else:
            code, reason = 1006, "connection lost without a close frame"
        if self._closing:
            return
        if code in _FATAL_CLOSES and not (code == CloseCode.POLICY and callable(self.token)):
            self._status = replace(self._status, close_code=code, close_reason=reason)
            raise _Fatal(ServerClosed(code, reason))
        self._close_noted = True
        last_error = self._status.last_error if code == CLOSE_HEARTBEAT else None
        self._status = replace(
            self._status,
            close_code=code,
            close_reason=reason,
            last_error=last_error or f"closed by the server: {code} {reason}".strip(),
        )

    async def _control(self, message: Event) -> None:
        kind = message.type
        data = message.data if isinstance(message.data, dict) else {}
        if kind in ("subscribed", "pong") or (
            (kind == "unsubscribed" and "reason" not in data)
            or (kind == "error" and data.get("code") not in _UNSOLICITED_ERRORS)
        ):
            if self._pending:
                await self._reply(self._pending.popleft(), message, data)
                return
            logger.warning("realtime client: %s message with no request waiting", kind)
        if kind == "unsubscribed":  # the server removed channels (a refresh's roles)
            for channel in data.get("channels", ()):
                self._subs.pop(channel, None)
        await self._dispatch(message)

    async def _reply(self, pending: _Pending, message: Event, data: dict[str, Any]) -> None:
        future = pending.future
        if message.type == "error":
            error = RequestFailed(str(data.get("code")), str(data.get("message")))
            if pending.welcome and error.code in _TRANSIENT_ERRORS:
                raise _Retry(str(error))
            if pending.welcome:
                if self._status.state in ("connecting", "disconnected"):
                    raise _Fatal(error)  # the first subscription is wrong: say so at once
                # A subscription that worked before is now refused (e.g. roles changed):
                # drop it and tell the app.
                for channel in pending.channels:
                    self._subs.pop(channel, None)
                self._status = replace(self._status, last_error=str(error))
                await self._dispatch(
                    Event("error", data={**data, "channels": list(pending.channels)})
                )
            elif future is not None and not future.done():
                future.set_exception(error)
        elif pending.kind == "subscribe" and message.type == "subscribed":
            channels = [str(c) for c in data.get("channels", pending.channels)]
            for channel in pending.channels:
                if channel == "all":
                    self._subs.pop(channel, None)
            for channel in channels:
                self._subs[channel] = pending.filter
            recovered = data.get("recovered") or {}
            self._recovered.update({str(c): bool(ok) for c, ok in recovered.items()})
            stale = {c: self._last_ids.get(c) for c, ok in recovered.items() if not ok}
            # Where each channel stood: the resume point until an event arrives (and,
            # after a failed resume, instead of the id the server could not resume from).
            for channel, position in (data.get("positions") or {}).items():
                if channel not in self._last_ids or channel in stale:
                    self._last_ids[channel] = str(position)
            if future is not None and not future.done():
                future.set_result(data)
            for channel, since in stale.items():
                await self._dispatch(
                    Event(
                        "resume_failed", channel=channel, data={"channel": channel, "since": since}
                    )
                )
        elif future is not None and not future.done():
            future.set_result(data)
        if pending.welcome:
            self._welcome_left -= 1
            if not self._welcome_left:
                self._connected()

    async def _deliver(self, event: Event) -> None:
        channel = event.channel
        if channel is not None:
            assert event.id is not None
            self._last_ids[channel] = event.id
            kept = self._recent.get(channel)
            if kept is None:
                kept = self._recent[channel] = deque(maxlen=self.cache_size)
            kept.append(event)
        await self._dispatch(event)

    async def _dispatch(self, event: Event) -> None:
        channel = event.channel
        if channel is not None and (event.id is not None or event.type == "initial_state"):
            self._latest[channel] = event
            self._latest_typed[(channel, event.type)] = event
        for handler in (*self._handlers.get(event.type, ()), *self._handlers.get("*", ())):
            await _call(handler, event)
        feed = self._feed
        self._consumer_blocked = feed.blocking
        try:
            await feed.put(event)
        finally:
            self._consumer_blocked = False


_ABSENT: Any = object()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out connecting"
    if isinstance(error, ConnectionClosed):
        rcvd = error.rcvd
        if rcvd is not None:
            return f"closed by the server: {rcvd.code} {rcvd.reason}".strip()
        return "connection lost"
    if isinstance(error, _Lost):
        return "connection lost"
    if isinstance(error, _Retry):
        return str(error)
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------- publishing


class _Broadcast(msgspec.Struct, omit_defaults=True):
    channel: str
    type: str
    data: Any = None
    target: dict[str, str] | None = None


class _BroadcastReply(msgspec.Struct):
    success: bool
    recipients: int
    id: str


DEFAULT_BROADCAST_PATH = "/admin/ws/broadcast"


def broadcast_url(url: str) -> str:
    """The admin broadcast URL from a server URL: ``ws``/``wss`` become ``http``/``https``;
    a URL without a path gets the default broadcast path."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_BROADCAST_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def publish(
    url: str,
    channel: str,
    type: str,
    data: Any = None,
    *,
    token: str | None = None,
    user_id: str | None = None,
    role: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Publish through the admin broadcast route (blocking; ``asyncio.to_thread`` it from
    async code). ``url``: the server (``http://host:8000``, the default path is added) or
    the route's full URL. Returns ``{"success", "recipients", "id"}``; raises
    :class:`Refused` with the server's status, code and message."""
    target = {k: v for k, v in (("user_id", user_id), ("role", role)) if v is not None}
    body = _encoder.encode(_Broadcast(channel, type, data, target or None))
    request = urllib.request.Request(broadcast_url(url), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        raise Refused.from_response(e.code, e.read(), e.headers.get("Retry-After")) from None
    try:
        reply = msgspec.json.decode(raw, type=_BroadcastReply)
    except (msgspec.DecodeError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise RealtimeClientError(
            "protocol_error", f"the server's reply is not a broadcast reply: {reason}"
        ) from None
    return msgspec.structs.asdict(reply)
