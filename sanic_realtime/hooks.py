"""The app's hooks: ``initial_state``, ``authorize``, and the lifecycle hooks
(``on_connect``, ``on_disconnect``, ``on_subscribe``, ``on_unsubscribe``), registered on
:class:`~sanic_realtime.Realtime` with decorators and run here.

- ``initial_state`` and ``authorize`` hooks are awaited where they decide something (the
  subscription waits for them), ``authorize`` and ``on_connect`` within
  ``authorize_timeout``.
- The other lifecycle hooks never delay delivery: :class:`HookRunner` queues their calls
  (at most ``QUEUE`` waiting; past it a call is dropped, counted and logged) and runs them
  on ``WORKERS`` tasks, so 10,000 connections closing at once make 10,000 queued calls,
  not 10,000 tasks. Their exceptions are logged with the traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import AuthorizeFailed, Forbidden
from .log import logger
from .messages import MessageHandlers

__all__ = [
    "ConnectionView",
    "HookRunner",
    "Hooks",
    "call_with_params",
]

Hook = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """What a lifecycle hook sees of a connection (a snapshot, read-only)."""

    client_id: str
    user_id: str | None
    roles: tuple[str, ...]
    remote_addr: str
    #: the channels subscribed when the hook was called
    channels: tuple[str, ...]


def _accepts(hook: Hook) -> tuple[set[str], bool]:
    """The keyword names ``hook`` accepts, and whether it takes ``**kwargs``."""
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):
        return set(), True
    names = {
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    var = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    return names, var


async def call_with_params(hook: Hook, *args: Any, params: Mapping[str, str]) -> Any:
    """``hook(*args, ...)`` with, among ``params=`` and each parameter by name, those
    keywords it accepts; awaited if it returns an awaitable."""
    names, var = _accepts(hook)
    kwargs: dict[str, Any] = {}
    if var or "params" in names:
        kwargs["params"] = dict(params)
    for name, value in params.items():
        if name != "params" and (var or name in names):
            kwargs[name] = value
    result = hook(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _maybe_await(result: Any) -> Any:
    if inspect.isawaitable(result):
        return await result
    return result


class Hooks:
    """Every hook the app registered."""

    def __init__(self) -> None:
        #: config key (a channel or template) -> hook
        self.initial_state: dict[str, Hook] = {}
        #: config key -> hook; None: the hook for every channel
        self.authorize: dict[str | None, Hook] = {}
        self.on_connect: list[Hook] = []
        self.on_disconnect: list[Hook] = []
        self.on_subscribe: list[Hook] = []
        self.on_unsubscribe: list[Hook] = []
        #: (config key, event type) -> the handler of that client message
        self.messages = MessageHandlers()

    async def check_authorized(
        self,
        request: Any,
        identity: Any,
        channel: str,
        key: str,
        params: Mapping[str, str],
        timeout: float,
    ) -> None:
        """Run the hook for every channel, then the one of ``key``: each must return
        true. Raises Forbidden (false) or AuthorizeFailed (raised, or took longer than
        ``timeout`` seconds)."""
        for hook in (self.authorize.get(None), self.authorize.get(key)):
            if hook is None:
                continue
            try:
                allowed = await asyncio.wait_for(
                    _maybe_await(hook(request, identity, dict(params))), timeout
                )
            except TimeoutError:
                logger.error(
                    "authorize hook %r for channel %r took longer than %gs",
                    getattr(hook, "__name__", hook),
                    channel,
                    timeout,
                )
                raise AuthorizeFailed(
                    f"channel {channel!r}: the authorization check did not answer in time"
                ) from None
            except Forbidden:
                raise
            except Exception:
                logger.exception(
                    "authorize hook %r for channel %r failed",
                    getattr(hook, "__name__", hook),
                    channel,
                )
                raise AuthorizeFailed(
                    f"channel {channel!r}: the authorization check failed"
                ) from None
            if not allowed:
                raise Forbidden(f"channel {channel!r}: not allowed for this connection")

    async def check_connect(self, request: Any, identity: Any, timeout: float) -> None:
        """Every ``on_connect`` hook, in order: false or Forbidden refuses (403); an
        exception or a timeout is AuthorizeFailed (500)."""
        for hook in self.on_connect:
            try:
                allowed = await asyncio.wait_for(_maybe_await(hook(request, identity)), timeout)
            except Forbidden:
                raise
            except TimeoutError:
                logger.error("on_connect hook %r took longer than %gs", hook, timeout)
                raise AuthorizeFailed("the connection check did not answer in time") from None
            except Exception:
                logger.exception("on_connect hook %r failed", hook)
                raise AuthorizeFailed("the connection check failed") from None
            if allowed is False:
                raise Forbidden("this connection is not allowed")


class HookRunner:
    """Runs lifecycle hooks off the delivery path, bounded (see the module docstring)."""

    #: calls waiting at most
    QUEUE = 10_000
    #: tasks running them
    WORKERS = 4

    def __init__(self) -> None:
        self._calls: deque[tuple[Hook, tuple[Any, ...]]] = deque()
        self._workers: list[asyncio.Task[None]] = []
        #: calls dropped because QUEUE were waiting
        self.dropped = 0
        #: calls that raised
        self.failed = 0

    def call(self, hooks: list[Hook], *args: Any) -> None:
        """Queue ``hook(*args)`` for each hook; never blocks, never raises."""
        if not hooks:
            return
        for hook in hooks:
            if len(self._calls) >= self.QUEUE:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.warning(
                        "lifecycle hooks are %d calls behind: %d calls dropped so far",
                        self.QUEUE,
                        self.dropped,
                    )
                continue
            self._calls.append((hook, args))
        self._start()

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a call outside the server): run at the next call in one
        self._workers = [w for w in self._workers if not w.done()]
        while len(self._workers) < min(self.WORKERS, len(self._calls)):
            self._workers.append(loop.create_task(self._work(), name="realtime-hooks"))

    async def _work(self) -> None:
        while self._calls:
            hook, args = self._calls.popleft()
            try:
                await _maybe_await(hook(*args))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failed += 1
                logger.exception("lifecycle hook %r failed", getattr(hook, "__name__", hook))

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) for the queued calls, then cancel what is left."""
        workers = [w for w in self._workers if not w.done()]
        if workers:
            await asyncio.wait(workers, timeout=timeout)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        self._workers.clear()
        self._calls.clear()

    @property
    def waiting(self) -> int:
        return len(self._calls)


def bind_initial(hook: Hook, request: Any) -> Callable[[Mapping[str, str]], Awaitable[Any]]:
    """An ``initial_state`` hook bound to the upgrade request: the hub calls it with the
    channel's parameters, which it gets as the keywords it accepts (``params=``, or each
    parameter by name)."""

    async def call(params: Mapping[str, str]) -> Any:
        return await call_with_params(hook, request, params=params)

    return call
