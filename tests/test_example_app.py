"""The demo app: it starts with one command and its channels carry live, filtered events."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
from sanic import Sanic
from websockets.asyncio.client import connect

from example_app.app import create_app

from .conftest import LiveServer, recv_until

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ["debug", "info", "warn", "error", "critical"]


async def test_demo_channels_are_live_and_filtered() -> None:
    """Every channel of the demo gets synthetic events; query filters apply."""
    app = create_app("demo_under_test", speed=20.0)
    server = await LiveServer(app, app.ctx.realtime).start()
    try:
        # One connection at a time: a client that is not read stops reading its socket.
        async with server.connect("/ws/logs?level=error") as logs:
            for _ in range(5):
                event = await recv_until(logs, "log_update", timeout=10)
                assert LEVELS.index(event["data"]["level"]) >= LEVELS.index("error")
        async with server.connect("/ws/requests?only_errors=true") as requests:
            for _ in range(5):
                event = await recv_until(requests, "request", timeout=10)
                assert event["data"]["success"] is False
        async with server.connect("/ws?channels=stats,alerts") as general:
            stats = await recv_until(general, "stats_update", timeout=10)
            assert set(stats["data"]) == {
                "totalLogs",
                "anomalyCount",
                "anomalyRate",
                "activeServices",
            }
            alert = await recv_until(general, "system_alert", timeout=10)
            assert alert["data"]["severity"] in ("high", "critical")
        # The ingest route publishes what a service posts.
        async with server.connect("/ws/logs?component=billing") as ws:
            await recv_until(ws, "connection_established")
            assert server.http is not None
            response = await server.http.post(
                "/logs", json={"level": "error", "component": "billing", "message": "x"}
            )
            assert response.status_code == 200
            event = await recv_until(ws, "log_update")
            assert event["id"] == response.json()["id"]
            bad = await server.http.post("/logs", json=[1])
            assert bad.status_code == 400
    finally:
        await server.stop()
        Sanic._app_registry.clear()


async def test_demo_command_starts_and_serves() -> None:
    """`python -m example_app`, the README's demo command, serves live events."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "example_app",
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    if (await http.get("/ws/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the demo did not start")
            index = (await http.get("/")).json()
            assert any("/ws/logs" in url for url in index["try"])
        async with connect(f"ws://127.0.0.1:{port}/ws/requests") as ws:
            for _ in range(3):
                message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["type"] == "request"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
