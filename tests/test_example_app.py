"""The demo (example_app): its four scenarios push live, filtered, targeted events, its
HTTP routes refuse bad input clearly, and the README's command starts it (one process,
or several workers on Redis). The dashboard itself is tested in test_demo_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sanic import Sanic
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from example_app.app import create_app

from .conftest import LiveServer, no_message, recv_json, recv_until
from .processes import ROOT
from .redis_support import delete_prefix, free_port, new_prefix, redis_url

LEVELS = ["debug", "info", "warn", "error", "critical"]


@pytest.fixture
async def demo() -> AsyncIterator[LiveServer]:
    """The demo app, 20 times faster than real time, on a free port."""
    app = create_app("demo_under_test", speed=20.0, seed=7)
    server = await LiveServer(app, app.ctx.realtime).start()
    try:
        yield server
    finally:
        await server.stop()
        Sanic._app_registry.clear()


async def login(server: LiveServer, username: str, password: str | None = None) -> str:
    assert server.http is not None
    response = await server.http.post(
        "/api/login", json={"username": username, "password": password or username}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def until_type(ws: Any, type: str, timeout: float = 10) -> dict[str, Any]:
    return await recv_until(ws, type, timeout=timeout)


# --------------------------------------------------------------------------- scenarios


async def test_log_analysis_streams_logs_anomalies_stats_and_alerts(demo: LiveServer) -> None:
    async with demo.connect("/ws/logs?level=error&component=db,api") as logs:
        for _ in range(3):
            event = await until_type(logs, "log_update")
            data = event["data"]
            assert LEVELS.index(data["level"]) >= LEVELS.index("error")
            assert data["component"] in ("db", "api")
            assert {"id", "timestamp", "level", "message", "source", "metadata"} <= set(data)
    async with demo.connect("/ws/anomalies") as anomalies:
        anomaly = (await until_type(anomalies, "new_anomaly", timeout=30))["data"]
        assert 0 < anomaly["anomalyScore"] <= 1
        assert anomaly["rootCauses"] and anomaly["recommendations"] and anomaly["logIds"]
    async with demo.connect("/ws/log_stats") as stats:
        first = await recv_until(stats, "initial_state")
        later = (await until_type(stats, "stats_update"))["data"]
        assert set(first["data"]) >= {"totalLogs", "anomalyCount", "anomalyRate", "activeServices"}
        assert later["totalLogs"] >= first["data"]["totalLogs"] > 0
    async with demo.connect("/ws/alerts?types=system_alert") as alerts:
        alert = (await until_type(alerts, "system_alert", timeout=30))["data"]
        assert alert["severity"] in ("high", "critical") and alert["alertType"] == "anomaly"
    # The ingest route publishes what a service posts, and refuses what is not a log.
    assert demo.http is not None
    async with demo.connect("/ws/logs?component=billing") as ws:
        await recv_until(ws, "connection_established")
        response = await demo.http.post(
            "/logs", json={"level": "error", "component": "billing", "message": "x"}
        )
        assert response.status_code == 200
        assert (await until_type(ws, "log_update"))["id"] == response.json()["id"]
    for body, code in [([1], "invalid_body"), ({"level": "loud"}, "invalid_level")]:
        bad = await demo.http.post("/logs", json=body)
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, code)


async def test_gateway_providers_requests_and_windowed_throttled_stats(demo: LiveServer) -> None:
    async with demo.connect("/ws/providers") as providers:
        snapshot = (await recv_until(providers, "initial_state"))["data"]["providers"]
        assert {p["provider_id"] for p in snapshot} == {"openai", "anthropic", "mistral", "local"}
        status = (await until_type(providers, "provider_status"))["data"]
        assert status["status"] in ("healthy", "degraded", "down")
        assert {"name", "available", "latency_ms", "success_rate"} <= set(status)
    async with demo.connect("/ws/requests?only_errors=true&provider_id=openai,local") as reqs:
        for _ in range(3):
            data = (await until_type(reqs, "request", timeout=20))["data"]
            assert data["success"] is False and data["provider_id"] in ("openai", "local")
            assert data["status_code"] >= 400
    # One window, at most one update per second (the demo publishes one every 50 ms).
    async with demo.connect("/ws/stats?window=5m&interval=1s") as stats:
        initial = await recv_until(stats, "initial_state")
        assert initial["data"]["window"] == "5m"
        loop = asyncio.get_running_loop()
        started = loop.time()
        updates = [await until_type(stats, "stats_update") for _ in range(3)]
        elapsed = loop.time() - started
        assert {u["data"]["window"] for u in updates} == {"5m"}
        assert elapsed >= 1.8, f"3 updates in {elapsed:.2f}s with interval=1s"
    with pytest.raises(InvalidStatus) as refused:
        async with demo.connect("/ws/stats?interval=10ms"):
            pass
    assert refused.value.response.status_code == 400
    assert b"interval" in refused.value.response.body


async def test_monitoring_real_figures_tasks_and_alerts(demo: LiveServer) -> None:
    assert demo.http is not None
    async with demo.connect("/ws?channels=system,tasks") as ws:
        first = await recv_json(ws)
        assert first["type"] == "connection_established"
        initial = {}
        for _ in range(2):
            message = await recv_until(ws, "initial_state")
            initial[message["channel"]] = message["data"]
        system = initial["system"]
        assert {"system_status", "metrics_summary", "active_tasks", "alert_stats"} <= set(system)
        status = (await until_type(ws, "system_status"))["data"]
        assert 0 <= status["cpu_usage"] <= 100 and 0 < status["memory_percent"] < 100
        assert status["memory_usage"] > 0 and status["network_io"]["bytes_in"] >= 0
        response = await demo.http.post("/api/tasks", json={"name": "test task", "total": 30})
        assert response.status_code == 201
        task_id = response.json()["task"]["id"]
        seen = []
        while True:
            task = (await until_type(ws, "task_update"))["data"]
            if task["id"] != task_id:
                continue
            seen.append((task["status"], task["progress"]))
            if task["status"] in ("completed", "failed"):
                break
        progress = [p for _, p in seen]
        assert progress == sorted(progress) and len(seen) >= 3, seen
        assert seen[-1] in (("completed", 100),) or seen[-1][0] == "failed"
    bad = await demo.http.post("/api/tasks", json={"total": "many"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_body")
    # An alert rule fires and resolves: the gateway's error rate, driven here.
    monitoring = demo.app.ctx.monitoring
    async with demo.connect("/ws/alerts?types=alert&severity=high") as alerts:
        await recv_until(alerts, "connection_established")
        figures = {**monitoring.read(), "error_rate": 99.0}
        for rule in monitoring.rules:
            rule.firing_since = None

        async def gateway_alert() -> dict[str, Any]:
            # The machine's real figures may fire other rules too (cpu-high on a busy CI).
            while True:
                data: dict[str, Any] = (await until_type(alerts, "alert"))["data"]
                if data["rule"] == "gateway-errors":
                    return data

        await monitoring.evaluate(figures)
        alert = await gateway_alert()
        assert (alert["status"], alert["value"]) == ("firing", 99)
        assert alert["threshold"] == 15.0 and alert["severity"] == "high"
        await monitoring.evaluate({**figures, "error_rate": 1.0})
        resolved = await gateway_alert()
        assert resolved["status"] == "resolved"


# --------------------------------------------------------------------------- users


async def test_user_events_reach_exactly_their_audience(demo: LiveServer) -> None:
    http = demo.http
    assert http is not None
    admin, alice, bob = [await login(demo, name) for name in ("admin", "alice", "bob")]
    # Anonymous viewers may not see the users channel; signed-in users may.
    with pytest.raises(InvalidStatus) as refused:
        async with demo.connect("/ws/users"):
            pass
    assert refused.value.response.status_code == 403
    sockets = {}
    for name, tok in (("admin", admin), ("alice", alice), ("bob", bob)):
        ws = await demo.connect("/ws/users", subprotocols=["bearer", tok]).__aenter__()
        welcome = await recv_json(ws)
        assert welcome["data"]["roles"] == (["admin"] if name == "admin" else ["user"])
        sockets[name] = ws
    try:
        # Registering: admins are told.
        response = await http.post(
            "/api/register", json={"username": "carol", "password": "pw-carol", "name": "Carol"}
        )
        assert response.status_code == 201
        carol = response.json()["user"]
        created = await recv_json(sockets["admin"])
        assert (created["type"], created["data"]["username"]) == ("user.created", "carol")
        # A profile change: the user gets both events, admins get user.updated.
        response = await http.patch("/api/me", json={"name": "Alice L."}, headers=bearer(alice))
        assert response.status_code == 200
        got = [(await recv_json(sockets["alice"]))["type"] for _ in range(2)]
        assert got == ["profile.updated", "user.updated"]
        updated = await recv_json(sockets["admin"])
        assert updated["type"] == "user.updated" and updated["data"]["changes"] == ["name"]
        # A password change: only the user.
        response = await http.post(
            "/api/me/password",
            json={"old_password": "alice", "new_password": "alice2"},
            headers=bearer(alice),
        )
        assert response.status_code == 204
        assert (await recv_json(sockets["alice"]))["type"] == "password.changed"
        # A role change: the user and admins.
        alice_id = updated["data"]["user_id"]
        response = await http.patch(
            f"/api/users/{alice_id}/role", json={"role": "admin"}, headers=bearer(admin)
        )
        assert response.status_code == 200
        for name in ("alice", "admin"):
            changed = await recv_json(sockets[name])
            assert changed["type"] == "user.role.changed"
            assert (changed["data"]["old_role"], changed["data"]["new_role"]) == ("user", "admin")
        # An admin's edit: user.updated to the user and admins, no profile.updated.
        response = await http.patch(
            f"/api/users/{alice_id}", json={"email": "a@example.com"}, headers=bearer(admin)
        )
        assert response.status_code == 200 and response.json()["user"]["email"] == "a@example.com"
        for name in ("alice", "admin"):
            edited = await recv_json(sockets[name])
            assert (edited["type"], edited["data"]["changes"]) == ("user.updated", ["email"])
        await no_message(sockets["alice"], 0.2)
        # Bob saw none of it.
        await no_message(sockets["bob"], 0.3)
        # Deleting a user: admins are told; the user's connections are closed (1008).
        bob_id = (await http.get("/api/me", headers=bearer(bob))).json()["user"]["id"]
        response = await http.delete(f"/api/users/{bob_id}", headers=bearer(admin))
        assert response.status_code == 204
        deleted = await recv_json(sockets["admin"])
        assert (deleted["type"], deleted["data"]["username"]) == ("user.deleted", "bob")
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(sockets["bob"])
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert (await http.get("/api/me", headers=bearer(bob))).status_code == 401
        assert carol["role"] == "user"
    finally:
        for ws in sockets.values():
            await ws.close()


async def publish(
    ws: Any, room: str, event: str, data: Any, ref: str, seen: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Send a client message; its reply (``published`` or ``error``), with its ref. What
    arrives before the reply is appended to ``seen``."""
    await ws.send(
        json.dumps({"type": "publish", "channel": room, "event": event, "data": data, "ref": ref})
    )
    async with asyncio.timeout(5):
        while True:
            reply = await recv_json(ws)
            if reply.get("ref") == ref:
                return reply
            if seen is not None:
                seen.append(reply)


async def test_chat_rooms_presence_typing_and_chat(demo: LiveServer) -> None:
    """rooms.<room>: signed-in users only; the initial state names the users and brings
    the room's recent lines; presence lists both users; typing (no id) and chat (an id,
    the sender's username stamped by the handler, the text cleaned) reach the room, the
    sender too (echo); an empty line and a bad body are refused with their codes, the
    connection open; leaving is announced after leave_delay."""
    http = demo.http
    assert http is not None
    alice, bob = await login(demo, "alice"), await login(demo, "bob")
    alice_id = (await http.get("/api/me", headers=bearer(alice))).json()["user"]["id"]
    config = (await http.get("/api/config")).json()
    assert config["rooms"][0] == "ops" and "rooms.{room}" in config["templates"]
    with pytest.raises(InvalidStatus) as refused:
        async with demo.connect("/ws/rooms.ops"):
            pass
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:
        async with demo.connect("/ws/rooms.Not_A_Room", subprotocols=["bearer", alice]):
            pass
    assert refused.value.response.status_code == 400

    room = "rooms.ops"
    a = await demo.connect(f"/ws/{room}", subprotocols=["bearer", alice]).__aenter__()
    try:
        initial = await recv_until(a, "initial_state")
        assert initial["data"]["room"] == "ops" and initial["data"]["recent"] == []
        assert initial["data"]["users"][str(alice_id)] == "alice"
        assert (await recv_until(a, "presence_join"))["data"]["user_id"] == str(alice_id)
        async with demo.connect(f"/ws/{room}", subprotocols=["bearer", bob]) as b:
            await recv_until(b, "initial_state")
            joined = await recv_until(a, "presence_join")
            bob_id = joined["data"]["user_id"]
            assert joined["data"]["role"] == "user" and bob_id != str(alice_id)
            await b.send(json.dumps({"type": "presence", "channel": room, "ref": "q1"}))
            here = await recv_until(b, "presence")
            assert here["ref"] == "q1" and here["data"]["count"] == 2
            assert {u["user_id"] for u in here["data"]["users"]} == {str(alice_id), bob_id}

            reply = await publish(b, room, "typing", {}, "t1")
            assert reply["type"] == "published" and reply["data"]["id"] is None
            typing = await recv_until(a, "typing")
            assert typing["id"] is None and typing["data"] == {"username": "bob"}
            assert typing["from"]["user_id"] == bob_id

            echoed: list[dict[str, Any]] = []
            text = "  db is \x07back\t up  "
            reply = await publish(b, room, "chat", {"text": text}, "c1", echoed)
            assert reply["type"] == "published" and reply["data"]["id"], reply
            line = await recv_until(a, "chat")
            assert line["id"] == reply["data"]["id"] and line["from"]["user_id"] == bob_id
            assert line["data"] == {"text": "db is back  up", "username": "bob"}
            assert [m["id"] for m in echoed if m["type"] == "chat"] == [line["id"]]  # echo: true

            for data, code in (
                ({"text": " \t "}, "empty"),
                ({"text": "x" * 501}, "invalid_message"),
                ({"words": "hi"}, "invalid_message"),
            ):
                error = await publish(b, room, "chat", data, "bad")
                assert (error["type"], error["data"]["code"]) == ("error", code), error
            error = await publish(b, room, "shout", {}, "bad2")
            assert error["data"]["code"] == "unknown_type"
            # At most 5 messages a second per connection: past it, rate_limited, until the
            # bucket refills.
            for attempt in range(40):
                reply = await publish(b, room, "chat", {"text": "still here"}, f"c2-{attempt}")
                if reply["type"] == "published":
                    break
                assert reply["data"]["code"] == "rate_limited", reply
                await asyncio.sleep(0.1)
            assert reply["data"]["id"], reply
            burst = [f"r{i}" for i in range(10)]
            for ref in burst:
                message = {"type": "publish", "channel": room, "event": "typing", "data": {}}
                await b.send(json.dumps({**message, "ref": ref}))
            replies = {}
            async with asyncio.timeout(5):
                while len(replies) < len(burst):
                    message = await recv_json(b)
                    if message.get("ref") in burst:
                        replies[message["ref"]] = message
            codes = [r["data"]["code"] for r in replies.values() if r["type"] == "error"]
            assert codes and set(codes) == {"rate_limited"}, replies

        # A newcomer gets the recent lines in the initial state.
        async with demo.connect(f"/ws/{room}", subprotocols=["bearer", bob]) as again:
            recent = (await recv_until(again, "initial_state"))["data"]["recent"]
            assert [(r["username"], r["text"]) for r in recent] == [
                ("bob", "db is back  up"),
                ("bob", "still here"),
            ]
        # Bob gone for good: one leave, after leave_delay (3 s).
        leave = await recv_until(a, "presence_leave", timeout=10)
        assert leave["data"]["user_id"] == bob_id
    finally:
        await a.close()


async def test_user_routes_refuse_bad_input_clearly(demo: LiveServer) -> None:
    http = demo.http
    assert http is not None
    alice = await login(demo, "alice")
    cases = [
        (
            http.post("/api/login", json={"username": "alice", "password": "no"}),
            401,
            "bad_credentials",
        ),
        (http.post("/api/login", content=b"[1"), 400, "invalid_body"),
        (
            http.post("/api/register", json={"username": "alice", "password": "pw12"}),
            409,
            "username_taken",
        ),
        (
            http.post("/api/register", json={"username": "A B", "password": "pw12"}),
            400,
            "invalid_username",
        ),
        (http.post("/api/register", json={"username": "dave"}), 400, "invalid_body"),
        (http.get("/api/me"), 401, "unauthorized"),
        (http.get("/api/me", headers=bearer("garbage")), 401, "invalid_token"),
        (http.get("/api/users", headers=bearer(alice)), 403, "forbidden"),
        (http.patch("/api/me", json={}, headers=bearer(alice)), 400, "invalid_body"),
        (
            http.delete("/api/users/999", headers=bearer(await login(demo, "admin"))),
            404,
            "not_found",
        ),
    ]
    for call, status, code in cases:
        response = await call
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        assert response.json()["error"]["message"]


async def test_admin_broadcast_and_stats_need_an_admin_token(demo: LiveServer) -> None:
    http = demo.http
    assert http is not None
    admin, alice = await login(demo, "admin"), await login(demo, "alice")
    body = {"channel": "announcements", "type": "announcement", "data": {"message": "hi"}}
    assert (await http.post("/admin/ws/broadcast", json=body)).status_code == 401
    assert (
        await http.post("/admin/ws/broadcast", json=body, headers=bearer(alice))
    ).status_code == 403
    async with demo.connect("/ws/announcements") as viewer:
        await recv_until(viewer, "connection_established")
        response = await http.post("/admin/ws/broadcast", json=body, headers=bearer(admin))
        assert response.status_code == 200 and response.json()["recipients"] == 1
        event = await recv_json(viewer)
        assert (event["type"], event["data"]) == ("announcement", {"message": "hi"})
        stats = await http.get("/admin/ws/stats", headers=bearer(admin))
        assert stats.status_code == 200 and stats.json()["by_channel"]["announcements"] == 1
    assert (await http.get("/admin/ws/stats", headers=bearer(alice))).status_code == 403


async def test_the_page_and_its_files_are_served(demo: LiveServer) -> None:
    http = demo.http
    assert http is not None
    page = await http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/ws/client.js" in page.text or "/static/app.js" in page.text
    config = (await http.get("/api/config")).json()
    assert config["ws"] == "/ws" and "logs" in config["channels"] and config["windows"]
    assert (await http.get("/ws/client.js")).status_code == 200
    metrics = await http.get("/metrics")  # realtime.yaml turns the metrics on
    assert metrics.status_code == 200
    assert 'sanic_realtime_subscribers{channel="logs"}' in metrics.text


# --------------------------------------------------------------------------- the command


@contextlib.asynccontextmanager
async def demo_command(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[int]:
    """``python -m example_app --port P ...`` in its own process group; yields P."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "example_app",
        "--port",
        str(port),
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(200):
                if process.returncode is not None:
                    assert process.stderr is not None
                    raise AssertionError((await process.stderr.read()).decode())
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/ws/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the demo did not start")
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def test_demo_command_starts_and_serves() -> None:
    """`python -m example_app`, the README's demo command: the page and live events."""
    async with demo_command("--speed", "5") as port, httpx.AsyncClient() as http:
        page = await http.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        async with connect(f"ws://127.0.0.1:{port}/ws?channels=logs,requests") as ws:
            types = set()
            while not {"log_update", "request"} <= types:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                types.add(message["type"])


async def test_demo_command_refuses_workers_without_redis() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "example_app",
        "--workers",
        "2",
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "--workers > 1 needs --redis URL" in err.decode()


async def test_demo_scaled_out_on_redis() -> None:
    """``--redis URL --workers 2``: one worker simulates, every worker serves; users,
    tokens and events are shared."""
    url, prefix = redis_url(), new_prefix()
    env = {"REALTIME_REDIS_PREFIX": prefix, "DEMO_JWT_SECRET": "s" * 48}
    try:
        async with (
            demo_command("--redis", url, "--workers", "2", "--speed", "5", env=env) as port,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        ):
            # Registered on one worker, logged in on any (the kernel spreads connections).
            response = await http.post(
                "/api/register", json={"username": "scaled", "password": "pw-scaled"}
            )
            assert response.status_code == 201
            for _ in range(6):
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as fresh:
                    again = await fresh.post(
                        "/api/login", json={"username": "scaled", "password": "pw-scaled"}
                    )
                    assert again.status_code == 200
            admin = (
                await http.post("/api/login", json={"username": "admin", "password": "admin"})
            ).json()["token"]
            for _ in range(50):
                stats = (await http.get("/admin/ws/stats", headers=bearer(admin))).json()
                if stats.get("workers") == 2:
                    break
                await asyncio.sleep(0.2)
            assert stats["workers"] == 2, stats
            ids = []
            async with connect(f"ws://127.0.0.1:{port}/ws/logs") as ws:
                while len(ids) < 10:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if message["type"] == "log_update":
                        ids.append(int(message["id"].split(":")[1]))
            assert ids == sorted(set(ids))
            # Whichever worker answers, the metrics cover both (the simulator publishes
            # on worker 0 only). Each worker writes its figures every second.
            await asyncio.sleep(1.5)
            for _ in range(4):
                text = (await http.get("/metrics")).text
                assert "process_cpu_seconds_total" not in text  # multiprocess mode
                published = [
                    line
                    for line in text.splitlines()
                    if line.startswith('sanic_realtime_messages_published_total{channel="logs"}')
                ]
                assert published and float(published[0].split()[-1]) >= 10
    finally:
        await delete_prefix(url, prefix)
