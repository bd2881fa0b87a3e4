"""Close codes and error codes: the one list the server, the Python client and the
tests use (docs/protocol.md, "Close codes" and "Errors"). Pure."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, get_args

__all__ = [
    "HTTP_ERROR_CODES",
    "IN_BAND_ERROR_CODES",
    "CloseCode",
    "ErrorCode",
    "HttpErrorCode",
    "InBandErrorCode",
]


class CloseCode(IntEnum):
    """Every close code the server sends, and the one the Python client sends itself."""

    #: The client asked, or the connection ended normally.
    NORMAL = 1000
    #: The server is shutting down.
    GOING_AWAY = 1001
    #: A frame broke RFC 6455 (websockets' own check).
    PROTOCOL_ERROR = 1002
    #: A text frame is not valid UTF-8.
    INVALID_DATA = 1007
    #: The token expired, a refresh token was another user's, or access was revoked.
    POLICY = 1008
    #: A message over ``max_message_size``.
    TOO_BIG = 1009
    #: The client did not answer pings within ``client_timeout``, or a write failed.
    SERVER_ERROR = 1011
    #: The Python client's own code when the server stopped answering its pings.
    HEARTBEAT = 4000
    #: A client that does not read what it asked for (events, pongs).
    SLOW_CONSUMER = 4008
    #: More frames than ``client_rate_limit`` allows.
    RATE_LIMITED = 4429


#: The ``code`` of the in-band ``error`` message (docs/protocol.md, "In-band errors").
InBandErrorCode = Literal[
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "binary_not_supported",
    "unknown_channel",
    "invalid_channel",
    "unknown_filter",
    "bad_filter_value",
    "bad_since",
    "forbidden",
    "authorize_failed",
    "too_many_subscriptions",
    "too_many_channels",
    "invalid_token",
    "token_expired",
    "auth_disabled",
    "anonymous",
    "backplane_unavailable",
    "initial_state_failed",
    "message_too_large",
    "rate_limited",
    "busy",
    "handler_failed",
    "handler_timeout",
    "no_presence",
]
#: The ``error.code`` of an HTTP refusal (docs/protocol.md, "Refusals").
HttpErrorCode = Literal[
    "bad_request",
    "invalid_body",
    "invalid_json",
    "invalid_message",
    "invalid_handshake",
    "unknown_channel",
    "invalid_channel",
    "unknown_filter",
    "bad_filter_value",
    "bad_since",
    "too_many_subscriptions",
    "too_many_channels",
    "no_presence",
    "authorize_failed",
    "unauthorized",
    "invalid_token",
    "token_expired",
    "invalid_ticket",
    "forbidden",
    "origin_not_allowed",
    "auth_disabled",
    "upgrade_required",
    "rate_limited",
    "too_many_connections",
    "server_full",
    "shutting_down",
    "backplane_unavailable",
]
#: Any error code the server sends.
ErrorCode = InBandErrorCode | HttpErrorCode

IN_BAND_ERROR_CODES: tuple[str, ...] = get_args(InBandErrorCode)
HTTP_ERROR_CODES: tuple[str, ...] = get_args(HttpErrorCode)
