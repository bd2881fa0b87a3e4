"""The errors the client raises, and the internal ones that steer its connection loop."""

from __future__ import annotations

import contextlib

import msgspec
from websockets.exceptions import ConnectionClosed

__all__ = [
    "Dropped",
    "GaveUp",
    "NoReply",
    "RealtimeClientError",
    "Refused",
    "RequestFailed",
    "ServerClosed",
]


class RealtimeClientError(Exception):
    """A failure the client reports; ``code`` is machine-readable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Refused(RealtimeClientError):
    """The server refused an HTTP request or a WebSocket handshake (before the upgrade)
    with ``status`` and its JSON error body's ``code`` and ``message``."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message)
        self.status = status
        #: Seconds, from a ``Retry-After`` header (429).
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.code}: {self.message}"

    @classmethod
    def from_response(cls, status: int, body: bytes, retry_after: str | None = None) -> Refused:
        code, message = f"http_{status}", body.decode("utf-8", "replace").strip()[:300]
        with contextlib.suppress(msgspec.DecodeError, RecursionError):
            error = msgspec.json.decode(body, type=_ErrorBody).error
            code, message = error.code, error.message
        delay = None
        if retry_after is not None:
            with contextlib.suppress(ValueError):
                delay = float(retry_after)
        return cls(status, code, message or f"HTTP {status}", retry_after=delay)


class _ErrorDetail(msgspec.Struct):
    code: str
    message: str


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


class RequestFailed(RealtimeClientError):
    """The server answered a request (``subscribe``, ``unsubscribe``, ``presence``,
    ``publish``) with an ``error`` message: ``code`` is the server's (``unknown_channel``,
    ``bad_filter_value``, ``forbidden``, ``no_presence``, ``unknown_type``,
    ``rate_limited``, ...). The request had no effect."""


class Dropped(RequestFailed):
    """A :meth:`~sanic_realtime.client.RealtimeClient.publish` the server accepted but
    did not send: the channel's message handler dropped it (``published`` with
    ``dropped: true``). Code ``dropped``."""


class NoReply(RealtimeClientError):
    """A ``presence`` or ``publish`` request got no answer. Either it was not sent
    (``not_connected``, ``too_many_requests``: ``max_pending_requests`` are waiting), or
    what became of it is unknown (``connection_lost`` before the reply,
    ``request_timeout``): a publish may have reached the subscribers all the same."""


class ServerClosed(RealtimeClientError):
    """The server closed the connection with a code after which the client does not
    reconnect (1008 without a token function, 1007, 1009)."""

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(f"closed_{close_code}", f"the server closed with {close_code} {reason}")
        self.close_code = close_code
        self.reason = reason


class GaveUp(RealtimeClientError):
    """``max_reconnect_attempts`` attempts in a row failed."""


# --------------------------------------------------------------------------- internal


class Fatal(Exception):
    """Ends the connection loop with ``error`` (state ``failed``)."""

    def __init__(self, error: RealtimeClientError) -> None:
        self.error = error


class Lost(Exception):
    """The connection ended before the reply came."""


class Redirect(Exception):
    """Connect again at once, to the URL given (a channel URL's general route)."""


class Retry(Exception):
    """This attempt failed in a way the next one may not (e.g. Redis briefly away)."""


def describe(error: BaseException) -> str:
    """Why an attempt or a connection ended, for people (``status.last_error``)."""
    if isinstance(error, TimeoutError):
        return "timed out connecting"
    if isinstance(error, ConnectionClosed):
        rcvd = error.rcvd
        if rcvd is not None:
            return f"closed by the server: {rcvd.code} {rcvd.reason}".strip()
        return "connection lost"
    if isinstance(error, Lost):
        return "connection lost"
    if isinstance(error, Retry):
        return str(error)
    return f"{type(error).__name__}: {error}"
