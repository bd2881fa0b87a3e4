"""Odd time claims (issue 17, item 5): exp, nbf and iat must be JSON numbers (RFC 7519
NumericDate). PyJWT takes int(claim), so a numeric string passed the handshake and the
connection never expired; each case below was accepted before the fix."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from websockets.exceptions import InvalidStatus

from .tokens import SECRET, bearer, jwt_realtime


def signed(**claims: Any) -> str:
    return jwt.encode({"sub": "alice", **claims}, SECRET, algorithm="HS256")


later = int(time.time() + 3600)


@pytest.mark.parametrize(
    ("claims", "name"),
    [
        ({"exp": str(later)}, "exp"),
        ({"exp": True}, "exp"),
        ({"exp": later, "nbf": str(later - 7200)}, "nbf"),
        ({"exp": later, "iat": "0"}, "iat"),
        ({"exp": later, "iat": [1]}, "iat"),
    ],
    ids=["exp-string", "exp-boolean", "nbf-string", "iat-string", "iat-array"],
)
async def test_time_claims_must_be_numbers(serve: Any, claims: dict[str, Any], name: str) -> None:
    """Refused before the upgrade with 401 invalid_token naming the claim, and no ticket
    can be minted from such a token."""
    server = await serve(jwt_realtime())
    token = signed(**claims)
    with pytest.raises(InvalidStatus) as info:
        async with server.connect("/ws/logs", additional_headers=bearer(token)):
            pass
    assert info.value.response.status_code == 401
    ticket = await server.http.post("/ws/ticket", headers=bearer(token))
    assert ticket.status_code == 401
    error = ticket.json()["error"]
    assert error["code"] == "invalid_token"
    assert repr(name) in error["message"]


async def test_a_numeric_exp_still_works(serve: Any) -> None:
    """A number (int or float) is a NumericDate: connected, with its expires_at."""
    server = await serve(jwt_realtime())
    async with server.connect("/ws/logs", additional_headers=bearer(signed(exp=later + 0.5))) as ws:
        welcome = await ws.recv()
        assert "connection_established" in str(welcome)
