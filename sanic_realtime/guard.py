"""The checks a request passes before it is served: rate, origin, identity, admin rights,
and one-time tickets. No sanic: the blueprint hands in headers, query and client IP.

Tickets live in the backplane (``put_ticket`` / ``take_ticket``), so with a shared
backplane a ticket minted by one worker is redeemed by any other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

from .auth import (
    Identity,
    TokenVerifier,
    decode_identity,
    encode_identity,
    find_credential,
)
from .backplanes.base import Backplane
from .config import RealtimeConfig
from .exceptions import ClientError, Forbidden, OriginNotAllowed, TooManyRequests, Unauthorized
from .limits import KeyedRateLimiter
from .origins import OriginPolicy

__all__ = ["Guard"]

#: Length of a ticket's random part (bytes before base64url).
TICKET_BYTES = 32


class Guard:
    def __init__(
        self,
        config: RealtimeConfig,
        backplane: Backplane,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backplane = backplane
        self._clock = clock
        self._monotonic = monotonic
        self.verifier = TokenVerifier(config.auth) if config.auth.mode == "jwt" else None
        self.origins = OriginPolicy(config.allowed_origins)
        limit = config.connect_rate_limit
        self.limiter = KeyedRateLimiter(limit.connections, limit.per) if limit is not None else None
        admin = config.admin.rate_limit
        self.admin_limiter = (
            KeyedRateLimiter(admin.requests, admin.per) if admin is not None else None
        )

    @property
    def anonymous_roles(self) -> tuple[str, ...] | None:
        """The roles a client without an identity has for channel checks: None (auth is
        off: every channel is open) or none at all (an anonymous client)."""
        return None if self.verifier is None else ()

    def check_rate(self, client_ip: str) -> None:
        """``connect_rate_limit``: 429 with the seconds to wait."""
        if self.limiter is None:
            return
        wait = self.limiter.hit(client_ip, self._monotonic())
        if wait > 0:
            limit = self.config.connect_rate_limit
            assert limit is not None
            raise TooManyRequests(
                f"too many connection attempts from {client_ip}: at most {limit.connections} "
                f"per {limit.per:g}s",
                retry_after=wait,
            )

    def check_admin_rate(self, authorization: str | None, client_ip: str) -> None:
        """``admin.rate_limit``: 429 with the seconds to wait. The caller is its bearer
        token (a digest of it: the table holds no secret), else its IP."""
        if self.admin_limiter is None:
            return
        given = _bearer_value(authorization)
        if given is not None:
            key = "token:" + hashlib.sha256(given.encode()).hexdigest()[:32]
        else:
            key = "ip:" + client_ip
        wait = self.admin_limiter.hit(key, self._monotonic())
        if wait > 0:
            limit = self.config.admin.rate_limit
            assert limit is not None
            raise TooManyRequests(
                f"too many broadcasts from this caller: at most {limit.requests} per "
                f"{limit.per:g}s",
                retry_after=wait,
            )

    def check_origin(self, origin: str | None) -> None:
        if not self.origins.allows(origin):
            raise OriginNotAllowed(f"origin {origin!r} is not allowed")

    async def identify(
        self, authorization: str | None, subprotocols: list[str], query: Mapping[str, str]
    ) -> tuple[Identity | None, str | None]:
        """The client's identity and, when it came with one, its ticket (not redeemed
        yet: :meth:`redeem` does that, once every other check has passed).

        The identity is None when auth is off, or for an anonymous client
        (``auth.anonymous``, no credential at all); ``Unauthorized`` otherwise."""
        if self.verifier is None:
            return None, None
        credential = find_credential(authorization, subprotocols, query)
        if credential is None:
            if self.config.auth.anonymous:
                return None, None
            raise Unauthorized(
                "a token is required: send 'Authorization: Bearer <token>', the subprotocols "
                "['bearer', <token>], ?ticket=<one-time ticket> or ?token=<token>"
            )
        if credential.source != "ticket":
            return self.verifier.verify(credential.value, self._clock()), None
        value = await self.backplane.peek_ticket(credential.value)
        if value is None:
            raise self._no_ticket()
        identity = decode_identity(value)
        expires_at = identity.expires_at
        if expires_at is not None and expires_at + self.config.auth.leeway <= self._clock():
            raise Unauthorized("the token behind this ticket has expired", code="token_expired")
        return identity, credential.value

    async def redeem(self, ticket: str) -> None:
        """Use up ``ticket`` (looked up by :meth:`identify`): ``Unauthorized`` if another
        request redeemed it, or it expired, in between."""
        if await self.backplane.take_ticket(ticket) is None:
            raise self._no_ticket()

    def _no_ticket(self) -> Unauthorized:
        return Unauthorized(
            "unknown, used or expired ticket: get a new one from POST "
            f"{self.config.url_prefix}/ticket",
            code="invalid_ticket",
        )

    def bearer(self, authorization: str | None) -> str:
        given = _bearer_value(authorization)
        if given is None:
            raise Unauthorized("this route needs 'Authorization: Bearer <token>'")
        return given

    def check_admin(self, authorization: str | None) -> Identity | None:
        """Admin routes: the static ``admin.token``, or a JWT with ``admin.role``.
        Open when auth is off and no admin token is set."""
        static = self.config.admin.token
        if self.verifier is None and not static:
            return None
        given = self.bearer(authorization)
        if static and hmac.compare_digest(given.encode(), static.encode()):
            return None
        if self.verifier is None:
            raise Unauthorized("invalid admin token", code="invalid_token")
        identity = self.verifier.verify(given, self._clock())
        role = self.config.admin.role
        if role not in identity.roles:
            raise Forbidden(f"admin routes need the role {role!r}")
        return identity

    async def issue_ticket(self, authorization: str | None) -> tuple[str, float]:
        """``POST {url_prefix}/ticket``: a one-time ticket for the bearer's identity,
        valid ``auth.ticket_ttl`` seconds (never past the token's own expiry)."""
        if self.verifier is None:
            raise ClientError(
                "tickets need auth.mode: jwt; this server has no authentication",
                code="auth_disabled",
                status=404,
            )
        identity = self.verifier.verify(self.bearer(authorization), self._clock())
        ttl = float(self.config.auth.ticket_ttl)
        if identity.expires_at is not None:
            ttl = min(ttl, identity.expires_at - self._clock())
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        await self.backplane.put_ticket(ticket, encode_identity(identity), ttl)
        return ticket, ttl


def _bearer_value(authorization: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None without one."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
