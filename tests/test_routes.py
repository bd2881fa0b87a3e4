"""Routes through a real server: refusals before the upgrade, health, admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from .conftest import make_realtime, recv_json, recv_until


async def refused(server: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Connect with a real WebSocket client and return the refusal's status and error."""
    with pytest.raises(InvalidStatus) as info:
        async with server.connect(path, **kwargs):
            pass
    response = info.value.response
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.body)["error"]


@pytest.mark.parametrize(
    ("path", "status", "code", "words"),
    [
        ("/ws/nope", 404, "unknown_channel", "unknown channel 'nope'"),
        ("/ws/logs?colour=red", 400, "unknown_filter", "'colour'"),
        ("/ws/logs?level=fatal", 400, "bad_filter_value", "'level' must be one of"),
        ("/ws/logs?level=", 400, "bad_filter_value", "(got '')"),
        ("/ws/logs?component=", 400, "bad_filter_value", "at least one value"),
        ("/ws/requests?only_errors=maybe", 400, "bad_filter_value", "only_errors"),
        ("/ws/logs?since=yesterday", 400, "bad_since", "since: not an event id"),
        ("/ws?channels=logs,nope", 404, "unknown_channel", "'nope'"),
        ("/ws?channels=logs,stats&severity=high", 400, "unknown_filter", "'severity'"),
        ("/ws?level=warn", 400, "unknown_filter", "needs ?channels="),
        ("/ws?channels=logs,stats&since=ab:1", 400, "bad_since", "since.<channel>"),
        ("/ws?channels=logs&since.stats=ab:1", 400, "bad_since", "not subscribed"),
        ("/ws?channels=logs&since=ab:1&since.logs=ab:2", 400, "bad_since", "not both"),
    ],
)
async def test_refusals_before_upgrade(
    serve: Any, path: str, status: int, code: str, words: str
) -> None:
    """Bad requests get a plain HTTP status and a JSON error naming what was wrong."""
    server = await serve(make_realtime())
    got_status, error = await refused(server, path)
    assert (got_status, error["code"]) == (status, code)
    assert words in error["message"]
    assert server.realtime.stats()["total_clients"] == 0


async def test_origin_allowlist(serve: Any) -> None:
    """Listed origins and non-browser clients (no Origin) are let in; others get 403."""
    server = await serve(make_realtime(allowed_origins=["https://ops.example.com"]))
    status, error = await refused(server, "/ws/logs", origin="https://evil.example.com")
    assert (status, error["code"]) == (403, "origin_not_allowed")
    assert "https://evil.example.com" in error["message"]
    async with server.connect("/ws/logs", origin="https://ops.example.com") as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
    async with server.connect("/ws/logs") as ws:
        assert (await recv_json(ws))["type"] == "connection_established"


async def test_max_clients_refuses_with_503(serve: Any) -> None:
    """Past max_clients, new connections get 503 before the upgrade; a freed slot is reused."""
    server = await serve(make_realtime(max_clients=2))
    async with server.connect("/ws/logs") as a, server.connect("/ws") as b:
        await recv_json(a)
        await recv_json(b)
        status, error = await refused(server, "/ws/stats")
        assert (status, error["code"]) == (503, "server_full")
        assert "at most 2" in error["message"]
    async with server.connect("/ws/stats") as c:
        assert (await recv_json(c))["type"] == "connection_established"


async def test_plain_get_on_websocket_route(serve: Any) -> None:
    """A plain HTTP GET to a WebSocket route says so (426) and holds no slot."""
    server = await serve(make_realtime(max_clients=1))
    for _ in range(3):
        response = await server.http.get("/ws/logs")
        assert response.status_code == 426
        assert response.json()["error"]["code"] == "upgrade_required"
    async with server.connect("/ws/logs") as ws:
        assert (await recv_json(ws))["type"] == "connection_established"


async def test_health(serve: Any) -> None:
    """Health says ok with the backplane's state; 503 once shutdown has begun."""
    server = await serve(make_realtime())
    response = await server.http.get("/ws/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["backplane"] == {"kind": "memory", "ok": True}
    await server.realtime.hub.shutdown()
    response = await server.http.get("/ws/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    status, error = await refused(server, "/ws/logs")
    assert (status, error["code"]) == (503, "shutting_down")


async def test_admin_broadcast_reaches_subscribers(serve: Any) -> None:
    """POST broadcast publishes; the reply has success, recipients and the event id."""
    server = await serve(make_realtime())
    errors = await server.client("logs", level="error")
    everything = await server.client("logs")
    body = {"channel": "logs", "type": "log_update", "data": {"level": "error", "m": 1}}
    response = await server.http.post("/admin/ws/broadcast", json=body)
    assert response.status_code == 200
    reply = response.json()
    assert reply["success"] is True
    assert reply["recipients"] == 2
    for client in (errors, everything):
        event = await client.next_event()
        assert (event.type, event.channel, event.id) == ("log_update", "logs", reply["id"])
        assert event.data == {"level": "error", "m": 1}
    # An info event: only the unfiltered subscriber.
    body["data"] = {"level": "info", "m": 2}
    response = await server.http.post("/admin/ws/broadcast", json=body)
    assert response.json()["recipients"] == 1
    assert (await everything.next_event()).data == {"level": "info", "m": 2}
    await errors.assert_no_event()


@pytest.mark.parametrize(
    ("body", "status", "code", "words"),
    [
        (b"{not json", 400, "invalid_json", "not JSON"),
        (b"[]", 400, "invalid_body", "Expected `object`"),
        (b'{"type": "x"}', 400, "invalid_body", "`channel`"),
        (b'{"channel": "logs", "type": 5}', 400, "invalid_body", "$.type"),
        (b'{"channel": "logs", "type": "x", "extra": 1}', 400, "invalid_body", "extra"),
        (b'{"channel": "logs", "type": "x", "target": {"team": 1}}', 400, "invalid_body", "team"),
        (b'{"channel": "logs", "type": ""}', 400, "invalid_body", "length >= 1"),
        (b'{"channel": "nope", "type": "x"}', 404, "unknown_channel", "'nope'"),
    ],
)
async def test_admin_broadcast_bad_bodies(
    serve: Any, body: bytes, status: int, code: str, words: str
) -> None:
    """Each bad body is refused with its status, code and the offending part named."""
    server = await serve(make_realtime())
    response = await server.http.post("/admin/ws/broadcast", content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]


async def test_admin_broadcast_target(serve: Any) -> None:
    """target.user_id reaches nobody when no connection has that user (auth is off)."""
    server = await serve(make_realtime())
    client = await server.client("logs")
    body = {"channel": "logs", "type": "x", "target": {"user_id": 42}}
    response = await server.http.post("/admin/ws/broadcast", json=body)
    assert response.json()["recipients"] == 0
    await client.assert_no_event()


async def test_admin_stats(serve: Any) -> None:
    """Stats has every figure of the contract, counted per channel."""
    server = await serve(make_realtime())
    async with server.connect("/ws/logs") as a, server.connect("/ws?channels=logs,stats") as b:
        await recv_json(a)
        await recv_json(b)
        await server.realtime.publish("logs", "x", {})
        await recv_json(a)
        await recv_json(b)
        response = await server.http.get("/admin/ws/stats")
        stats = response.json()
        assert set(stats) == {
            "total_clients",
            "total_users",
            "by_channel",
            "by_role",
            "channel_instances",
            "present_users",
            "messages_sent",
            "messages_dropped",
            "slow_disconnects",
            "uptime_s",
            "workers",
        }
        assert stats["workers"] == 1  # the memory backplane: this process only
        assert stats["total_clients"] == 2
        assert stats["total_users"] == 0  # no auth: no users
        assert stats["by_channel"] == {"logs": 2, "stats": 1}
        assert stats["by_role"] == {}
        assert stats["channel_instances"] == {}  # no templates
        assert stats["messages_sent"] == 4  # 2 connection_established + 2 events
        assert stats == {**server.realtime.stats(), "uptime_s": stats["uptime_s"], "workers": 1}


async def test_admin_token(serve: Any) -> None:
    """With admin.token set, admin routes need it as a Bearer token (401 otherwise)."""
    server = await serve(make_realtime(admin={"token": "s3cret"}))
    body = {"channel": "logs", "type": "x"}
    for headers, code in (
        ({}, "unauthorized"),
        ({"Authorization": "Bearer wrong"}, "invalid_token"),
        ({"Authorization": "Basic s3cret"}, "unauthorized"),
    ):
        for response in (
            await server.http.post("/admin/ws/broadcast", json=body, headers=headers),
            await server.http.get("/admin/ws/stats", headers=headers),
        ):
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert response.json()["error"]["code"] == code
    good = {"Authorization": "Bearer s3cret"}
    assert (
        await server.http.post("/admin/ws/broadcast", json=body, headers=good)
    ).status_code == 200
    assert (await server.http.get("/admin/ws/stats", headers=good)).status_code == 200


async def test_custom_paths(serve: Any) -> None:
    """url_prefix and admin paths come from the config."""
    server = await serve(
        make_realtime(
            url_prefix="/live", admin={"broadcast_path": "/ops/push", "stats_path": "/ops/stats"}
        )
    )
    async with server.connect("/live/logs") as ws:
        await recv_until(ws, "connection_established")
        response = await server.http.post("/ops/push", json={"channel": "logs", "type": "t"})
        assert response.json()["recipients"] == 1
        assert (await recv_json(ws))["type"] == "t"
    assert (await server.http.get("/ops/stats")).status_code == 200
    assert (await server.http.get("/live/health")).status_code == 200
    assert (await server.http.get("/admin/ws/stats")).status_code == 404


async def test_works_in_an_app_extended_by_sanic_ext(serve: Any) -> None:
    """With sanic-ext installed, apps are auto-extended (injection, OpenAPI): the server
    starts, the routes work, and the spec lists them."""
    server = await serve(make_realtime(), auto_extend=True)
    assert hasattr(server.app, "ext")
    async with server.connect("/ws/logs?level=error") as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await server.realtime.publish("logs", "log", {"level": "error"})
        assert (await recv_json(ws))["type"] == "log"
    status, error = await refused(server, "/ws/nope")
    assert (status, error["code"]) == (404, "unknown_channel")
    spec = (await server.http.get("/docs/openapi.json")).json()
    assert {"/ws/{channel}", "/ws", "/ws/health", "/admin/ws/broadcast"} <= set(spec["paths"])


async def test_admin_broadcast_rate_limit_per_caller(serve: Any) -> None:
    """admin.rate_limit: per bearer token (else per IP); over it 429 rate_limited with
    Retry-After, counted in metrics; other callers are not affected."""
    from .test_metrics import scrape, value
    from .tokens import bearer, jwt_realtime, token

    limit = {"role": "admin", "rate_limit": {"requests": 3, "per": "60s"}}
    server = await serve(jwt_realtime(admin=limit, metrics={"enabled": True}))
    body = {"channel": "logs", "type": "t", "data": {}}
    alice, bob = bearer(token("alice", ["admin"])), bearer(token("bob", ["admin"]))
    for _ in range(3):
        assert (
            await server.http.post("/admin/ws/broadcast", json=body, headers=alice)
        ).status_code == 200
    over = await server.http.post("/admin/ws/broadcast", json=body, headers=alice)
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limited"
    assert "at most 3 per 60s" in over.json()["error"]["message"]
    assert 1 <= int(over.headers["Retry-After"]) <= 20  # one token back every 20 s
    # Another caller has a bucket of its own.
    assert (
        await server.http.post("/admin/ws/broadcast", json=body, headers=bob)
    ).status_code == 200
    samples = await scrape(server)
    assert value(samples, "sanic_realtime_admin_rate_limited_total") == 1
    # A bad token is refused (401) before it is counted: it cannot use up a bucket.
    bad = await server.http.post("/admin/ws/broadcast", json=body, headers=bearer("nope"))
    assert bad.status_code == 401


def test_admin_rate_limit_config() -> None:
    from sanic_realtime import ConfigError
    from sanic_realtime.config import parse_config

    config = parse_config({"admin": {"rate_limit": {"requests": 100, "per": "1s"}}})
    assert config.admin.rate_limit is not None and config.admin.rate_limit.per == 1.0
    assert parse_config({}).admin.rate_limit is None
    with pytest.raises(ConfigError) as info:
        parse_config({"admin": {"rate_limit": {"per": "0s"}}})
    assert info.value.path == "realtime.admin.rate_limit.per"
