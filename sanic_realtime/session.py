"""One client connection's conversation: read frames, answer them. No sanic.

Every bad frame gets an ``error`` message and the connection stays open; too many
frames close it with 4429. See docs/protocol.md for the messages and codes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .events import Ping, Subscribe, Unsubscribe, decode_client_message, utc_timestamp
from .exceptions import BadMessage, ClientError
from .hub import CLOSE_RATE_LIMITED, Connection, Hub, InitialHook
from .limits import TokenBucket
from .subscriptions import ALL, SubRequest, plan_subscription, resolve_channels

__all__ = ["Session"]

Receive = Callable[[], Awaitable[str | bytes | None]]


class Session:
    def __init__(
        self,
        hub: Hub,
        conn: Connection,
        receive: Receive,
        hooks: Mapping[str, InitialHook],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.conn = conn
        self.receive = receive
        self.hooks = hooks
        self._monotonic = monotonic
        limit = hub.config.client_rate_limit
        self._bucket = TokenBucket(limit.messages, limit.per, monotonic())

    async def run(self, initial: Sequence[SubRequest], info: Mapping[str, Any]) -> None:
        """Send ``connection_established`` (subscribing to ``initial``), then serve
        the client's messages until it goes away or is closed."""
        hub, conn = self.hub, self.conn
        await hub.subscribe(
            conn, initial, reply="connection_established", reply_data=info, hooks=self.hooks
        )
        while not conn.closing:
            frame = await self.receive()
            if frame is None:
                return
            hub.touch(conn)
            if not self._bucket.allow(self._monotonic()):
                limit = hub.config.client_rate_limit
                await hub.close(
                    conn,
                    CLOSE_RATE_LIMITED,
                    f"too many messages: limit {limit.messages} per {limit.per:g}s",
                )
                return
            await self.handle(frame)

    def error(self, code: str, message: str) -> None:
        self.hub.send_control(self.conn, "error", {"code": code, "message": message})

    async def handle(self, frame: str | bytes) -> None:
        if not isinstance(frame, str):
            self.error("binary_not_supported", "binary frames are not supported: send JSON text")
            return
        try:
            message = decode_client_message(frame)
            match message:
                case Subscribe():
                    await self._subscribe(message)
                case Unsubscribe():
                    self._unsubscribe(message)
                case Ping():
                    now = utc_timestamp(time.time())
                    self.hub.send_control(
                        self.conn, "pong", {"client_id": self.conn.id, "timestamp": now}
                    )
        except ClientError as e:
            self.error(e.code, e.message)

    async def _subscribe(self, message: Subscribe) -> None:
        if not message.channels:
            raise BadMessage("subscribe needs at least one channel", code="invalid_message")
        requests = plan_subscription(
            self.hub.config, message.channels, message.filter, message.since
        )
        await self.hub.subscribe(self.conn, requests, reply="subscribed", hooks=self.hooks)

    def _unsubscribe(self, message: Unsubscribe) -> None:
        # Unknown names are an error even beside "all".
        names = resolve_channels(self.hub.config, [c for c in message.channels if c != ALL])
        if ALL in message.channels:
            names = list(self.conn.channels)
        removed = self.hub.unsubscribe(self.conn, names)
        self.hub.send_control(self.conn, "unsubscribed", {"channels": removed})
