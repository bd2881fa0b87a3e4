"""What the glue is given: the parts of a ``Realtime``, not the facade itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sanic import Request

    from ..config import RealtimeConfig
    from ..guard import Guard
    from ..hooks import Hooks
    from ..hub import Hub, PublishResult
    from ..metrics import Metrics

__all__ = ["InitialStateHook", "Parts", "Publish"]

InitialStateHook = Callable[["Request"], Awaitable[Any]]
#: ``publish(channel, type, data, *, user_id=..., role=...)``
Publish = Callable[..., Awaitable["PublishResult"]]


@dataclass(frozen=True, slots=True)
class Parts:
    config: RealtimeConfig
    hub: Hub
    guard: Guard
    metrics: Metrics | None
    #: channel -> hook; read per connection (hooks may be registered after the
    #: blueprint is built).
    initial_state_hooks: Mapping[str, InitialStateHook]
    #: Every hook of the app (authorize, on_connect, ...): read per request.
    hooks: Hooks
    publish: Publish
    #: The admin stats route's figures (every worker's, summed).
    cluster_stats: Callable[[], Awaitable[dict[str, Any]]]
