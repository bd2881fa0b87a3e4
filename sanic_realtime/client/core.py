"""The client's public surface: :class:`RealtimeClient`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import msgspec
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from ..protocol import (
    CloseCode,
    Presence,
    PresenceData,
    Publish,
    PublishedData,
    Subscribe,
    Unsubscribe,
)
from .connection import Connection
from .errors import Dropped, Lost, NoReply, RealtimeClientError
from .event import PRESENCE, PUBLISHED, Event, Handler, encoder, wire_type
from .state import Pending, Token
from .status import ConnectionStatus, StatusHandler

__all__ = ["RealtimeClient"]

_ABSENT: Any = object()
_T = TypeVar("_T")


class RealtimeClient(Connection):
    """A connection to a sanic-realtime server that survives network trouble.

    ``url`` is the server's general WebSocket route, ``ws://host:port{url_prefix}``
    (``/ws`` by default). ``channels`` and ``filters`` are the first subscription (more
    with :meth:`subscribe`). ``token`` is a JWT, or a function (sync or async) called
    before every attempt, sent as ``Authorization: Bearer``. ``request_timeout`` bounds
    the wait for the reply to :meth:`presence` and :meth:`publish`, of which at most
    ``max_pending_requests`` may await their replies at once.
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
        request_timeout: float = 10.0,
        max_pending_requests: int = 100,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as e:
            raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r} ({e})") from None
        if max_reconnect_attempts is not None and max_reconnect_attempts < 0:
            raise ValueError("max_reconnect_attempts must be >= 0 (None: unlimited)")
        if max_pending_requests < 1:
            raise ValueError("max_pending_requests must be >= 1")
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
        self.request_timeout = request_timeout
        self.max_pending_requests = max_pending_requests

        super().__init__(queue_size)
        if channels:
            for channel in channels:
                self._subs[channel] = dict(filters) if filters else None
        elif filters:
            raise ValueError("filters without channels: pass channels=[...] too")

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
        """Call ``callback(event)`` (sync or async) for each message of ``type`` (an event
        type, or a control message such as ``presence_join``, ``presence_leave``,
        ``initial_state``); ``"*"`` for all. Returns a function that removes the callback.
        Callbacks run in order, in the reading task: a slow one slows reading."""
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
        return self._cache.latest(channel, type)

    def recent(self, channel: str, n: int = 100, **filters: Any) -> list[Event]:
        """The last ``n`` events of ``channel`` (oldest first) whose data match
        ``filters`` (see :func:`data_matches`); from the last ``cache_size`` kept."""
        return self._cache.recent(channel, n, filters)

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
        pending = Pending(Subscribe, asyncio.get_running_loop().create_future(), names, flt)
        try:
            # No since: a channel already subscribed switches filters without a gap (a
            # replay would repeat the events in flight); a new one starts from now.
            reply = await self._request(
                ws, Subscribe(channels=names, filter=flt or {}, positions=True), pending
            )
        except Lost:
            for name in names:  # made on the next connection instead
                self._subs[name] = flt
            return names
        return list(reply.get("channels", names))

    async def unsubscribe(self, channels: Sequence[str] | str) -> list[str]:
        """Stop receiving ``channels`` (``"all"``: every one); returns those removed."""
        names = [channels] if isinstance(channels, str) else list(channels)
        ws = self._ws
        if ws is not None:
            pending = Pending(Unsubscribe, asyncio.get_running_loop().create_future())
            with contextlib.suppress(Lost):  # if lost: not made on the next connection
                await self._request(ws, Unsubscribe(channels=names), pending)  # raises if refused
        if "all" in names:
            names = list(self._subs)
        removed = [n for n in names if self._subs.pop(n, _ABSENT) is not _ABSENT]
        for name in removed:  # a later subscribe starts from then, not from here
            self._last_ids.pop(name, None)
            self._recovered.pop(name, None)
        return removed

    async def presence(self, channel: str, *, timeout: float | None = None) -> PresenceData:
        """Who is subscribed to ``channel``, a presence channel this client subscribes to
        (any channel, with the admin role), on every worker: ``users`` (each with
        ``user_id``, ``role``, ``connections`` and ``since``; None when the channel lists
        no users, ``presence.list: false``), ``count`` (distinct users), ``anonymous``
        (connections without a user) and ``truncated`` (True when ``users`` holds only
        the first of ``count``, else ``msgspec.UNSET``, which is false): the protocol's
        :class:`~sanic_realtime.protocol.PresenceData`, as ``Realtime.presence()`` gives
        it on the server. Raises :class:`RequestFailed` with the server's code
        (``forbidden``: not subscribed; ``no_presence``; ``unknown_channel``, ...), or
        :class:`NoReply` (not connected, connection lost, no reply within ``timeout``
        seconds, default ``request_timeout``)."""
        reply = await self._ask(lambda ref: Presence(channel=channel, ref=ref), PRESENCE, timeout)
        return _reply_data(reply, PresenceData)

    async def publish(
        self, channel: str, event: str, data: Any = None, *, timeout: float | None = None
    ) -> str | None:
        """Send a client message of type ``event`` to the subscribers of ``channel`` (its
        ``client_messages``; this client must subscribe to it). Returns the event's id
        when the channel keeps ``event`` in history, None for an ephemeral type (delivered
        live, never replayed). Raises :class:`Dropped` (a :class:`RequestFailed`, code
        ``dropped``) when the channel's message handler dropped it, :class:`RequestFailed`
        with the server's code when refused (``forbidden``, ``unknown_type``,
        ``message_too_large``, ``rate_limited``, ``busy``, ``handler_failed``,
        ``handler_timeout``, ``invalid_message``, an app's own, ...), :class:`NoReply`
        when no reply came (``connection_lost``, ``request_timeout``: it may have been
        sent) or it was not sent (``not_connected``, ``too_many_requests``)."""
        reply = await self._ask(
            lambda ref: Publish(channel=channel, event=event, data=data, ref=ref),
            PUBLISHED,
            timeout,
        )
        result = _reply_data(reply, PublishedData)
        if result.dropped is True:
            raise Dropped(
                "dropped", f"the server's handler of {event!r} on {channel!r} dropped the message"
            )
        return result.id

    async def _ask(
        self, build: Callable[[str], Presence | Publish], expect: str, timeout: float | None
    ) -> Event:
        """Send the message ``build(ref)`` makes and return its reply (of type ``expect``),
        matched by ``ref``."""
        message = build(f"r{next(self._refs)}")
        kind, ref = wire_type(type(message)), message.ref
        assert ref is not None
        frame = encoder.encode(message)  # data that is not JSON: raises here, nothing sent
        ws = self._ws
        if ws is None:
            raise NoReply("not_connected", f"not connected ({self._status.state}): {kind} not sent")
        if self._asking >= self.max_pending_requests:
            raise NoReply(
                "too_many_requests",
                f"{self._asking} requests await their replies (max_pending_requests): "
                f"{kind} not sent",
            )
        pending = Pending(type(message), asyncio.get_running_loop().create_future(), ref=ref)
        wait = self.request_timeout if timeout is None else timeout
        self._asking += 1
        try:
            reply = await asyncio.wait_for(self._exchange(ws, frame, pending), wait)
        except asyncio.TimeoutError:  # not the built-in TimeoutError on Python 3.10
            raise NoReply("request_timeout", f"no reply to {kind} within {wait:g}s") from None
        except Lost:
            raise NoReply(
                "connection_lost", f"the connection ended before the reply to {kind}"
            ) from None
        finally:
            self._asking -= 1
        if reply.type != expect:
            raise RealtimeClientError(
                "protocol_error", f"the server answered {kind} with {reply.type!r}"
            )
        return reply

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


def _reply_data(reply: Event, into: type[_T]) -> _T:
    try:
        return msgspec.convert(reply.data, into)
    except msgspec.ValidationError as e:
        raise RealtimeClientError(
            "protocol_error", f"the server's {reply.type} reply is not one: {e}"
        ) from None
