"""Tokens for tests: an HS256 secret, and a helper that signs claims."""

from __future__ import annotations

import time
from typing import Any

import jwt

from sanic_realtime import Realtime

from .conftest import make_realtime

SECRET = "test-secret-" + "x" * 40


def token(
    sub: str | int | None = "alice",
    role: str | list[str] | None = None,
    *,
    exp_in: float | None = 3600,
    key: Any = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A signed JWT; ``exp_in`` seconds from now (None: no exp)."""
    payload: dict[str, Any] = dict(claims)
    if sub is not None:
        payload["sub"] = sub
    if role is not None:
        payload["role"] = role
    if exp_in is not None:
        payload["exp"] = int(time.time() + exp_in)  # PyJWT truncates a float exp
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def jwt_realtime(auth: dict[str, Any] | None = None, **overrides: Any) -> Realtime:
    """BASE channels with ``auth.mode: jwt`` on the test secret."""
    return make_realtime(auth={"mode": "jwt", "jwt_secret": SECRET, **(auth or {})}, **overrides)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
