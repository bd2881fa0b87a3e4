"""Limits and liveness through a real server: frame size, rate, heartbeats, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import make_realtime, recv_json
from .rawclient import RawClient


async def closed_with(ws: Any, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    rcvd = info.value.rcvd
    assert rcvd is not None, "the server sent no close frame"
    return rcvd.code, rcvd.reason


async def test_oversized_frame_closes_1009(serve: Any) -> None:
    """A client frame over max_message_size closes the connection with 1009."""
    server = await serve(make_realtime(max_message_size=256))
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send('{"type": "ping"}' + " " * 200)  # under the limit: fine
        assert (await recv_json(ws))["type"] == "pong"
        await ws.send('{"type": "ping", "data": "' + "x" * 300 + '"}')
        code, _ = await closed_with(ws)
        assert code == 1009
    await asyncio.sleep(0.05)
    assert server.realtime.stats()["total_clients"] == 0


async def test_rate_limit_closes_4429(serve: Any) -> None:
    """More client messages than client_rate_limit allows: close 4429, after answering
    the allowed ones."""
    server = await serve(make_realtime(client_rate_limit={"messages": 5, "per": "1s"}))
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        for _ in range(8):
            await ws.send('{"type": "ping"}')
        pongs = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                message = await recv_json(ws)
                assert message["type"] == "pong"
                pongs += 1
        assert pongs == 5
        assert info.value.rcvd is not None and info.value.rcvd.code == 4429
        assert "limit 5 per 1s" in info.value.rcvd.reason


async def test_rate_limit_allows_a_steady_client(serve: Any) -> None:
    """A client that stays under the rate is never closed."""
    server = await serve(make_realtime(client_rate_limit={"messages": 5, "per": "250ms"}))
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        for _ in range(15):
            await ws.send('{"type": "ping"}')
            assert (await recv_json(ws))["type"] == "pong"
            await asyncio.sleep(0.06)


async def test_heartbeat_pings_and_silent_client_timeout(serve: Any) -> None:
    """The server pings every heartbeat_interval; a client that sends nothing, not even
    pongs, is closed with 1011 after client_timeout. One that answers pings stays."""
    server = await serve(make_realtime(heartbeat_interval="100ms", client_timeout="400ms"))
    silent = await RawClient.connect(server.port, "/ws/logs")
    async with server.connect("/ws/logs", ping_interval=None) as lively:
        await recv_json(lively)
        await silent.read_until_closed(timeout=3.0, answer_close=True)
        assert silent.pings() >= 2
        assert silent.close_code == 1011
        assert "client timeout" in (silent.close_reason or "")
        # The websockets client answered every ping: still connected and served.
        await server.realtime.publish("logs", "log", {"alive": True})
        assert (await recv_json(lively))["data"] == {"alive": True}
        assert server.realtime.stats()["total_clients"] == 1
    silent.close()


async def test_messages_count_as_traffic(serve: Any) -> None:
    """A client that answers no pings but sends messages is alive."""
    server = await serve(make_realtime(heartbeat_interval="100ms", client_timeout="400ms"))
    client = await RawClient.connect(server.port, "/ws")
    for _ in range(10):
        await asyncio.sleep(0.1)
        await client.send_text('{"type": "ping"}')
        await client.read_for(0.02)
    assert client.pings() >= 3  # pinged, never answered
    assert client.close_code is None
    assert server.realtime.stats()["total_clients"] == 1
    client.close()
