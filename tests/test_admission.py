"""Admission (issue 18): a one-time ticket is redeemed only after every other check has
passed. Before, it was redeemed (GETDEL) right after the origin check, so a client
refused for its channel, its roles, capacity or a missing Upgrade header had burnt it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .test_auth_routes import established, get_ticket, refusal
from .tokens import jwt_realtime, token


async def refused_then_served(server: Any, ticket: str, path: str, status: int, code: str) -> None:
    got, error, _ = await refusal(server, f"{path}{'&' if '?' in path else '?'}ticket={ticket}")
    assert (got, error["code"]) == (status, code), error
    # The same ticket, once: served.
    async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
        await established(ws)
    # ... and only once.
    got, error, _ = await refusal(server, f"/ws/logs?ticket={ticket}")
    assert (got, error["code"]) == (401, "invalid_ticket")


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/ws/nope", 404, "unknown_channel"),
        ("/ws/alerts", 403, "forbidden"),  # alerts needs the role admin
        ("/ws/logs?colour=red", 400, "unknown_filter"),
        ("/ws/logs?since=nope", 400, "bad_since"),
    ],
    ids=["404-unknown-channel", "403-forbidden", "400-unknown-filter", "400-bad-since"],
)
async def test_a_ticket_survives_a_refused_plan(
    serve: Any, path: str, status: int, code: str
) -> None:
    server = await serve(jwt_realtime())
    ticket = await get_ticket(server, token("alice"))
    await refused_then_served(server, ticket, path, status, code)


async def test_a_ticket_survives_server_full(serve: Any) -> None:
    """503 server_full: the slot is checked before the ticket is redeemed."""
    server = await serve(jwt_realtime(max_clients=1))
    ticket = await get_ticket(server, token("alice"))
    async with server.connect(f"/ws/logs?token={token('bob')}") as other:
        await established(other)
        got, error, _ = await refusal(server, f"/ws/logs?ticket={ticket}")
        assert (got, error["code"]) == (503, "server_full")
    await asyncio.sleep(0.05)  # bob's slot is given back when his handler ends
    async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
        await established(ws)


async def test_a_ticket_survives_too_many_connections_per_user(serve: Any) -> None:
    """429 too_many_connections (max_connections_per_user) comes before the redemption."""
    server = await serve(jwt_realtime(max_connections_per_user=1))
    ticket = await get_ticket(server, token("alice"))
    async with server.connect(f"/ws/logs?token={token('alice')}") as first:
        await established(first)
        got, error, _ = await refusal(server, f"/ws/logs?ticket={ticket}")
        assert (got, error["code"]) == (429, "too_many_connections")
    await asyncio.sleep(0.05)
    async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
        await established(ws)


async def test_a_ticket_survives_a_request_without_upgrade(serve: Any) -> None:
    """426 upgrade_required (a plain GET): the ticket is still good for the WebSocket."""
    server = await serve(jwt_realtime())
    ticket = await get_ticket(server, token("alice"))
    response = await server.http.get(f"/ws/logs?ticket={ticket}")
    assert response.status_code == 426
    assert response.json()["error"]["code"] == "upgrade_required"
    async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
        await established(ws)


async def test_of_racing_requests_with_one_ticket_one_is_served(serve: Any) -> None:
    """Both look the ticket up and pass every check; one redeems it, the other gets 401
    invalid_ticket and its slot back."""
    server = await serve(jwt_realtime(max_clients=2))
    ticket = await get_ticket(server, token("alice"))

    async def attempt() -> str:
        try:
            async with server.connect(f"/ws/logs?ticket={ticket}") as ws:
                await established(ws)
                await asyncio.sleep(0.2)
                return "served"
        except Exception as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            return f"refused {status}"

    results = await asyncio.gather(*(attempt() for _ in range(2)))
    assert sorted(results) == ["refused 401", "served"]
    await asyncio.sleep(0.05)
    # Every refused request gave its slot back at once (a reservation otherwise holds it
    # for 30 s): max_clients clients connect right after.
    async with server.connect(f"/ws/logs?token={token('bob')}") as a:
        await established(a)
        async with server.connect(f"/ws/logs?token={token('carol')}") as b:
            await established(b)
