"""Who a client is: JWT verification (PyJWT), where a token is read from, identities.

Pure apart from reading key files once, when a :class:`TokenVerifier` is built: no
sanic, no asyncio. The Sanic glue (``blueprint.py``) hands it the request's headers and
query; the hub keeps the resulting :class:`Identity` with the connection.

Token sources, in this order (the first one present is used, and must be valid):

1. ``Authorization: Bearer <token>``: scripts, terminal UIs, servers;
2. the ``Sec-WebSocket-Protocol`` bearer subprotocol: ``new WebSocket(url, ["bearer",
   token])`` in a browser; the server selects ``bearer``, never echoes the token, and the
   token stays out of URLs (and so out of access logs and browser history);
3. ``?token=<token>``: the classic form, the least safe (URLs end up in logs, proxies and
   history; the package redacts its own and Sanic's logs, but not a proxy's);
4. ``?ticket=<ticket>``: a one-time ticket from ``POST {url_prefix}/ticket``, short-lived
   and single use, so a leaked URL is worthless after the handshake.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jwt
import msgspec
from jwt.algorithms import get_default_algorithms

from .config import AuthConfig
from .exceptions import ConfigError, Unauthorized

__all__ = [
    "BEARER_SUBPROTOCOL",
    "Credential",
    "Identity",
    "TokenVerifier",
    "find_credential",
    "parse_subprotocols",
]

#: The subprotocol a browser offers, followed by its token: ``["bearer", token]``.
BEARER_SUBPROTOCOL = "bearer"
#: Longer strings are not tokens we would accept; refuse before parsing them. This also
#: bounds what a token can carry (a role list of a few thousand names at most).
MAX_TOKEN_LENGTH = 16384
#: The time claims, RFC 7519 NumericDates: JSON numbers of seconds since 1970.
TIME_CLAIMS = ("exp", "nbf", "iat")
#: The last second a NumericDate may name: 9999-12-31T23:59:59Z (the last one Python's
#: datetime, and so an RFC 3339 ``expires_at``, can show).
MAX_NUMERIC_DATE = 253402300799


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated client: its user, its roles (first = primary), its token's expiry."""

    user_id: str
    roles: tuple[str, ...] = ()
    #: The token's ``exp`` (Unix seconds), or None when it has none.
    expires_at: float | None = None

    @property
    def role(self) -> str | None:
        """The primary role: the role claim itself, or the first of a list."""
        return self.roles[0] if self.roles else None


class Credential(NamedTuple):
    source: Literal["header", "subprotocol", "query", "ticket"]
    value: str


def parse_subprotocols(values: Iterable[str]) -> list[str]:
    """Every subprotocol offered in ``Sec-WebSocket-Protocol`` headers, in order."""
    out: list[str] = []
    for value in values:
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def find_credential(
    authorization: str | None, subprotocols: list[str], query: Mapping[str, str]
) -> Credential | None:
    """The first credential present, in the documented order; None when there is none.

    An ``Authorization`` header of another scheme (``Basic`` from a proxy, say) is not
    ours and is skipped. ``bearer`` offered without a token after it is an error.
    """
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer":
            if not value.strip():
                raise Unauthorized("'Authorization: Bearer' has no token", code="invalid_token")
            return Credential("header", value.strip())
    if BEARER_SUBPROTOCOL in subprotocols:
        i = subprotocols.index(BEARER_SUBPROTOCOL)
        if i + 1 >= len(subprotocols):
            raise Unauthorized(
                "the 'bearer' subprotocol must be followed by the token: "
                "new WebSocket(url, ['bearer', token])",
                code="invalid_token",
            )
        return Credential("subprotocol", subprotocols[i + 1])
    if query.get("token"):
        return Credential("query", query["token"])
    if query.get("ticket"):
        return Credential("ticket", query["ticket"])
    return None


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """``claims[name]``; a dotted name not present as such walks nested objects
    (``realm_access.roles``). URL-named claims (``https://x.io/roles``) work as is."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _json_kind(value: Any) -> str:
    """What a JSON value is, for a message (never the value itself: it may be long)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity"
    if isinstance(value, (int, float)):
        return "a number out of range"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """The time claim ``name`` in seconds, None when absent; ``Unauthorized``
    (``invalid_token``, naming the claim) unless it is an RFC 7519 NumericDate: a JSON
    number (not a string, not a boolean; NaN and Infinity are not JSON numbers) from 0
    to :data:`MAX_NUMERIC_DATE`."""
    if name not in claims:
        return None
    value = claims[name]
    # Comparisons, not float() first: a huge int does not overflow, NaN compares false.
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value <= MAX_NUMERIC_DATE
    ):
        return float(value)
    raise Unauthorized(
        f"invalid token: the {name!r} claim must be a JSON number of seconds since 1970 "
        f"(RFC 7519 NumericDate, at most {MAX_NUMERIC_DATE}), got {_json_kind(value)}",
        code="invalid_token",
    )


class TokenVerifier:
    """Verifies JWTs as ``auth`` says: key, algorithms, audience, issuer, expiry, claims."""

    def __init__(self, auth: AuthConfig, path: str = "realtime.auth") -> None:
        self.auth = auth
        self._algorithms = list(auth.algorithms)
        self._jwks: jwt.PyJWKSet | None = None
        self._key: Any = None
        if auth.jwt_secret:
            self._key = auth.jwt_secret
        elif auth.public_key:
            self._key = self._checked_pem(auth.public_key, f"{path}.public_key")
        elif auth.public_key_file:
            self._key = self._checked_pem(
                self._read(auth.public_key_file, f"{path}.public_key_file"),
                f"{path}.public_key_file",
            )
        elif auth.jwks_file:
            text = self._read(auth.jwks_file, f"{path}.jwks_file")
            try:
                self._jwks = jwt.PyJWKSet.from_json(text)
            except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as e:
                raise ConfigError(
                    f"not a usable JSON Web Key Set: {e}", f"{path}.jwks_file"
                ) from None
        self._options: dict[str, Any] = {
            "require": ["exp"] if auth.require_exp else [],
            # A token may carry an audience we were not told to check.
            "verify_aud": auth.audience is not None,
            # PyJWT takes int(claim): "exp": "1796..." would pass, and true would be 1.
            # verify() checks the time claims itself, once they are known to be numbers.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "enforce_minimum_key_length": True,
        }

    @staticmethod
    def _read(file: str, path: str) -> str:
        try:
            return Path(file).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read {file!r}: {e}", path) from None

    def _checked_pem(self, pem: str, path: str) -> Any:
        for alg in self._algorithms:
            try:
                return get_default_algorithms()[alg].prepare_key(pem)
            except (ValueError, TypeError, jwt.InvalidKeyError) as e:
                raise ConfigError(f"not a public key usable with {alg}: {e}", path) from None
        raise ConfigError("no algorithm to use the key with", path)  # pragma: no cover

    def verify(self, token: str, now: float | None = None) -> Identity:
        """The identity in ``token``; ``Unauthorized`` (``invalid_token`` or
        ``token_expired``) saying what is wrong, never echoing the token."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized("the token is empty or too long", code="invalid_token")
        key = self._key
        try:
            if self._jwks is not None:
                key = self._jwk_for(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self.auth.audience,
                issuer=self.auth.issuer,
                leeway=float(self.auth.leeway),
                options=self._options,  # type: ignore[arg-type]
            )
        except jwt.exceptions.InvalidSubjectError as e:
            raise Unauthorized(
                f"invalid token: {e} (the 'sub' claim)", code="invalid_token"
            ) from None
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid token: {e}", code="invalid_token") from None
        except RecursionError:  # from json.loads, in PyJWT versions that let it through
            raise Unauthorized(
                "invalid token: its JSON is nested too deeply", code="invalid_token"
            ) from None
        self._check_times(claims, time.time())
        identity = self.identity(claims)
        # The wall clock counted above; a caller's clock (tests) also counts.
        expires_at = identity.expires_at
        if now is not None and expires_at is not None and expires_at + self.auth.leeway <= now:
            raise Unauthorized("the token has expired", code="token_expired")
        return identity

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        """PyJWT's checks of ``exp``, ``nbf`` and ``iat``, on claims that must be numbers."""
        exp, nbf, iat = (numeric_date(claims, name) for name in TIME_CLAIMS)
        leeway = float(self.auth.leeway)
        if exp is not None and exp <= now - leeway:
            raise Unauthorized("the token has expired", code="token_expired")
        if nbf is not None and nbf > now + leeway:
            raise Unauthorized(
                "invalid token: The token is not yet valid (nbf)", code="invalid_token"
            )
        if iat is not None and iat > now + leeway:
            raise Unauthorized(
                "invalid token: The token is not yet valid (iat)", code="invalid_token"
            )

    def _jwk_for(self, token: str) -> Any:
        assert self._jwks is not None
        kid = jwt.get_unverified_header(token).get("kid")
        keys = self._jwks.keys
        if kid is None:
            if len(keys) == 1:
                return keys[0]
            raise jwt.InvalidTokenError("the token has no 'kid' and the key set has several keys")
        try:
            return self._jwks[str(kid)]
        except KeyError:
            raise jwt.InvalidTokenError(
                f"no key with kid {str(kid)[:64]!r} in the key set"
            ) from None

    def identity(self, claims: Mapping[str, Any]) -> Identity:
        auth = self.auth
        user = _claim(claims, auth.user_claim)
        if isinstance(user, bool) or not isinstance(user, (str, int)) or user == "":
            raise Unauthorized(
                f"the token has no usable {auth.user_claim!r} claim (auth.user_claim): "
                "a non-empty string or an integer is required",
                code="invalid_token",
            )
        raw_roles = _claim(claims, auth.role_claim)
        if raw_roles is None:
            roles: tuple[str, ...] = ()
        elif isinstance(raw_roles, str):
            roles = (raw_roles,) if raw_roles else ()
        elif isinstance(raw_roles, list) and all(isinstance(r, str) for r in raw_roles):
            roles = tuple(dict.fromkeys(r for r in raw_roles if r))
        else:
            raise Unauthorized(
                f"the {auth.role_claim!r} claim (auth.role_claim) must be a string or a list "
                "of strings",
                code="invalid_token",
            )
        return Identity(user_id=str(user), roles=roles, expires_at=numeric_date(claims, "exp"))


_identity_encoder = msgspec.json.Encoder()
_identity_decoder = msgspec.json.Decoder(Identity)


def encode_identity(identity: Identity) -> bytes:
    return _identity_encoder.encode(identity)


def decode_identity(data: bytes) -> Identity:
    """The identity stored with a ticket; ``Unauthorized`` (``invalid_ticket``) when the
    stored value is not one that :func:`encode_identity` could have written."""
    try:
        identity = _identity_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, TypeError) as e:
        raise Unauthorized(
            f"the identity stored with this ticket is unreadable: {str(e)[:200]}",
            code="invalid_ticket",
        ) from None
    exp = identity.expires_at
    if not identity.user_id or (exp is not None and not 0 <= exp <= MAX_NUMERIC_DATE):
        raise Unauthorized(
            "the identity stored with this ticket is unreadable: no user, or an expiry "
            "out of range",
            code="invalid_ticket",
        )
    return identity
