"""The app's hooks through a real server: ``authorize`` (allow, deny, raise, time out; on
the channel route, ``?channels=``, ``subscribe`` and ``refresh``), ``on_connect``, and the
lifecycle hooks, which never delay delivery and stay bounded."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from sanic_realtime import ConnectionView, Forbidden, Realtime
from sanic_realtime.config import parse_config
from sanic_realtime.hooks import HookRunner

from .conftest import no_message, recv_json, recv_until
from .test_routes import refused
from .tokens import SECRET, bearer, token

CHANNELS: dict[str, Any] = {
    "logs": {},
    "users.{user_id}": {"history": {"size": 10, "ttl": "1m"}},
    "orders.{order_id}": {"params": {"order_id": {"pattern": "[0-9]+"}}},
}


def realtime_with(**overrides: Any) -> Realtime:
    return Realtime(parse_config({"channels": CHANNELS, **overrides}))


def jwt_realtime_with(**overrides: Any) -> Realtime:
    return realtime_with(auth={"mode": "jwt", "jwt_secret": SECRET}, **overrides)


def inbox_rule(realtime: Realtime, calls: list[Any]) -> None:
    """users.{user_id}: only that user, or an admin."""

    @realtime.authorize("users.{user_id}")
    async def own_inbox(request: Any, identity: Any, params: dict[str, str]) -> bool:
        calls.append((request.path, identity.user_id if identity else None, params))
        return identity is not None and (
            identity.user_id == params["user_id"] or "admin" in identity.roles
        )


# ------------------------------------------------------------------ authorize


async def test_authorize_allows_and_denies_before_the_upgrade(serve: Any) -> None:
    realtime = jwt_realtime_with()
    calls: list[Any] = []
    inbox_rule(realtime, calls)
    server = await serve(realtime)
    alice = bearer(token("alice", "user"))
    async with server.connect("/ws/users.alice", additional_headers=alice) as ws:
        assert (await recv_json(ws))["data"]["channels"] == ["users.alice"]
    assert calls == [("/ws/users.alice", "alice", {"user_id": "alice"})]
    for path in ("/ws/users.bob", "/ws?channels=logs,users.bob"):
        status, error = await refused(server, path, additional_headers=alice)
        assert (status, error["code"]) == (403, "forbidden"), path
        assert "users.bob" in error["message"]
    admin = bearer(token("carol", "admin"))
    async with server.connect("/ws?channels=users.bob,logs", additional_headers=admin) as ws:
        assert (await recv_json(ws))["data"]["channels"] == ["users.bob", "logs"]
    # Static channels have no hook of their own here: not asked.
    assert all(params for _, _, params in calls)
    assert realtime.stats()["total_clients"] == 0


async def test_authorize_in_band_refuses_the_whole_message(serve: Any) -> None:
    realtime = jwt_realtime_with()
    inbox_rule(realtime, [])
    server = await serve(realtime)
    async with server.connect("/ws", additional_headers=bearer(token("alice", "user"))) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "channels": ["logs", "users.bob"]}))
        error = await recv_until(ws, "error")
        assert error["data"]["code"] == "forbidden" and "users.bob" in error["data"]["message"]
        await realtime.publish("logs", "log_update", {})
        await no_message(ws)  # logs was not subscribed either
        await ws.send(json.dumps({"type": "subscribe", "channels": ["logs", "users.alice"]}))
        assert (await recv_until(ws, "subscribed"))["data"]["channels"] == [
            "logs",
            "users.alice",
        ]


async def test_a_hook_for_every_channel_and_one_for_a_template_both_decide(serve: Any) -> None:
    realtime = realtime_with()  # auth off: identity is None
    seen: list[Any] = []

    @realtime.authorize()
    def not_on_sundays(request: Any, identity: Any, params: dict[str, str]) -> bool:
        seen.append(("every", identity, params))
        return request.headers.get("x-day") != "sunday"

    @realtime.authorize("orders.{order_id}")
    async def small_orders(request: Any, identity: Any, params: dict[str, str]) -> bool:
        seen.append(("orders", identity, params))
        return int(params["order_id"]) < 100

    server = await serve(realtime)
    async with server.connect("/ws?channels=logs,orders.7") as ws:
        assert (await recv_json(ws))["data"]["channels"] == ["logs", "orders.7"]
    assert seen == [
        ("every", None, {}),
        ("every", None, {"order_id": "7"}),
        ("orders", None, {"order_id": "7"}),
    ]
    for path, headers in (("/ws/orders.700", {}), ("/ws/logs", {"X-Day": "sunday"})):
        status, error = await refused(server, path, additional_headers=headers)
        assert (status, error["code"]) == (403, "forbidden"), path


async def test_a_hook_that_raises_or_hangs_is_authorize_failed(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    realtime = realtime_with(authorize_timeout="200ms")

    @realtime.authorize("orders.{order_id}")
    async def flaky(request: Any, identity: Any, params: dict[str, str]) -> bool:
        if params["order_id"] == "1":
            raise RuntimeError("the orders database is down")
        if params["order_id"] == "2":
            await asyncio.sleep(30)
        return True

    server = await serve(realtime)
    with caplog.at_level(logging.ERROR):
        for path in ("/ws/orders.1", "/ws/orders.2"):
            status, error = await refused(server, path)
            assert (status, error["code"]) == (500, "authorize_failed"), path
    assert "the orders database is down" in caplog.text  # the traceback is logged
    assert "took longer than 0.2s" in caplog.text
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        for order in ("1", "2"):
            await ws.send(json.dumps({"type": "subscribe", "channels": [f"orders.{order}"]}))
            assert (await recv_until(ws, "error"))["data"]["code"] == "authorize_failed"
        await ws.send(json.dumps({"type": "subscribe", "channels": ["orders.3"]}))
        assert (await recv_until(ws, "subscribed"))["data"]["channels"] == ["orders.3"]


async def test_refresh_rechecks_and_unsubscribes_what_is_no_longer_allowed(serve: Any) -> None:
    realtime = jwt_realtime_with()
    inbox_rule(realtime, [])
    server = await serve(realtime)
    admin = bearer(token("carol", "admin"))
    async with server.connect("/ws?channels=users.bob,users.carol", additional_headers=admin) as ws:
        await recv_json(ws)
        # The same user, no longer an admin: bob's inbox goes, her own stays.
        await ws.send(json.dumps({"type": "refresh", "token": token("carol", "user")}))
        assert (await recv_until(ws, "refreshed"))["data"]["roles"] == ["user"]
        gone = await recv_until(ws, "unsubscribed")
        assert gone["data"] == {"channels": ["users.bob"], "reason": "forbidden"}
        await realtime.publish("users.bob", "note", {"n": 1})
        sent = await realtime.publish("users.carol", "note", {"n": 2})
        assert (await recv_json(ws))["id"] == sent.id


# ------------------------------------------------------------------ on_connect


async def test_on_connect_may_refuse(serve: Any) -> None:
    realtime = jwt_realtime_with()
    seen: list[Any] = []

    @realtime.on_connect
    async def gate(request: Any, identity: Any) -> bool:
        seen.append(identity.user_id)
        if identity.user_id == "mallory":
            raise Forbidden("mallory is banned")
        if identity.user_id == "boom":
            raise ValueError("oops")
        return identity.user_id != "eve"

    server = await serve(realtime)
    for user, status, code, words in [
        ("eve", 403, "forbidden", "not allowed"),
        ("mallory", 403, "forbidden", "mallory is banned"),
        ("boom", 500, "authorize_failed", "connection check failed"),
    ]:
        got, error = await refused(server, "/ws/logs", additional_headers=bearer(token(user)))
        assert (got, error["code"]) == (status, code), user
        assert words in error["message"], user
    async with server.connect("/ws/logs", additional_headers=bearer(token("alice"))) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
    assert seen == ["eve", "mallory", "boom", "alice"]
    assert realtime.stats()["total_clients"] == 0  # refused ones gave their slots back


# ------------------------------------------------------------------ lifecycle hooks


async def test_lifecycle_hooks_see_the_connection_and_never_delay_delivery(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    realtime = realtime_with()
    calls: list[tuple[Any, ...]] = []
    release = asyncio.Event()

    @realtime.on_subscribe
    async def slow(conn: ConnectionView, channel: str, params: dict[str, str]) -> None:
        calls.append(("subscribe", conn.client_id, channel, params, conn.channels))
        await release.wait()  # a slow hook: delivery must not wait for it

    @realtime.on_subscribe
    def broken(conn: ConnectionView, channel: str, params: dict[str, str]) -> None:
        raise RuntimeError("hook bug")

    @realtime.on_unsubscribe
    async def left(conn: ConnectionView, channel: str, reason: str) -> None:
        calls.append(("unsubscribe", channel, reason))

    @realtime.on_disconnect
    async def gone(conn: ConnectionView, code: int, reason: str) -> None:
        calls.append(("disconnect", conn.client_id, conn.remote_addr, code, reason))

    server = await serve(realtime)
    with caplog.at_level(logging.ERROR):
        async with server.connect("/ws/orders.5") as ws:
            client_id = (await recv_json(ws))["data"]["client_id"]
            sent = await realtime.publish("orders.5", "status", {"s": 1})
            assert (await recv_json(ws))["id"] == sent.id  # while `slow` still waits
            assert not release.is_set()
            await ws.send(json.dumps({"type": "subscribe", "channels": ["logs"]}))
            await recv_until(ws, "subscribed")
            await ws.send(json.dumps({"type": "unsubscribe", "channels": ["logs"]}))
            await recv_until(ws, "unsubscribed")
        release.set()
        async with asyncio.timeout(5):
            while not any(c[0] == "disconnect" for c in calls):  # noqa: ASYNC110 - a list
                await asyncio.sleep(0.01)
    assert calls[0] == ("subscribe", client_id, "orders.5", {"order_id": "5"}, ("orders.5",))
    assert ("subscribe", client_id, "logs", {}, ("orders.5", "logs")) in calls
    assert ("unsubscribe", "logs", "client") in calls
    assert ("unsubscribe", "orders.5", "disconnect") in calls
    [disconnect] = [c for c in calls if c[0] == "disconnect"]
    assert disconnect[:3] == ("disconnect", client_id, "127.0.0.1")
    assert disconnect[3] == 1000
    assert "hook bug" in caplog.text


async def test_the_runner_is_bounded_whatever_is_asked_of_it() -> None:
    """10,000 connections closing at once: the calls queue (bounded), a few tasks run
    them, and past the bound calls are dropped and counted."""
    runner = HookRunner()
    gate = asyncio.Event()
    ran = 0

    async def hook(n: int) -> None:
        nonlocal ran
        await gate.wait()
        ran += 1

    for n in range(HookRunner.QUEUE + 500):
        runner.call([hook], n)
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "realtime-hooks"]
    assert len(tasks) == HookRunner.WORKERS
    assert runner.dropped == 500
    assert runner.waiting == HookRunner.QUEUE  # no task has run yet
    gate.set()
    async with asyncio.timeout(10):
        while ran < HookRunner.QUEUE:  # noqa: ASYNC110 - a counter
            await asyncio.sleep(0.01)
    await runner.drain(1.0)
    assert ran == HookRunner.QUEUE and runner.waiting == 0


async def test_refused_subscriptions_take_no_room_among_the_instances(serve: Any) -> None:
    """A client asking for instances it may not see cannot fill max_channels."""
    realtime = jwt_realtime_with(max_channels=3)
    inbox_rule(realtime, [])
    server = await serve(realtime)
    alice = bearer(token("alice", "user"))
    for i in range(10):
        status, _ = await refused(server, f"/ws/users.u{i}", additional_headers=alice)
        assert status == 403
    async with server.connect("/ws", additional_headers=alice) as ws:
        await recv_json(ws)
        for i in range(10):
            await ws.send(json.dumps({"type": "subscribe", "channels": [f"users.v{i}"]}))
            assert (await recv_until(ws, "error"))["data"]["code"] == "forbidden"
        assert realtime.stats()["channel_instances"] == {}
        await ws.send(json.dumps({"type": "subscribe", "channels": ["users.alice"]}))
        assert (await recv_until(ws, "subscribed"))["data"]["channels"] == ["users.alice"]
    assert realtime.stats()["channel_instances"] == {"users.{user_id}": 1}
