"""The connection loop: connect, subscribe (resuming each channel), keep the connection
alive with pings, and reconnect with backoff when it ends (``Connection``, a base of
:class:`~sanic_realtime.client.RealtimeClient`)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Mapping
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..protocol import Ping, Subscribe
from .errors import Fatal, GaveUp, Lost, RealtimeClientError, Redirect, Refused, Retry, describe
from .event import CONNECTION_ESTABLISHED, Event, decoder, encoder, logger
from .receive import CLOSE_HEARTBEAT, Receiver
from .state import Pending
from .status import backoff
from .urls import plan_from_url

__all__ = ["Connection"]


def filter_key(filter: Mapping[str, Any] | None) -> bytes:
    return msgspec.json.encode(dict(filter or {}), order="sorted")


class Connection(Receiver):
    """The connection loop of a client."""

    def _stopping(self) -> bool:
        return self._closing

    async def _run(self) -> None:
        while not self._stopping():
            retry_after: float | None = None
            try:
                await self._connect_once()
            except Redirect:
                continue  # at once: a channel URL became the general route
            except Fatal as fatal:
                self._fail(fatal.error)
                return
            except Refused as e:  # a retryable refusal (429, 503, ...)
                retry_after = e.retry_after
                self._note_error(str(e))
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed, Lost, Retry) as e:
                if not self._stopping() and not self._close_noted:
                    self._note_error(describe(e))
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

    async def _token(self) -> str | None:
        token = self.token
        if token is None or isinstance(token, str):
            return token
        try:
            value = token()
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:  # retried: the token service may be back next time
            raise Retry(f"the token function failed: {type(e).__name__}: {e}") from e
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
            raise Fatal(refused) from None
        try:
            await self._serve(ws)
        finally:
            self._ws = None
            self._welcome_left = 0
            pending, self._pending = self._pending, deque()
            by_ref, self._by_ref = self._by_ref, {}
            for item in (*pending, *by_ref.values()):
                if item.future is not None and not item.future.done():
                    item.future.set_exception(Lost())
                    item.future.exception()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1)

    async def _serve(self, ws: ClientConnection) -> None:
        """One connection: the welcome, the subscriptions, then messages until it ends."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        raw = await asyncio.wait_for(ws.recv(), self.connect_timeout)
        try:
            welcome = decoder.decode(raw)
        except (msgspec.DecodeError, RecursionError) as e:
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
            raise Fatal(
                RealtimeClientError(
                    "protocol_error", f"the server's first message is not an envelope: {reason}"
                )
            ) from None
        if welcome.type != CONNECTION_ESTABLISHED:
            raise Fatal(
                RealtimeClientError(
                    "protocol_error", f"expected {CONNECTION_ESTABLISHED}, got {welcome.type!r}"
                )
            )
        data = welcome.data if isinstance(welcome.data, dict) else {}
        if data.get("channels"):
            plan = plan_from_url(self.url, data["channels"])
            if self._subs:
                raise Fatal(
                    RealtimeClientError(
                        "not_general_route",
                        f"{self.url} subscribes to {', '.join(data['channels'])} by itself: "
                        "use that URL alone, or the general route "
                        f"({plan.url}) with the channels and filters you want",
                    )
                )
            # A channel URL: from now on, the general route with its channel and filters,
            # so that every reconnection can resume (and subscribe() works as usual).
            self.url = plan.url
            self._subs.update(plan.subs)
            self._last_ids.update(plan.since)
            with contextlib.suppress(Exception):
                await ws.close(1000, "using the general route")
            raise Redirect(plan.url)
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
            groups.setdefault(filter_key(flt), (flt, []))[1].append(channel)
        if not groups:
            self._connected()
            return
        self._welcome_left = len(groups)
        async with self._send_lock:
            for flt, channels in groups.values():
                since = {c: self._last_ids[c] for c in channels if c in self._last_ids}
                self._pending.append(Pending(Subscribe, None, channels, flt, welcome=True))
                await ws.send(
                    encoder.encode(
                        Subscribe(channels=channels, filter=flt or {}, since=since, positions=True)
                    ),
                    text=True,
                )

    async def _request(self, ws: ClientConnection, message: Any, pending: Pending) -> Any:
        try:
            async with self._send_lock:
                self._pending.append(pending)
                await ws.send(encoder.encode(message), text=True)
        except ConnectionClosed:
            raise Lost() from None
        assert pending.future is not None
        return await pending.future

    async def _exchange(self, ws: ClientConnection, frame: bytes, pending: Pending) -> Event:
        """Send a message with a ``ref`` and wait for the reply carrying it (or the
        error for it: :class:`RequestFailed`); :class:`Lost` if the connection ends."""
        assert pending.ref is not None and pending.future is not None
        try:
            async with self._send_lock:
                self._by_ref[pending.ref] = pending
                await ws.send(frame, text=True)
            reply: Event = await pending.future
            return reply
        except ConnectionClosed:
            raise Lost() from None
        finally:
            if self._by_ref.get(pending.ref) is pending:
                del self._by_ref[pending.ref]

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
                    self._pending.append(Pending(Ping))
                    await ws.send(encoder.encode(Ping()), text=True)
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
