"""One client connection's conversation: read frames, answer them. No sanic.

Every bad frame gets an ``error`` message and the connection stays open; too many
frames close it with 4429. See docs/protocol.md for the messages and codes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

import msgspec

from .auth import Identity, TokenVerifier
from .channels import Resolved
from .config import ClientMessagesConfig
from .events import utc_timestamp
from .exceptions import BadMessage, ClientError, Forbidden
from .hub import Connection, Hub, InitialHook, Reply, subscribed
from .limits import TokenBucket
from .log import logger
from .messages import HandlerQueue, RateBuckets, data_size, run_handler
from .protocol import (
    CloseCode,
    ControlMessage,
    ErrorData,
    InBandError,
    InBandErrorCode,
    Ping,
    Pong,
    PongData,
    Presence,
    PresenceReply,
    Publish,
    Published,
    PublishedData,
    Refresh,
    Refreshed,
    RefreshedData,
    Sender,
    Subscribe,
    Unsubscribe,
    Unsubscribed,
    UnsubscribedData,
    decode_client_message,
)
from .subscriptions import (
    ALL,
    SubRequest,
    check_subscription_limit,
    may_subscribe,
    plan_subscription,
    resolve_channels,
)

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
        verifier: TokenVerifier | None = None,
        authorize: Callable[[Identity | None, Resolved], Awaitable[None]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.conn = conn
        self.receive = receive
        self.hooks = hooks
        #: Set when auth is on: checks ``refresh`` tokens; roles then bound channels.
        self.verifier = verifier
        #: The app's ``authorize`` hooks, bound to the upgrade request (None: none).
        self.authorize = authorize
        self._monotonic = monotonic
        limit = hub.config.client_rate_limit
        self._bucket = TokenBucket(limit.messages, limit.per, monotonic())
        #: client_messages.rate, per channel
        self._rates = RateBuckets()
        #: the calls of message handlers, made at the first one
        self._handler_queue: HandlerQueue | None = None
        #: Set when a frame was over ``client_rate_limit``: closed with 4429 once the
        #: frames admitted before it are answered.
        self.limited = False

    def admit_frame(self) -> bool:
        """The transport's gate, asked for every incoming frame (messages, pings, pongs,
        continuation frames): any frame is traffic, and each counts toward
        ``client_rate_limit``. False: the transport takes no more frames."""
        if not self._bucket.allow(self._monotonic()):
            self.limited = True
            return False
        self.hub.touch(self.conn)
        return True

    async def run(
        self, initial: Sequence[SubRequest], welcome: Callable[[Reply], ControlMessage]
    ) -> None:
        """Send ``connection_established`` (``welcome`` builds it; subscribing to
        ``initial``), then serve the client's messages until it goes away or is closed."""
        hub, conn = self.hub, self.conn
        await hub.subscribe(conn, initial, reply=welcome, hooks=self.hooks)
        del welcome  # sent; not kept for the connection's lifetime
        try:
            while not conn.closing:
                frame = await self.receive()
                if frame is None:
                    break
                await self.handle(frame)
        finally:
            await self.close()
        if self.limited and not conn.closing:
            limit = hub.config.client_rate_limit
            await hub.close(
                conn,
                CloseCode.RATE_LIMITED,
                f"too many messages: limit {limit.messages} per {limit.per:g}s",
            )

    def error(self, code: str, message: str, ref: str | None = None) -> None:
        data = ErrorData(code=cast("InBandErrorCode", code), message=message)
        reply = InBandError(timestamp=self.hub.timestamp(), data=data, ref=_ref(ref))
        self.hub.send(self.conn, reply)

    async def handle(self, frame: str | bytes) -> None:
        if not isinstance(frame, str):
            self.error("binary_not_supported", "binary frames are not supported: send JSON text")
            return
        ref: str | None = None
        try:
            message = decode_client_message(frame)
            ref = message.ref
            match message:
                case Subscribe():
                    await self._subscribe(message)
                case Unsubscribe():
                    self._unsubscribe(message)
                case Ping():
                    now = utc_timestamp(time.time())
                    pong = PongData(client_id=self.conn.id, timestamp=now)
                    reply = Pong(timestamp=self.hub.timestamp(), data=pong, ref=_ref(ref))
                    self.hub.send(self.conn, reply)
                case Refresh():
                    await self._refresh(message.token, ref)
                case Presence():
                    await self._presence(message)
                case Publish():
                    await self._publish(message)
        except ClientError as e:
            self.error(e.code, e.message, ref if ref is not None else getattr(e, "ref", None))

    async def close(self) -> None:
        """The connection is over: handler calls still waiting are dropped."""
        if self._handler_queue is not None:
            await self._handler_queue.close()

    # ------------------------------------------------------------------ presence

    async def _presence(self, message: Presence) -> None:
        hub, conn = self.hub, self.conn
        target = hub.catalog.resolve(message.channel)  # UnknownChannel, InvalidChannel
        if target.name not in conn.channels and not self._is_admin():
            raise Forbidden(f"subscribe to {target.name!r} to see who is on it", code="forbidden")
        data = await hub.presence(target.name)
        reply = PresenceReply(
            channel=target.name, timestamp=hub.timestamp(), data=data, ref=_ref(message.ref)
        )
        hub.send(conn, reply)

    def _is_admin(self) -> bool:
        return self.verifier is not None and self.hub.config.admin.role in self.conn.roles

    # ------------------------------------------------------------------ client messages

    async def _publish(self, message: Publish) -> None:
        hub, conn = self.hub, self.conn
        target = hub.catalog.resolve(message.channel)  # UnknownChannel, InvalidChannel
        channel = target.name
        spec = target.spec.client_messages
        if spec is None:
            raise Forbidden(f"channel {channel!r} takes no client messages", code="forbidden")
        if channel not in conn.channels:
            raise Forbidden(f"subscribe to {channel!r} before publishing to it", code="forbidden")
        if message.event not in spec.types:
            raise BadMessage(
                f"channel {channel!r} takes no {message.event!r} messages "
                f"(it takes: {', '.join(spec.types)})",
                code="unknown_type",
            )
        roles = spec.roles
        if self.verifier is not None and roles is not None and not conn.roles & set(roles):
            raise Forbidden(
                f"sending {message.event!r} to {channel!r} needs one of the roles "
                f"{', '.join(roles)}",
                code="forbidden",
            )
        size = data_size(message.data)
        if size > spec.max_size:
            raise BadMessage(
                f"the message's data is {size} bytes; channel {channel!r} takes at most "
                f"{spec.max_size}",
                code="message_too_large",
            )
        if len(self._rates) > len(conn.channels) + 16:
            self._rates.prune(conn.channels)
        if not self._rates.allow(channel, spec, self._monotonic()):
            raise BadMessage(
                f"too many messages to {channel!r}: at most {spec.rate.messages} per "
                f"{spec.rate.per:g}s",
                code="rate_limited",
            )
        handler = hub.hooks.messages.get(target.key, message.event)
        if handler is None:
            await self._send_message(target, spec, message, message.data)
            return
        data = handler.decode(message.data)  # invalid_message, before it waits
        if self._handler_queue is None:
            self._handler_queue = HandlerQueue()
        args = (hub.view(conn), channel, dict(target.params), data)

        async def job() -> None:
            try:
                result = await run_handler(handler, args, spec.handler_timeout)
                if conn.closing:
                    return
                if result is None:
                    self._published(message.ref, None, dropped=True)
                    return
                await self._send_message(target, spec, message, result)
            except ClientError as e:
                if not conn.closing:
                    self.error(e.code, e.message, message.ref)
            except Exception as e:  # e.g. a payload msgspec cannot encode
                logger.exception("message handler result on %r could not be sent", channel)
                if not conn.closing:
                    self.error(
                        "handler_failed",
                        f"the message handler's result could not be sent ({type(e).__name__})",
                        message.ref,
                    )

        self._handler_queue.submit(job)  # busy when too many wait

    async def _send_message(
        self, target: Resolved, spec: ClientMessagesConfig, message: Publish, data: Any
    ) -> None:
        hub, conn = self.hub, self.conn
        sender = Sender(user_id=conn.user_id, client_id=conn.id)
        exclude = None if spec.echo else conn.id
        if message.event in spec.history:
            result = await hub.publish(
                target.name, message.event, data, sender=sender, exclude=exclude
            )
            self._published(message.ref, result.id)
        else:
            await hub.transmit(target.name, message.event, data, sender=sender, exclude=exclude)
            self._published(message.ref, None)

    def _published(self, ref: str | None, id: str | None, *, dropped: bool = False) -> None:
        data = PublishedData(id=id, dropped=True if dropped else msgspec.UNSET)
        self.hub.send(
            self.conn, Published(timestamp=self.hub.timestamp(), data=data, ref=_ref(ref))
        )

    # ------------------------------------------------------------------ subscriptions

    async def _subscribe(self, message: Subscribe) -> None:
        if not message.channels:
            raise BadMessage("subscribe needs at least one channel", code="invalid_message")
        config = self.hub.config
        requests = plan_subscription(
            config, message.channels, message.filter, message.since, roles=self._roles()
        )
        check_subscription_limit(
            config, len(set(self.conn.channels) | {r.channel for r in requests})
        )
        # The app's decision per channel (a refusal of any leaves the whole message
        # unsubscribed), then room for new instances (max_channels): only for allowed ones.
        if self.authorize is not None:
            for req in requests:
                target = self.hub.catalog.resolve(req.channel)
                await self.authorize(self.conn.identity, target)
            if self.conn.closing:
                return
        self.hub.admit_channels([r.channel for r in requests])
        await self.hub.subscribe(
            self.conn,
            requests,
            reply=partial(subscribed, ref=_ref(message.ref)),
            hooks=self.hooks,
            positions=message.positions,
        )

    def _roles(self) -> frozenset[str] | None:
        """The roles that bound which channels this client may see; None: auth is off."""
        return self.conn.roles if self.verifier is not None else None

    async def _refresh(self, token: str, ref: str | None = None) -> None:
        """A newer token for the same user: the connection lives on to its ``exp``.
        A bad token is an in-band error (the old one still counts until it expires); a
        token of another user closes the connection with 1008."""
        if self.verifier is None:
            raise BadMessage("this server has no authentication to refresh", code="auth_disabled")
        hub, conn = self.hub, self.conn
        if conn.identity is None:
            raise BadMessage(
                "an anonymous connection cannot take a token: reconnect with it",
                code="anonymous",
            )
        try:
            identity = self.verifier.verify(token)
        except ClientError as e:
            raise BadMessage(f"refresh refused: {e.message}", code=e.code) from None
        if identity.user_id != conn.user_id:
            await hub.close(conn, CloseCode.POLICY, "refresh token belongs to another user")
            return
        hub.reidentify(conn, identity)
        expires_at = identity.expires_at
        refreshed = RefreshedData(
            user_id=identity.user_id,
            role=identity.role,
            roles=list(identity.roles),
            expires_at=None if expires_at is None else utc_timestamp(expires_at),
        )
        hub.send(conn, Refreshed(timestamp=hub.timestamp(), data=refreshed, ref=_ref(ref)))
        # The new roles, and the app's authorize hooks, bound what this connection
        # receives from now on.
        lost = [c for c in conn.channels if not may_subscribe(hub.config, c, conn.roles)]
        if self.authorize is not None:
            for target in [hub.catalog.resolve(c) for c in conn.channels if c not in lost]:
                try:
                    await self.authorize(identity, target)
                except ClientError:  # refused, or the check failed: not allowed
                    lost.append(target.name)
        if lost:
            removed = hub.unsubscribe(conn, lost, reason="forbidden")
            data = UnsubscribedData(channels=removed, reason="forbidden")
            hub.send(conn, Unsubscribed(timestamp=hub.timestamp(), data=data))

    def _unsubscribe(self, message: Unsubscribe) -> None:
        # Unknown names are an error even beside "all".
        # (No roles given: unsubscribing from a channel one may not see is harmless.)
        names = resolve_channels(self.hub.config, [c for c in message.channels if c != ALL])
        if ALL in message.channels:
            names = list(self.conn.channels)
        removed = self.hub.unsubscribe(self.conn, names)
        data = UnsubscribedData(channels=removed)
        reply = Unsubscribed(timestamp=self.hub.timestamp(), data=data, ref=_ref(message.ref))
        self.hub.send(self.conn, reply)


def _ref(ref: str | None) -> str | msgspec.UnsetType:
    return msgspec.UNSET if ref is None else ref
