"""Hostile clients at the transport (issue 17): ping floods, failed handshakes, and closes
the server starts while the client is still sending. Each test failed before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from sanic_realtime.routes import websocket as blueprint

from .conftest import make_realtime, recv_json, recv_until
from .processes import SanicProcess
from .rawclient import RawClient
from .tokens import token


def rss_kib(pid: int) -> int:
    """The resident set of a process, from /proc/<pid>/status (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def ping_frames(payload: bytes, total: int) -> bytes:
    """Masked client ping frames, about ``total`` bytes of them."""
    frame = Frame(Opcode.PING, payload).serialize(mask=True)
    return frame * max(1, total // len(frame))


async def flood(sock: socket.socket, chunk: bytes, limit: int, seconds: float) -> int:
    """Send ``chunk`` again and again, never reading, until ``limit`` bytes went out or
    ``seconds`` passed (the server stopped reading, so TCP holds the sender back), or the
    server closed. Returns the bytes sent."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    sent = 0
    while sent < limit and (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait_for(loop.sock_sendall(sock, chunk), left)
        except (TimeoutError, OSError):
            break
        sent += len(chunk)
    return sent


async def publish_latency(server: SanicProcess, ws: Any, n: int) -> float:
    """Seconds from an admin broadcast to its arrival at ``ws``."""
    from .scale_app import ADMIN_TOKEN

    started = time.perf_counter()
    response = await server.http.post(
        "/admin/ws/broadcast",
        json={"channel": "logs", "type": "log", "data": {"n": n}},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    message = await recv_until(ws, "log", timeout=10)
    assert message["data"] == {"n": n}
    return time.perf_counter() - started


@pytest.mark.parametrize("payload", [b"x" * 125, b""], ids=["125-byte", "empty"])
async def test_a_ping_flood_that_never_reads_costs_the_server_no_memory(payload: bytes) -> None:
    """An authenticated client sends up to 50 MB of pings and reads nothing (its receive
    buffer is small). With the rate limit out of the way (RT_CLIENT_RATE), the server
    writes pongs only while its transport is under the high-water mark and reads no
    more until then: its RSS grows by less than 8 MB (it grew by 500-700 MB before), and
    another client still connects and receives events."""
    env = {"RT_CLIENT_RATE": "1000000000"}
    server = await SanicProcess("tests.scale_app:create_app", env).start()
    assert server.process is not None
    pid = server.process.pid
    try:
        path = f"/ws/logs?token={token('flooder')}"
        attacker = await RawClient.connect(server.port, path, rcvbuf=4096)
        async with connect(server.ws_url(f"/ws/logs?token={token('bob')}")) as other:
            await recv_json(other)
            before_latency = await publish_latency(server, other, 0)
            before = rss_kib(pid)
            chunk = ping_frames(payload, 1 << 20)
            sent = await flood(attacker.sock, chunk, 50 << 20, seconds=8.0)
            during = await publish_latency(server, other, 1)
            # A new connection is served while the flooder is still connected.
            async with connect(server.ws_url(f"/ws/logs?token={token('carol')}")) as late:
                assert (await recv_json(late))["type"] == "connection_established"
            grown = rss_kib(pid) - before
        print(
            f"ping flood ({len(payload)}-byte pings): sent {sent / 1e6:.1f} MB, server RSS "
            f"+{grown / 1024:.1f} MB; broadcast latency {before_latency * 1e3:.1f} ms "
            f"before, {during * 1e3:.1f} ms during"
        )
        assert grown < 8 * 1024, f"the server's RSS grew by {grown} KiB under a ping flood"
        # The connect above and the broadcast were served; generous bound, loaded CI.
        assert during < 2.0
        attacker.close()
    finally:
        await server.stop()


async def test_pings_count_toward_the_rate_limit(serve: Any) -> None:
    """Every frame counts toward client_rate_limit, control frames too: a burst of pings
    closes the connection with 4429, and the client reads that code."""
    server = await serve(make_realtime(client_rate_limit={"messages": 20, "per": "10s"}))
    client = await RawClient.connect(server.port, "/ws/logs")
    await client.read_for(0.1)  # connection_established
    await asyncio.get_running_loop().sock_sendall(client.sock, ping_frames(b"p", 40 * 7))
    await client.read_until_closed(timeout=10, answer_close=True)
    assert client.close_code == 4429, (client.close_code, client.close_reason)
    assert "limit 20 per 10s" in (client.close_reason or "")
    client.close()


@pytest.mark.parametrize(
    "headers",
    [
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"},
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "8",
        },
        {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "short",
            "Sec-WebSocket-Version": "13",
        },
        {
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    ],
    ids=["no-key", "version-8", "bad-key", "no-connection-header"],
)
async def test_failed_handshakes_hold_no_slot(serve: Any, headers: dict[str, str]) -> None:
    """Ten times max_clients upgrade requests that websockets refuses: each is refused
    with websockets' status (400, or 426 without ``Connection: Upgrade``) and JSON naming
    the header, before a slot is reserved, so real clients are served right after, up to
    max_clients."""
    server = await serve(make_realtime(max_clients=10))
    for _ in range(100):
        response = await server.http.get("/ws/logs", headers=headers)
        assert response.status_code in (400, 426), response.text  # websockets' status
    health = (await server.http.get("/ws/health")).json()
    assert health["clients"] == 0
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(10):
            ws = await stack.enter_async_context(server.connect("/ws/logs"))
            assert (await recv_json(ws))["type"] == "connection_established"
        assert server.realtime.stats()["total_clients"] == 10
    # The refusal says what was wrong, as JSON.
    error = (await server.http.get("/ws/logs", headers=headers)).json()["error"]
    assert error["code"] == "invalid_handshake"
    assert "Sec-WebSocket" in error["message"] or "Connection" in error["message"]


async def test_a_slot_is_released_when_the_answer_is_not_101(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence: with the handshake check switched off, websockets
    refuses the bad handshakes after a slot was reserved, and the response middleware
    gives each slot back at once instead of after RESERVATION_TTL."""
    monkeypatch.setattr(blueprint, "check_handshake", lambda request: None)
    server = await serve(make_realtime(max_clients=5))
    bad = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}
    for _ in range(20):
        response = await server.http.get("/ws/logs", headers=bad)
        assert response.status_code == 400
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(5):
            ws = await stack.enter_async_context(server.connect("/ws/logs"))
            assert (await recv_json(ws))["type"] == "connection_established"


def text_frames(text: str, count: int) -> bytes:
    """``count`` masked client text frames, in one buffer (one write, one burst)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=True) * count


async def test_4429_after_a_burst_reaches_the_client_every_time(serve: Any) -> None:
    """A client that sends 200 messages in one burst, and more after, before it reads
    anything, is closed with 4429. The closing handshake (close frame, then reading
    until the client's close) delivers the code 20 times out of 20; before, TCP was
    closed with the burst unread, and the reset discarded the close frame."""
    server = await serve(make_realtime(client_rate_limit={"messages": 50, "per": "10s"}))
    loop = asyncio.get_running_loop()
    codes = []
    for _ in range(20):
        client = await RawClient.connect(server.port, "/ws")
        await loop.sock_sendall(client.sock, text_frames('{"type": "ping"}', 200))
        await asyncio.sleep(0.05)
        with contextlib.suppress(OSError):
            await loop.sock_sendall(client.sock, text_frames('{"type": "ping"}', 100))
        try:
            await client.read_until_closed(timeout=10, answer_close=True)
            codes.append(client.close_code)
        except ConnectionResetError:
            codes.append(None)
        client.close()
    assert codes == [4429] * 20


async def test_1009_reaches_a_client_that_keeps_sending(serve: Any) -> None:
    """An oversized frame followed by more messages in the same burst: the client reads
    1009 (the protocol's own failure also goes through the closing handshake)."""
    server = await serve(make_realtime(max_message_size=1024))
    loop = asyncio.get_running_loop()
    codes = []
    for _ in range(10):
        client = await RawClient.connect(server.port, "/ws")
        burst = text_frames('{"type": "ping", "pad": "' + "x" * 2000 + '"}', 1)
        burst += text_frames('{"type": "ping"}', 200)
        await loop.sock_sendall(client.sock, burst)
        await asyncio.sleep(0.05)
        with contextlib.suppress(OSError):
            await loop.sock_sendall(client.sock, text_frames('{"type": "ping"}', 100))
        try:
            await client.read_until_closed(timeout=10, answer_close=True)
            codes.append(client.close_code)
        except ConnectionResetError:
            codes.append(None)
        client.close()
    assert codes == [1009] * 10


async def test_4008_reaches_a_slow_reader_that_reads_again(serve: Any) -> None:
    """A client that stops reading while it keeps sending fills its buffer and is closed
    with 4008. The close frame is written behind what the transport already holds (at
    most its high-water mark); a client that reads again within CLOSE_TIMEOUT reads the
    events, then the 4008 close frame."""
    server = await serve(make_realtime(buffer_size=20))
    client = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    await client.read_for(0.05)
    hub = server.realtime.hub
    payload = {"message": "y" * 2000}
    # The kernel takes megabytes before the transport holds any: publish until full.
    for i in range(20000):
        await server.realtime.publish("logs", "log", {**payload, "n": i})
        if i % 50 == 0:
            await client.send_text('{"type": "ping"}')
            await asyncio.sleep(0)
        if hub.slow_disconnects:
            break
    assert hub.slow_disconnects == 1
    await client.send_text('{"type": "ping"}')  # still sending after the close
    await client.read_until_closed(timeout=10, answer_close=True)
    assert client.close_code == 4008, (client.close_code, client.close_reason)
    client.close()
