"""What every route answers with: JSON bodies, refusals, the client's address."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec
from sanic import Request
from sanic.response import HTTPResponse

from ..exceptions import ClientError, TooManyRequests, Unauthorized

__all__ = ["client_ip", "error_response", "json_response"]

_encoder = msgspec.json.Encoder()


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTTPResponse:
    return HTTPResponse(
        _encoder.encode(body),
        status=status,
        headers=dict(headers or {}),
        content_type="application/json",
    )


def error_response(error: ClientError) -> HTTPResponse:
    """``{"error": {"code", "message"}}`` with the error's status, and the headers RFC
    6750 (401) and RFC 6585 (429) ask for."""
    headers = {}
    if isinstance(error, Unauthorized):
        # RFC 6750 section 3: no error attribute when no credentials were sent.
        challenge = 'Bearer realm="sanic-realtime"'
        if error.code in ("invalid_token", "token_expired", "invalid_ticket"):
            challenge += ', error="invalid_token"'
        headers["WWW-Authenticate"] = challenge
    elif isinstance(error, TooManyRequests) and error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return json_response({"error": error.to_dict()}, error.status, headers)


def client_ip(request: Request) -> str:
    """The proxy-aware address when Sanic is told about proxies (``REAL_IP_HEADER``,
    ``PROXIES_COUNT``, ``FORWARDED_SECRET``), else the peer's."""
    return str(request.remote_addr or request.ip)
