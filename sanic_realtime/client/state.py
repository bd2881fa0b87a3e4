"""What a client holds between calls: its options, subscriptions, resume points, caches,
the requests awaiting replies, and the status it reports (``ClientState``, the base of
:class:`~sanic_realtime.client.RealtimeClient`)."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from websockets.asyncio.client import ClientConnection

from ..protocol import Ping, Presence, Publish, Subscribe, Unsubscribe
from .cache import EventCache
from .errors import RealtimeClientError
from .event import Handler, call_handler, logger
from .feed import Feed
from .status import ConnectionStatus, State, StatusHandler

__all__ = ["ClientState", "Pending", "Token"]

Token: TypeAlias = "str | Callable[[], str | Awaitable[str]] | None"


@dataclass
class Pending:
    """A client message awaiting its reply: matched by its ``ref`` when it has one
    (``presence``, ``publish``: their replies may come out of order), else in order (the
    server answers the messages without a ref in the order they came)."""

    kind: type[Subscribe | Unsubscribe | Ping | Presence | Publish]
    future: asyncio.Future[Any] | None = None
    #: subscribe: the channels asked for and their filter
    channels: list[str] = field(default_factory=list)
    filter: dict[str, Any] | None = None
    #: sent while (re)connecting: the connection counts as up once all of these answered
    welcome: bool = False
    #: the message's ``ref``: its reply carries it
    ref: str | None = None


class ClientState:
    """The state of a client, and how its status changes."""

    # The options, set by RealtimeClient.__init__.
    url: str
    token: Token
    reconnect: bool
    min_reconnect_delay: float
    max_reconnect_delay: float
    max_reconnect_attempts: int | None
    ping_interval: float | None
    pong_timeout: float
    connect_timeout: float
    cache_size: int
    queue_size: int
    max_message_size: int | None
    headers: dict[str, str]
    request_timeout: float
    max_pending_requests: int

    def __init__(self, queue_size: int) -> None:
        #: channel -> filter: what to (re)subscribe on every connection
        self._subs: dict[str, dict[str, Any] | None] = {}
        self._last_ids: dict[str, str] = {}
        self._recovered: dict[str, bool] = {}
        self._status = ConnectionStatus("disconnected")
        self._handlers: dict[str, list[Handler]] = {}
        self._status_handlers: list[StatusHandler] = []
        self._feed = Feed(queue_size)
        self._cache = EventCache()

        self._ws: ClientConnection | None = None
        #: sends and the replies they wait for stay in one order
        self._send_lock = asyncio.Lock()
        self._pending: deque[Pending] = deque()
        #: ref -> the request awaiting its reply (at most ``max_pending_requests``)
        self._by_ref: dict[str, Pending] = {}
        self._refs = itertools.count(1)
        #: presence and publish calls under way (sending, or awaiting their replies)
        self._asking = 0
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
                    self._spawn(call_handler(lambda r=result: r))
            except Exception:
                logger.exception("realtime client status handler %r failed", callback)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _note_error(self, message: str) -> None:
        self._status = replace(self._status, last_error=message)

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

    def _fail(self, error: RealtimeClientError) -> None:
        self._set_status("failed", client_id=None, next_retry_in=None, last_error=str(error))
        self._finish(error)

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
