"""The :class:`Realtime` object: configuration, hub and blueprint in one place. No logic
of its own: the hub fans out, the blueprint speaks HTTP/WebSocket."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .backplanes import create as create_backplane
from .config import RealtimeConfig, load_yaml, revalidate
from .exceptions import UnknownChannel
from .guard import Guard
from .hub import Hub, PublishResult
from .protocol import PresenceData
from .routes.parts import InitialStateHook

if TYPE_CHECKING:
    from sanic import Blueprint

    from .metrics import Metrics

__all__ = ["Realtime"]

H = TypeVar("H", bound=InitialStateHook)
A = TypeVar("A", bound=Callable[..., Any])
C = TypeVar("C", bound=Callable[..., Any])
M = TypeVar("M", bound=Callable[..., Any])


class Realtime:
    """Real-time push for one Sanic app::

    realtime = Realtime.from_yaml("realtime.yaml")
    app.blueprint(realtime.blueprint)
    await realtime.publish("logs", "log_update", {"level": "error"})
    """

    def __init__(self, config: RealtimeConfig | None = None) -> None:
        self.config = revalidate(config if config is not None else RealtimeConfig())
        backplane = create_backplane(self.config)
        self.hub = Hub(self.config, backplane)
        #: Rate, origin, token and admin checks (reads key files now: errors name the key).
        self.guard = Guard(self.config, backplane)
        #: Every hook of the app (the decorators below register them); the hub runs
        #: the lifecycle ones.
        self.hooks = self.hub.hooks
        self.initial_state_hooks = self.hooks.initial_state
        #: The Prometheus metrics (``metrics.enabled``), else None; ``metrics.registry``
        #: is the registry served at ``metrics.path``.
        self.metrics: Metrics | None = None
        if self.config.metrics.enabled:
            from .metrics import Metrics

            self.metrics = Metrics(self.hub)
        self._blueprint: Blueprint | None = None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Realtime:
        """Build from a YAML file's ``realtime:`` key; ``ConfigError`` names a bad key."""
        return cls(load_yaml(path))

    @property
    def blueprint(self) -> Blueprint:
        """The blueprint to register once: ``app.blueprint(realtime.blueprint)``."""
        if self._blueprint is None:
            import weakref

            from .blueprint import Parts, build_blueprint

            parts = Parts(
                config=self.config,
                hub=self.hub,
                guard=self.guard,
                metrics=self.metrics,
                initial_state_hooks=self.initial_state_hooks,
                hooks=self.hooks,
                publish=self.publish,
                cluster_stats=self.cluster_stats,
            )
            self._blueprint = build_blueprint(parts)
            # How sanic_realtime.testing finds this object from an app's blueprints. A
            # weak reference: Blueprint.copy() deep-copies ctx, and must not copy the hub.
            self._blueprint.ctx.realtime = weakref.ref(self)
        return self._blueprint

    async def publish(
        self,
        channel: str,
        type: str,
        data: Any = None,
        *,
        user_id: str | int | None = None,
        role: str | None = None,
        count: Literal["process", "cluster"] = "process",
    ) -> PublishResult:
        """Publish an event to ``channel``'s subscribers: all of them, or only the
        connections of ``user_id`` and/or those holding ``role`` (either suffices).
        Returns its ``id`` and this process's ``recipients`` (with the Redis backplane,
        other workers' clients get it too but are not counted). With
        ``count="cluster"`` every worker that got the event answers with its count
        (waited for up to 1 s; ``complete`` is False if one did not answer). Raises
        ``ServerUnavailable`` (code ``backplane_unavailable``) when Redis cannot be
        reached or the backplane is not started yet: then nobody gets the event, except
        when the connection broke after Redis ran the publish (its reply lost), so that
        the event did go out."""
        return await self.hub.publish(
            channel,
            type,
            data,
            user_id=None if user_id is None else str(user_id),
            role=role,
            count=count,
        )

    async def publish_many(
        self,
        channel: str,
        events: Iterable[tuple[str, Any]],
        *,
        user_id: str | int | None = None,
        role: str | None = None,
    ) -> list[PublishResult]:
        """Publish several events (``(type, data)`` pairs) to ``channel``, in order, with
        the same targeting for all; returns what :meth:`publish` returns for each, in
        order. With the Redis backplane they go to Redis together (one round trip for up
        to 1000). Data that cannot be encoded (``TypeError``) publishes none of them; a
        ``ServerUnavailable`` says how many were published before Redis failed."""
        return await self.hub.publish_many(
            channel,
            list(events),
            user_id=None if user_id is None else str(user_id),
            role=role,
        )

    async def disconnect(
        self,
        *,
        user_id: str | int | None = None,
        role: str | None = None,
        reason: str = "access revoked",
    ) -> int:
        """Close every connection of ``user_id`` (or holding ``role``) with 1008, e.g.
        when a user is deleted or loses access, on every worker (through the backplane).
        Returns how many this process closed. With the Redis backplane down it closes
        this process's connections and raises ``ServerUnavailable``."""
        if user_id is None and role is None:
            raise ValueError("disconnect() needs user_id or role")
        return await self.hub.backplane.disconnect(
            user_id=None if user_id is None else str(user_id), role=role, reason=reason
        )

    async def presence(self, channel: str) -> PresenceData:
        """Who is subscribed to the presence channel ``channel`` on every worker:
        ``users`` (each with ``role``, ``connections`` and ``since``; None with
        ``presence.list: false``), ``count`` (distinct users) and ``anonymous``
        (connections without a user). Raises ``UnknownChannel`` / ``InvalidChannel``, or
        ``ClientError`` with code ``no_presence`` for a channel without presence."""
        return await self.hub.presence(channel)

    def on_message(self, channel: str, event: str) -> Callable[[M], M]:
        """Register ``async def handler(conn, channel, params, data)`` for the client
        messages of type ``event`` on ``channel`` (a name or a template, with
        ``client_messages`` naming ``event``). An annotated ``data`` (a msgspec Struct)
        decodes and validates the body (``invalid_message`` naming the field). Return
        the payload to send (``data`` itself, or a replacement), or None to drop the
        message; raise ``Forbidden`` / ``BadMessage(code=...)`` to refuse it."""
        self._check_key(channel)

        def register(handler: M) -> M:
            spec = self.config.channels[channel].client_messages
            self.hooks.messages.add(channel, event, handler, spec)
            return handler

        return register

    def stats(self) -> dict[str, Any]:
        """This process's figures (with one worker, those of the admin stats route)."""
        return self.hub.stats()

    async def cluster_stats(self) -> dict[str, Any]:
        """The admin stats route's figures: every worker's, summed (``workers`` says how
        many reported; ``complete: false`` when the others could not be read)."""
        return await self.hub.backplane.stats()

    def initial_state(self, channel: str) -> Callable[[H], H]:
        """Register ``async def hook(request) -> data``: a new subscriber of ``channel``
        first gets its result as ``initial_state`` (this wins over ``initial: last``).
        For a template (``"orders.{order_id}"``) the hook also gets the instance's
        parameters, as the keywords it accepts: ``params=`` (a dict), or each by name
        (``order_id=``)."""
        self._check_key(channel)

        def register(hook: H) -> H:
            self.initial_state_hooks[channel] = hook
            return hook

        return register

    def authorize(self, channel: str | None = None) -> Callable[[A], A]:
        """Register ``async def can_subscribe(request, identity, params) -> bool`` for a
        channel or template (``@realtime.authorize("orders.{order_id}")``), or with no
        argument for every channel. It runs for each subscription, after the roles
        passed: before the upgrade on a channel route or for ``?channels=`` (false: 403
        ``forbidden``), and for each channel of a ``subscribe`` message (in-band
        ``forbidden``; nothing of that message is subscribed); again on every reconnect
        and for every channel held when a ``refresh`` brings a new token. ``identity`` is
        None with ``auth.mode: none`` or for an anonymous connection; ``params`` the
        instance's parameters ({} for a static channel). With both, the hook for every
        channel runs first and each must allow. A hook that raises, or takes longer than
        ``authorize_timeout``, refuses with ``authorize_failed`` (500 before the upgrade),
        logged with the traceback."""
        if channel is not None:
            self._check_key(channel)

        def register(hook: A) -> A:
            self.hooks.authorize[channel] = hook
            return hook

        return register

    def on_connect(self, hook: C) -> C:
        """``async def hook(request, identity)``: before the upgrade, once the request
        passed every other check; returning False or raising ``Forbidden`` refuses it
        (403), raising anything else or taking longer than ``authorize_timeout`` is 500
        ``authorize_failed``."""
        self.hooks.on_connect.append(hook)
        return hook

    def on_disconnect(self, hook: C) -> C:
        """``async def hook(conn, code, reason)``, once a connection ended (``conn``: a
        :class:`ConnectionView`). Lifecycle hooks run as queued calls on a few tasks:
        they never delay delivery, and their exceptions are logged."""
        self.hooks.on_disconnect.append(hook)
        return hook

    def on_subscribe(self, hook: C) -> C:
        """``async def hook(conn, channel, params)``, after a subscription was made
        (``channel`` the instance name, ``params`` its parameters)."""
        self.hooks.on_subscribe.append(hook)
        return hook

    def on_unsubscribe(self, hook: C) -> C:
        """``async def hook(conn, channel, reason)``: ``reason`` is ``client`` (it
        asked), ``forbidden`` (a refresh took the right away) or ``disconnect``."""
        self.hooks.on_unsubscribe.append(hook)
        return hook

    def _check_key(self, channel: str) -> None:
        if channel not in self.config.channels:
            raise UnknownChannel(channel, list(self.config.channels))
