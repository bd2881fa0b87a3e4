"""Every error sanic-realtime raises on purpose.

The hierarchy::

    RealtimeError                     root: catch this to catch everything below
    ├── ConfigError                   the configuration is wrong (.path names the key)
    └── ClientError                   a client asked for something we refuse (.code, .status)
        ├── UnknownChannel            404 unknown_channel
        ├── InvalidChannel            400 invalid_channel (a template's parameter fails its
        │                             pattern; .param)
        ├── TooManyChannels           503 too_many_channels (max_channels instances in use)
        ├── AuthorizeFailed           500 authorize_failed (an authorize hook raised or
        │                             timed out)
        ├── UnknownFilter             400 unknown_filter (.param)
        ├── BadFilterValue            400 bad_filter_value (.param)
        ├── BadSince                  400 bad_since (.param)
        ├── BadMessage                a bad client message (in-band), or 400 before the upgrade
        │                             (too_many_subscriptions, no channel to subscribe to)
        ├── OriginNotAllowed          403 origin_not_allowed
        ├── Unauthorized              401 unauthorized / invalid_token / token_expired
        ├── Forbidden                 403 forbidden (a role is missing)
        ├── TooManyRequests           429 rate_limited / too_many_connections (.retry_after)
        └── ServerUnavailable         503 server_full / shutting_down

A ``ClientError`` is turned into an HTTP refusal before the WebSocket upgrade
(``{"error": {"code", "message"}}`` with ``.status``) or, once the connection is
open, into an ``error`` message; the connection then stays open.
"""

from __future__ import annotations

__all__ = [
    "AuthorizeFailed",
    "BadFilterValue",
    "BadMessage",
    "BadSince",
    "ClientError",
    "ConfigError",
    "Forbidden",
    "InvalidChannel",
    "OriginNotAllowed",
    "RealtimeError",
    "ServerUnavailable",
    "TooManyChannels",
    "TooManyRequests",
    "Unauthorized",
    "UnknownChannel",
    "UnknownFilter",
]


class RealtimeError(Exception):
    """Root of every error raised by sanic-realtime."""


class ConfigError(RealtimeError):
    """The configuration is invalid: ``path`` is the dotted key path, when one applies,
    ``reason`` what is wrong with it, and ``message`` (like ``str(error)``) both,
    ``<path>: <reason>``: Sanic's error printer shows ``message``, so the key is named
    however the app is started."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.reason = message
        self.path = path
        self.message = f"{path}: {message}" if path else message
        super().__init__(self.message)


class ClientError(RealtimeError):
    """A refusal that a client sees, as an HTTP status or an in-band ``error``."""

    code: str = "bad_request"
    status: int = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        super().__init__(message)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class UnknownChannel(ClientError):
    code = "unknown_channel"
    status = 404

    def __init__(self, channel: str, known: list[str] | None = None) -> None:
        self.channel = channel
        hint = f"; known channels: {', '.join(known)}" if known else ""
        super().__init__(f"unknown channel {channel!r}{hint}")


class InvalidChannel(ClientError):
    """An instance name of a channel template whose parameter fails its pattern."""

    code = "invalid_channel"
    status = 400

    def __init__(self, channel: str, param: str, message: str) -> None:
        self.channel = channel
        self.param = param
        super().__init__(message)


class TooManyChannels(ClientError):
    """``max_channels`` template instances are in use in this process."""

    code = "too_many_channels"
    status = 503


class AuthorizeFailed(ClientError):
    """An ``authorize`` hook raised or did not answer within ``authorize_timeout``."""

    code = "authorize_failed"
    status = 500


class UnknownFilter(ClientError):
    code = "unknown_filter"
    status = 400

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


class BadFilterValue(ClientError):
    code = "bad_filter_value"
    status = 400

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


class BadSince(ClientError):
    code = "bad_since"
    status = 400

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        super().__init__(message)


class BadMessage(ClientError):
    """A client frame that is not a valid message (``code`` says how). A message
    handler raises it to refuse a client message: ``BadMessage("...", code="too_long")``
    is the sender's ``error`` with that code."""

    code = "invalid_message"
    #: The ``ref`` of the message refused, when it had one.
    ref: str | None = None


class OriginNotAllowed(ClientError):
    code = "origin_not_allowed"
    status = 403


class Unauthorized(ClientError):
    """No credentials (``unauthorized``), or bad ones (``invalid_token``, ``token_expired``).
    The HTTP refusal carries ``WWW-Authenticate: Bearer`` (RFC 6750)."""

    code = "unauthorized"
    status = 401


class Forbidden(ClientError):
    """Authenticated, but without a role the channel or route requires."""

    code = "forbidden"
    status = 403


class TooManyRequests(ClientError):
    """A limit was hit; ``retry_after`` (seconds), when known, becomes ``Retry-After``."""

    code = "rate_limited"
    status = 429

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code)


class ServerUnavailable(ClientError):
    code = "server_full"
    status = 503
