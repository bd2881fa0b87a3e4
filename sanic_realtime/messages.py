"""Client messages: what a subscriber sends to a channel (``{"type": "publish", ...}``).

The checks, in order, each refusal an in-band ``error`` carrying the message's ``ref``
(the connection stays open):

1. the channel is known (``unknown_channel``, ``invalid_channel``), takes client messages
   (``forbidden``), and the sender is subscribed to it (``forbidden``);
2. the event type is one of ``client_messages.types`` (``unknown_type``);
3. the sender holds one of ``client_messages.roles`` when auth is on (``forbidden``);
4. ``data`` encodes to at most ``max_size`` bytes (``message_too_large``);
5. at most ``rate`` messages per connection and channel (``rate_limited``);
6. the handler, if the app registered one: its annotated ``data`` type decodes the body
   (``invalid_message`` naming the field), then it runs within ``handler_timeout``
   (``handler_timeout``) and may raise ``Forbidden`` / ``BadMessage(code=...)`` (that
   code) or fail (``handler_failed``). Handler calls of one connection run one at a time,
   in order, at most :data:`PENDING` at once (``busy``).

The server stamps ``from: {user_id, client_id}``; whatever ``from`` the client sent is
ignored. :class:`MessageHandlers` is pure; :class:`HandlerQueue` needs an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import typing
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from .config import ClientMessagesConfig
from .exceptions import BadMessage, ClientError, ConfigError
from .limits import TokenBucket
from .log import logger

__all__ = ["PENDING", "HandlerQueue", "MessageHandler", "MessageHandlers", "RateBuckets"]

#: Handler calls one connection may have at once (running or waiting their turn); one
#: more is refused with ``busy``.
PENDING = 8

_json = msgspec.json.Encoder()


class MessageHandler(msgspec.Struct, frozen=True):
    """An app's ``on_message`` handler and the type its ``data`` is decoded into."""

    call: Callable[..., Any]
    #: The annotation of the handler's ``data`` parameter; None: the JSON as it came.
    data_type: Any = None

    def decode(self, data: Any) -> Any:
        """``data`` as the handler's annotated type; ``BadMessage`` naming the field."""
        if self.data_type is None:
            return data
        try:
            return msgspec.convert(data, self.data_type)
        except msgspec.ValidationError as e:
            raise BadMessage(f"invalid message data: {e}", code="invalid_message") from None


def _data_type(handler: Callable[..., Any]) -> Any:
    """The annotation of the handler's ``data`` parameter (the 4th), if it has one."""
    try:
        params = list(inspect.signature(handler).parameters.values())
        hints = typing.get_type_hints(handler)
    except (TypeError, ValueError, NameError):
        return None
    target = next((p for p in params if p.name == "data"), params[3] if len(params) > 3 else None)
    if target is None:
        return None
    hint = hints.get(target.name)
    return None if hint in (None, Any) else hint


class MessageHandlers:
    """The handlers by (channel key, event type)."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], MessageHandler] = {}

    def add(
        self,
        key: str,
        event: str,
        handler: Callable[..., Any],
        spec: ClientMessagesConfig | None,
    ) -> None:
        if spec is None:
            raise ConfigError(
                f"channel {key!r} takes no client messages: set channels.{key}.client_messages",
                f"realtime.channels.{key}.client_messages",
            )
        if event not in spec.types:
            raise ConfigError(
                f"{event!r} is not one of the channel's client message types "
                f"({', '.join(spec.types)})",
                f"realtime.channels.{key}.client_messages.types",
            )
        self._handlers[(key, event)] = MessageHandler(handler, _data_type(handler))

    def get(self, key: str, event: str) -> MessageHandler | None:
        return self._handlers.get((key, event))


def data_size(data: Any) -> int:
    """Bytes of ``data`` as JSON (what ``max_size`` bounds)."""
    return len(_json.encode(data))


class RateBuckets:
    """The ``rate`` of each channel, for one connection. Kept only for channels the
    connection is subscribed to (``prune`` drops the others), so a client cannot make
    it grow past its subscriptions."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, channel: str, spec: ClientMessagesConfig, now: float) -> bool:
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = TokenBucket(spec.rate.messages, spec.rate.per, now)
        return bucket.allow(now)

    def prune(self, subscribed: typing.Container[str]) -> None:
        self._buckets = {c: b for c, b in self._buckets.items() if c in subscribed}

    def __len__(self) -> int:
        return len(self._buckets)


class HandlerQueue:
    """One connection's handler calls, one at a time and in order: at most
    :data:`PENDING` at once, the running one included (``busy`` beyond)."""

    def __init__(self, limit: int = PENDING) -> None:
        self._limit = limit
        self._waiting: deque[Callable[[], Coroutine[Any, Any, None]]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._running = 0

    def submit(self, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``job()`` after the earlier ones; ``BadMessage`` (``busy``) when full."""
        if len(self._waiting) + self._running >= self._limit:
            raise BadMessage(
                f"too many messages waiting for this channel's handler (at most "
                f"{self._limit}): wait for the replies",
                code="busy",
            )
        self._waiting.append(job)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._waiting:
            job = self._waiting.popleft()
            self._running = 1
            try:
                await job()
            finally:
                self._running = 0

    async def close(self) -> None:
        """Cancel what runs and drop what waits (the connection is gone)."""
        self._waiting.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def run_handler(handler: MessageHandler, args: tuple[Any, ...], timeout: float) -> Any:
    """Call the handler within ``timeout``; its result (None: drop the message).
    ``ClientError`` for a refusal: its own, ``handler_timeout`` or ``handler_failed``."""
    try:
        result: Any = handler.call(*args)
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, timeout)
    except ClientError:
        raise
    except TimeoutError:
        raise BadMessage(
            f"the message handler did not answer within {timeout:g}s", code="handler_timeout"
        ) from None
    except Exception as e:
        logger.exception("message handler %r failed", getattr(handler.call, "__name__", handler))
        raise BadMessage(
            f"the message handler failed ({type(e).__name__})", code="handler_failed"
        ) from None
    if isinstance(result, msgspec.Struct):
        result = msgspec.to_builtins(result)
    return result
