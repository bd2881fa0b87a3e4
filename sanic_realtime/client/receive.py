"""Reading a connection: events, control messages, the replies to requests, and how a
close is taken (``Receiver``, a base of :class:`~sanic_realtime.client.RealtimeClient`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, Final

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..protocol import CloseCode, InBandErrorCode, Subscribe
from .errors import Fatal, RequestFailed, Retry, ServerClosed
from .event import (
    ERROR,
    PONG,
    RESUME_FAILED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Event,
    call_handler,
    decoder,
    logger,
)
from .state import ClientState, Pending

__all__ = ["CLOSE_HEARTBEAT", "Receiver"]

#: Close codes after which reconnecting would only repeat the failure (1008: the token
#: expired or access was revoked; reconnects anyway when ``token`` is a function).
FATAL_CLOSES: Final = frozenset({CloseCode.INVALID_DATA, CloseCode.POLICY, CloseCode.TOO_BIG})
#: Our close code when the server stopped answering pings (4000-4999: private use).
CLOSE_HEARTBEAT: Final = CloseCode.HEARTBEAT
#: ``error`` messages the server sends on its own, not as a reply to a client message.
UNSOLICITED_ERRORS: Final[frozenset[InBandErrorCode]] = frozenset({"initial_state_failed"})
#: Replies to a (re)subscription that a later attempt may not get: retried, not fatal.
TRANSIENT_ERRORS: Final[frozenset[InBandErrorCode]] = frozenset({"backplane_unavailable"})
#: What a close without a close frame looks like (RFC 6455 section 7.1.5; never sent).
_ABNORMAL_CLOSURE = 1006


class Receiver(ClientState):
    """The reading side of a connection."""

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
                message = decoder.decode(raw)
            except (msgspec.DecodeError, RecursionError) as e:  # ValidationError included
                reason = "nested too deeply" if isinstance(e, RecursionError) else e
                logger.warning(
                    "realtime client: ignoring a message that is not an envelope: %s", reason
                )
                continue
            if message.is_event:
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
            code, reason = _ABNORMAL_CLOSURE, "connection lost without a close frame"
        if self._closing:
            return
        if code in FATAL_CLOSES and not (code == CloseCode.POLICY and callable(self.token)):
            self._status = replace(self._status, close_code=code, close_reason=reason)
            raise Fatal(ServerClosed(code, reason))
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
        if message.ref is not None:  # the reply to a presence or publish
            pending = self._by_ref.pop(message.ref, None)
            if pending is not None:
                self._answer(pending, message, data)
            else:  # its caller stopped waiting (timeout, cancelled)
                logger.debug("realtime client: %s for %r, no longer awaited", kind, message.ref)
            return
        if kind in (SUBSCRIBED, PONG) or (
            (kind == UNSUBSCRIBED and "reason" not in data)
            or (kind == ERROR and data.get("code") not in UNSOLICITED_ERRORS)
        ):
            if self._pending:
                await self._reply(self._pending.popleft(), message, data)
                return
            logger.warning("realtime client: %s message with no request waiting", kind)
        if kind == UNSUBSCRIBED:  # the server removed channels (a refresh's roles)
            for channel in data.get("channels", ()):
                self._subs.pop(channel, None)
        await self._dispatch(message)

    async def _reply(self, pending: Pending, message: Event, data: dict[str, Any]) -> None:
        future = pending.future
        if message.type == ERROR:
            error = RequestFailed(str(data.get("code")), str(data.get("message")))
            if pending.welcome and error.code in TRANSIENT_ERRORS:
                raise Retry(str(error))
            if pending.welcome:
                if self._status.state in ("connecting", "disconnected"):
                    raise Fatal(error)  # the first subscription is wrong: say so at once
                # A subscription that worked before is now refused (e.g. roles changed):
                # drop it and tell the app.
                for channel in pending.channels:
                    self._subs.pop(channel, None)
                self._status = replace(self._status, last_error=str(error))
                await self._dispatch(
                    Event(ERROR, data={**data, "channels": list(pending.channels)})
                )
            elif future is not None and not future.done():
                future.set_exception(error)
        elif pending.kind is Subscribe and message.type == SUBSCRIBED:
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
                    Event(RESUME_FAILED, channel=channel, data={"channel": channel, "since": since})
                )
        elif future is not None and not future.done():
            future.set_result(data)
        if pending.welcome:
            self._welcome_left -= 1
            if not self._welcome_left:
                self._connected()

    @staticmethod
    def _answer(pending: Pending, message: Event, data: dict[str, Any]) -> None:
        """A reply matched by its ref: the request's result is the reply itself."""
        future = pending.future
        if future is None or future.done():
            return
        if message.type == ERROR:
            future.set_exception(RequestFailed(str(data.get("code")), str(data.get("message"))))
        else:
            future.set_result(message)

    async def _deliver(self, event: Event) -> None:
        channel = event.channel
        if channel is not None:
            # A client message not kept in history (id None) is no resume point: the
            # server could not replay from it.
            if event.id is not None:
                self._last_ids[channel] = event.id
            self._cache.keep(event, self.cache_size)
        await self._dispatch(event)

    async def _dispatch(self, event: Event) -> None:
        self._cache.note(event)
        for handler in (*self._handlers.get(event.type, ()), *self._handlers.get("*", ())):
            await call_handler(handler, event)
        feed = self._feed
        self._consumer_blocked = feed.blocking
        try:
            await feed.put(event)
        finally:
            self._consumer_blocked = False
