"""Publishing from Python: :func:`publish` through the admin broadcast route (urllib, no
WebSocket)."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from .errors import RealtimeClientError, Refused
from .event import encoder

__all__ = ["DEFAULT_BROADCAST_PATH", "broadcast_url", "publish"]


class _Broadcast(msgspec.Struct, omit_defaults=True):
    channel: str
    type: str
    data: Any = None
    target: dict[str, str] | None = None


class _BroadcastReply(msgspec.Struct):
    success: bool
    recipients: int
    id: str


DEFAULT_BROADCAST_PATH = "/admin/ws/broadcast"


def broadcast_url(url: str) -> str:
    """The admin broadcast URL from a server URL: ``ws``/``wss`` become ``http``/``https``;
    a URL without a path gets the default broadcast path."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    path = parts.path if parts.path not in ("", "/") else DEFAULT_BROADCAST_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def publish(
    url: str,
    channel: str,
    type: str,
    data: Any = None,
    *,
    token: str | None = None,
    user_id: str | None = None,
    role: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Publish through the admin broadcast route (blocking; ``asyncio.to_thread`` it from
    async code). ``url``: the server (``http://host:8000``, the default path is added) or
    the route's full URL. Returns ``{"success", "recipients", "id"}``; raises
    :class:`Refused` with the server's status, code and message."""
    target = {k: v for k, v in (("user_id", user_id), ("role", role)) if v is not None}
    body = encoder.encode(_Broadcast(channel, type, data, target or None))
    request = urllib.request.Request(broadcast_url(url), data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as e:
        raise Refused.from_response(e.code, e.read(), e.headers.get("Retry-After")) from None
    try:
        reply = msgspec.json.decode(raw, type=_BroadcastReply)
    except (msgspec.DecodeError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise RealtimeClientError(
            "protocol_error", f"the server's reply is not a broadcast reply: {reason}"
        ) from None
    return msgspec.structs.asdict(reply)
