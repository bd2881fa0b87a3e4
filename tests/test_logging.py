"""The connection log (sanic.websockets.realtime, a child of Sanic's own logger): one
line per connect, disconnect and refusal, with the fields an operator needs, and never a
token or a ticket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from sanic_realtime.log import CONNECTION_LOGGER

from .conftest import make_realtime, recv_until
from .rawclient import RawClient
from .tokens import bearer, jwt_realtime, token


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()
        self.parent = logging.getLogger("sanic.websockets")
        self.saved_level = self.parent.level

    def arm(self) -> None:
        """After the app is created: Sanic configures its loggers then (dictConfig), which
        drops handlers added before."""
        self.parent.addHandler(self)
        self.parent.setLevel(logging.INFO)

    def disarm(self) -> None:
        self.parent.removeHandler(self)
        self.parent.setLevel(self.saved_level)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    def of(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "realtime_event", None) == event]

    async def wait_for(self, event: str, n: int = 1) -> list[logging.LogRecord]:
        async with asyncio.timeout(5):
            while len(self.of(event)) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.of(event)


@pytest.fixture
def records() -> Iterator[Records]:
    """The connection log's records, as Sanic's own handlers get them (the logger
    propagates to ``sanic.websockets``). Call ``records.arm()`` once the server runs."""
    handler = Records()
    yield handler
    handler.disarm()


async def test_connect_and_disconnect_lines_say_who_what_and_how_it_ended(
    serve: Any, records: Records
) -> None:
    server = await serve(jwt_realtime())
    records.arm()
    secret = token("alice", ["ops", "admin"])
    async with server.connect(f"/ws?channels=logs,stats&level=warn&token={secret}") as ws:
        hello = await recv_until(ws, "connection_established")
        client_id = hello["data"]["client_id"]
        (connect,) = await records.wait_for("connect")
        assert connect.name == CONNECTION_LOGGER
        assert connect.levelno == logging.INFO
        assert connect.client_id == client_id  # type: ignore[attr-defined]
        assert connect.user_id == "alice"  # type: ignore[attr-defined]
        assert connect.roles == ["admin", "ops"]  # type: ignore[attr-defined]
        assert connect.channels == ["logs", "stats"]  # type: ignore[attr-defined]
        assert connect.path == "/ws"  # type: ignore[attr-defined]
        assert connect.remote_addr == "127.0.0.1"  # type: ignore[attr-defined]
        line = connect.getMessage()
        assert client_id in line and "user=alice" in line and "channels=logs,stats" in line
        await asyncio.sleep(0.2)
    (disconnect,) = await records.wait_for("disconnect")
    assert disconnect.client_id == client_id  # type: ignore[attr-defined]
    assert disconnect.user_id == "alice"  # type: ignore[attr-defined]
    assert disconnect.channels == ["logs", "stats"]  # type: ignore[attr-defined]
    assert disconnect.close_code == 1000  # type: ignore[attr-defined]
    assert 0.2 <= disconnect.duration_s < 5  # type: ignore[attr-defined]
    assert "code=1000" in disconnect.getMessage()
    for record in records.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.__dict__)


async def test_server_chosen_close_codes_and_reasons_are_logged(
    serve: Any, records: Records
) -> None:
    server = await serve(jwt_realtime())
    records.arm()
    async with server.connect("/ws/logs", additional_headers=bearer(token("bob"))) as ws:
        await recv_until(ws, "connection_established")
        assert await server.realtime.disconnect(user_id="bob", reason="account deleted") == 1
        await ws.wait_closed()
    (line,) = await records.wait_for("disconnect")
    assert line.close_code == 1008  # type: ignore[attr-defined]
    assert line.close_reason == "account deleted"  # type: ignore[attr-defined]
    assert "code=1008 reason='account deleted'" in line.getMessage()


async def test_a_slow_client_and_a_vanished_client(serve: Any, records: Records) -> None:
    server = await serve(make_realtime(buffer_size=8))
    records.arm()
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    payload = "x" * 1000
    for i in range(6000):
        await server.realtime.publish("logs", "log", {"i": i, "p": payload})
        if i % 50 == 0:
            await asyncio.sleep(0)
            if not server.realtime.hub.connections:
                break
    (line,) = await records.wait_for("disconnect")
    assert line.close_code == 4008  # type: ignore[attr-defined]
    assert "slow consumer" in line.close_reason  # type: ignore[attr-defined]
    slow.close()

    # A client whose TCP connection just ends sent no close frame: 1006.
    gone = await RawClient.connect(server.port, "/ws/logs")
    await records.wait_for("connect", 2)
    gone.sock.close()
    lines = await records.wait_for("disconnect", 2)
    assert lines[1].close_code == 1006  # type: ignore[attr-defined]


async def test_refusals_name_the_reason_but_not_the_token(serve: Any, records: Records) -> None:
    server = await serve(jwt_realtime())
    records.arm()
    expired = token("alice", exp_in=-60)
    attempts = [
        (f"/ws/logs?token={expired}", 401, "token_expired"),
        ("/ws/logs?token=not-a-jwt-at-all", 401, "invalid_token"),
        (f"/ws/nope?token={token()}", 404, "unknown_channel"),
        (f"/ws/logs?level=loud&token={token()}", 400, "bad_filter_value"),
    ]
    for path, status, _ in attempts:
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect(path):
                pass
        assert refused.value.response.status_code == status
    lines = await records.wait_for("refused", len(attempts))
    for line, (_, status, code) in zip(lines, attempts, strict=True):
        assert (line.status, line.code) == (status, code)  # type: ignore[attr-defined]
        assert line.path in ("/ws/logs", "/ws/nope")  # type: ignore[attr-defined]
        message = line.getMessage()
        assert f"{status} {code}" in message
        assert "token=" not in message and expired not in str(line.__dict__)
        assert "not-a-jwt" not in message
    assert "loud" in lines[3].reason  # type: ignore[attr-defined]
