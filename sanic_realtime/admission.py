"""Admission: every check a WebSocket upgrade request passes before it is served, in one
step. No sanic: the glue hands in what it read from the request (:class:`Handshake`)
and gets back one :class:`Admitted` (or a ``ClientError`` to answer with).

The order (docs/protocol.md, "Refusals"): the connection rate per IP, the origin, the
credential (a token is verified; a ticket is only looked up), the subscription plan
(channels, filters, ``since``, roles), ``max_subscriptions``, the ``Upgrade`` header,
websockets' own handshake checks, the backplane, a slot (``max_clients``,
``max_connections_per_user``; with ``connection_limits: cluster`` also the user's slot
counted across every worker in Redis), the app's hooks, ``on_connect`` then ``authorize`` per
channel (with the slot held, so at most ``max_clients`` handshakes wait for them), and
room for the template instances (``max_channels``), taken only for channels the hooks
allowed. A one-time ticket is redeemed last, once every
other check has passed: a client refused for any other reason can use its ticket again. Of
two requests racing with one ticket, one redeems it and the other is refused
(``invalid_ticket``), its slot given back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .config import RealtimeConfig
from .exceptions import ClientError, ServerUnavailable, TooManyRequests
from .guard import Guard
from .subscriptions import SubRequest, channel_plan, check_subscription_limit, general_plan

if TYPE_CHECKING:
    from .auth import Identity
    from .channels import Resolved
    from .hub import Hub, Reservation

__all__ = ["Admission", "Admitted", "Handshake"]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What admission reads from an upgrade request."""

    route: Literal["channel", "general"]
    #: The ``{channel}`` of ``{url_prefix}/{channel}``; None on the general route.
    channel: str | None
    client_ip: str
    origin: str | None
    authorization: str | None
    subprotocols: list[str]
    query: Mapping[str, str]
    #: The ``Upgrade`` header.
    upgrade: str | None
    #: websockets' own checks of the upgrade request (``Sec-WebSocket-Key``, version,
    #: ``Connection``): raises ``ClientError``.
    check_upgrade: Callable[[], None]
    #: The app's hooks for this request: ``on_connect`` (given the identity) and
    #: ``authorize`` (given the identity and a channel's name, key and parameters); each
    #: raises ``ClientError`` to refuse.
    check_connect: Callable[[Identity | None], Awaitable[None]] | None = None
    authorize: Callable[[Identity | None, Resolved], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A request that passed: what the handler serves."""

    plan: list[SubRequest]
    #: The slot held for this connection (``hub.register`` takes it, ``hub.release``
    #: gives it back).
    reservation: Reservation
    #: None when auth is off, or for an anonymous client.
    identity: Identity | None


class Admission:
    def __init__(self, config: RealtimeConfig, hub: Hub, guard: Guard) -> None:
        self.config = config
        self.hub = hub
        self.guard = guard

    async def admit(self, request: Handshake) -> Admitted:
        config, guard, hub = self.config, self.guard, self.hub
        guard.check_rate(request.client_ip)
        guard.check_origin(request.origin)
        identity, ticket = await guard.identify(
            request.authorization, request.subprotocols, request.query
        )
        # None: auth is off (every channel is open); () for an anonymous client.
        roles = identity.roles if identity is not None else guard.anonymous_roles
        if request.route == "channel":
            assert request.channel is not None
            plan = channel_plan(config, request.channel, request.query, roles)
        else:
            plan = general_plan(config, request.query, roles)
        check_subscription_limit(config, len(plan))
        if (request.upgrade or "").lower() != "websocket":
            raise ClientError(
                "this route speaks WebSocket only: send an Upgrade request",
                code="upgrade_required",
                status=426,
            )
        request.check_upgrade()
        if not hub.backplane.available:
            # It could not replay history or promise live events: the client retries.
            raise ServerUnavailable(
                "the backplane is unavailable (Redis unreachable); try again shortly",
                code="backplane_unavailable",
            )
        targets = [hub.catalog.resolve(sub.channel) for sub in plan]
        user_id = identity.user_id if identity is not None else None
        reservation = hub.reserve(user_id)
        try:
            if user_id is not None:
                await self._claim_cluster_slot(user_id, reservation)
            # The app's hooks last, on a request that passed every other check, and while a
            # slot is held: at most max_clients handshakes wait for them at once.
            if request.check_connect is not None:
                await request.check_connect(identity)
            if request.authorize is not None:
                for target in targets:
                    await request.authorize(identity, target)
            # Only channels the app allowed take room among the instances (max_channels):
            # a client asking for what it may not see cannot fill it.
            hub.admit_channels([target.name for target in targets])
            if ticket is not None:
                await guard.redeem(ticket)
        except BaseException:
            hub.release(reservation)
            raise
        return Admitted(plan, reservation, identity)

    async def _claim_cluster_slot(self, user_id: str, reservation: Reservation) -> None:
        """With ``connection_limits: cluster``: take one of the user's slots counted
        across every worker (``TooManyRequests`` if all are taken; ``ServerUnavailable``
        if Redis does not answer: fail closed). The reservation gives it back."""
        limit = self.config.max_connections_per_user
        if self.config.connection_limits != "cluster" or limit is None:
            return
        backplane = self.hub.backplane
        held = await backplane.claim_user_slot(user_id, limit)
        if held is None:
            raise TooManyRequests(
                f"user {user_id!r} already has {limit} connections across the cluster "
                f"(at most {limit}); close one first",
                code="too_many_connections",
            )
        reservation.give_back = lambda: backplane.release_user_slot(user_id)
