"""sanic-testing, the test package of the Sanic stack, against the blueprint: what Sanic
users reach for first. ``app.test_client`` runs a real server per request (HTTP routes
and WebSocket routes with ``mimic``); ``app.asgi_client`` serves the HTTP routes only
(docs/how-to/testing.md says why)."""

from __future__ import annotations

import json
from typing import Any

from sanic import Sanic
from sanic_testing.reusable import ReusableClient

from sanic_realtime import Realtime
from sanic_realtime.config import parse_config

from .conftest import BASE


def make_app(name: str, **overrides: Any) -> tuple[Sanic, Realtime]:
    realtime = Realtime(parse_config({**BASE, **overrides}))
    app = Sanic(name)
    app.blueprint(realtime.blueprint)
    return app, realtime


def test_http_routes_with_test_client() -> None:
    app, _ = make_app("st_http", admin={"token": "s3cret-admin-token-0123456789"})
    _, health = app.test_client.get("/ws/health")
    assert health.status == 200 and health.json["status"] == "ok"
    body = {"channel": "logs", "type": "log_update", "data": {"level": "error"}}
    _, refused = app.test_client.post("/admin/ws/broadcast", json=body)
    assert (refused.status, refused.json["error"]["code"]) == (401, "unauthorized")
    auth = {"Authorization": "Bearer s3cret-admin-token-0123456789"}
    _, published = app.test_client.post("/admin/ws/broadcast", json=body, headers=auth)
    assert published.status == 200 and published.json["success"] is True
    _, stats = app.test_client.get("/admin/ws/stats", headers=auth)
    assert stats.status == 200 and stats.json["total_clients"] == 0
    # Refusals before the upgrade are plain HTTP: status and code.
    _, unknown = app.test_client.get("/ws/nope", headers={"Upgrade": "websocket"})
    assert (unknown.status, unknown.json["error"]["code"]) == (404, "unknown_channel")
    _, plain = app.test_client.get("/ws/logs")
    assert (plain.status, plain.json["error"]["code"]) == (426, "upgrade_required")


def test_a_websocket_route_with_test_client_mimic() -> None:
    app, realtime = make_app("st_ws")
    seen: list[dict[str, Any]] = []

    async def mimic(ws: Any) -> None:
        seen.append(json.loads(await ws.recv()))
        await realtime.publish("logs", "log_update", {"level": "error", "n": 1})
        seen.append(json.loads(await ws.recv()))
        await ws.send('{"type": "ping"}')
        seen.append(json.loads(await ws.recv()))

    _, response = app.test_client.websocket("/ws/logs?level=warn", mimic=mimic)
    assert response.opened
    assert [m["type"] for m in seen] == ["connection_established", "log_update", "pong"]
    assert seen[0]["data"]["channels"] == ["logs"]
    assert seen[1]["data"] == {"level": "error", "n": 1}


def test_reusable_client_keeps_one_server_for_several_requests() -> None:
    app, _ = make_app("st_reuse")
    client = ReusableClient(app)
    with client:
        _, first = client.get("/ws/health")
        _, second = client.post(
            "/admin/ws/broadcast", json={"channel": "logs", "type": "t", "data": {}}
        )
    assert first.status == 200 and second.status == 200
    assert second.json["id"].endswith(":1")


async def test_http_routes_with_asgi_client() -> None:
    app, _ = make_app("st_asgi")
    _, health = await app.asgi_client.get("/ws/health")
    assert health.status == 200
    _, published = await app.asgi_client.post(
        "/admin/ws/broadcast", json={"channel": "logs", "type": "t", "data": {}}
    )
    assert published.status == 200 and published.json["success"] is True
