"""Deeply nested JSON (issue 17, item 6): 3,000 bytes of brackets made the decoder raise
``RecursionError``, which closed the sender with 1011 and logged a traceback (and made
the admin broadcast route answer 500). Now: the in-band ``invalid_json`` error with the
connection left open, and 400 ``invalid_json`` on the broadcast route."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import websockets.asyncio.server

from sanic_realtime.client import RealtimeClient
from sanic_realtime.protocol import MAX_JSON_DEPTH

from .conftest import make_realtime, recv_json
from .test_client import take


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


def frames() -> list[tuple[str, str]]:
    just_over = nested(MAX_JSON_DEPTH)  # inside the message object: one level too many
    return [
        ("brackets-1500", nested(1500)),  # 3,000 bytes, past any decoder's recursion
        ("brackets-2040", nested(2040, "")),  # 4 KB
        ("objects-600", '{"a":' * 600 + "1" + "}" * 600),  # under max_message_size
        ("in-a-subscribe", f'{{"type": "subscribe", "channels": ["logs"], "filter": {just_over}}}'),
        ("in-a-ping", f'{{"type": "ping", "x": {nested(1200)}}}'),
    ]


@pytest.mark.parametrize(("frame"), [f for _, f in frames()], ids=[i for i, _ in frames()])
async def test_deep_frames_get_invalid_json_and_the_connection_stays_open(
    serve: Any, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve(make_realtime())
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        with caplog.at_level(logging.DEBUG):
            await ws.send(frame)
            error = await recv_json(ws)
        assert error["type"] == "error"
        assert error["data"]["code"] == "invalid_json"
        assert f"more than {MAX_JSON_DEPTH} levels" in error["data"]["message"]
        assert not [r for r in caplog.records if r.exc_info], "no traceback is logged"
        # Still open, still served.
        await ws.send('{"type": "subscribe", "channels": ["logs"]}')
        assert (await recv_json(ws))["type"] == "subscribed"
        await server.realtime.publish("logs", "log", {"level": "info"})
        assert (await recv_json(ws))["data"] == {"level": "info"}


async def test_a_frame_at_the_depth_limit_is_accepted(serve: Any) -> None:
    """MAX_JSON_DEPTH levels in all (the message object is one): decoded, not refused."""
    server = await serve(make_realtime())
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send(f'{{"type": "ping", "x": {nested(MAX_JSON_DEPTH - 1)}}}')
        reply = await recv_json(ws)
        # Reached the message check: a ping has no field x (not a depth refusal).
        assert (reply["data"]["code"], "`x`" in reply["data"]["message"]) == (
            "invalid_message",
            True,
        )


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (nested(1500), 400),  # the decoder's own limit
        (nested(MAX_JSON_DEPTH), 400),  # the body is one level: one too many
        (nested(MAX_JSON_DEPTH - 1), 200),  # at the limit
    ],
    ids=["1500", "one-over", "at-limit"],
)
async def test_broadcast_of_deep_data(serve: Any, data: str, status: int) -> None:
    server = await serve(make_realtime())
    body = f'{{"channel": "logs", "type": "deep", "data": {data}}}'
    response = await server.http.post("/admin/ws/broadcast", content=body)
    assert response.status_code == status, response.text
    if status == 400:
        error = response.json()["error"]
        assert error["code"] == "invalid_json"
        assert f"more than {MAX_JSON_DEPTH} levels" in error["message"]


# --------------------------------------------------------------------------- neighbours


async def test_the_python_client_skips_a_deep_message_from_a_server() -> None:
    """A server (or a proxy) that sends JSON too deep to decode: the client logs and skips
    that message, and keeps the connection (it failed with a RecursionError before)."""
    welcome = '{"type": "connection_established", "data": {"client_id": "c_1"}}'
    event = '{"type": "log", "channel": "logs", "id": "e:1", "timestamp": "t", "data": 1}'

    async def handler(ws: Any) -> None:
        await ws.send(welcome)
        await ws.send(f'{{"type": "log", "data": {nested(5000)}}}')
        await ws.send(event)
        await ws.wait_closed()

    async with websockets.asyncio.server.serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        async with RealtimeClient(f"ws://127.0.0.1:{port}/ws", reconnect=False) as client:
            (got,) = await take(client, 1)
            assert (got.id, got.data) == ("e:1", 1)
            assert client.status.state == "connected"
