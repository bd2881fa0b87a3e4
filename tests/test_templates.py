"""Channel templates (``orders.{order_id}``): resolution and the config's refusals
without a server, then instances served, published, resumed and bounded through a real
server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from sanic_realtime import Realtime
from sanic_realtime.channels import Catalog, Instances
from sanic_realtime.config import ChannelConfig, parse_config
from sanic_realtime.exceptions import (
    ConfigError,
    InvalidChannel,
    TooManyChannels,
    UnknownChannel,
)

from .conftest import no_message, recv_json, recv_until
from .test_routes import refused

CHANNELS: dict[str, Any] = {
    "logs": {},
    "orders.{order_id}": {
        "params": {"order_id": {"pattern": "[0-9]{1,12}"}},
        "history": {"size": 100, "ttl": "1h"},
        "filters": {"status": {}},
        "initial": "last",
    },
    "rooms.{tenant}.{room}": {"roles": ["member"]},
}


def templates(**overrides: Any) -> Realtime:
    return Realtime(parse_config({"channels": CHANNELS, **overrides}))


# ------------------------------------------------------------------ resolution, no server


def test_a_name_resolves_to_its_one_channel() -> None:
    catalog = parse_config({"channels": CHANNELS}).catalog
    order = catalog.resolve("orders.42")
    assert (order.key, dict(order.params), order.is_instance) == (
        "orders.{order_id}",
        {"order_id": "42"},
        True,
    )
    room = catalog.resolve("rooms.acme.lobby")
    assert dict(room.params) == {"tenant": "acme", "room": "lobby"}
    assert room.spec.roles == ["member"]
    logs = catalog.resolve("logs")
    assert (logs.key, logs.is_instance) == ("logs", False)


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("orders.x", InvalidChannel, "parameter 'order_id' of 'orders.{order_id}' must match"),
        ("orders.1234567890123", InvalidChannel, "must match '[0-9]{1,12}'"),
        ("rooms.a b.c", InvalidChannel, "parameter 'tenant'"),
        ("orders.42.x", UnknownChannel, "unknown channel 'orders.42.x'"),
        ("orders", UnknownChannel, "unknown channel 'orders'"),
        ("orders.", InvalidChannel, "parameter 'order_id'"),
        ("x" * 500, InvalidChannel, "at most 200 characters"),
    ],
)
def test_names_that_match_no_channel(name: str, error: type[Exception], words: str) -> None:
    catalog = parse_config({"channels": CHANNELS}).catalog
    with pytest.raises(error) as info:
        catalog.resolve(name)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("channels", "path", "words"),
    [
        ({"a.{x}": {}, "a.{y}": {}}, "realtime.channels", "'a.{x}' and 'a.{y}' can match"),
        ({"a.{x}.b": {}, "a.c.{y}": {}}, "realtime.channels", "can match the same names"),
        ({"a.b": {}, "a.{y}": {}}, "realtime.channels", "'a.b' is also an instance of 'a.{y}'"),
        ({"a.{x}y": {}}, "realtime.channels.a.{x}y", "a parameter is a whole segment"),
        ({"{x}": {}}, "realtime.channels.{x}", "needs a literal segment"),
        ({"a.{x}.{x}": {}}, "realtime.channels.a.{x}.{x}", "parameter 'x' twice"),
        ({"a.{x}": {"params": {"z": {}}}}, "realtime.channels.a.{x}.params", "z"),
        ({"a": {"params": {"z": {}}}}, "realtime.channels.a.params", "are for templates"),
        (
            {"a.{x}": {"params": {"x": {"pattern": "("}}}},
            "realtime.channels.a.{x}.params",
            "not a regular expression",
        ),
    ],
)
def test_templates_the_config_refuses(channels: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"channels": channels})
    assert info.value.path == path
    assert words in info.value.reason


def test_patterns_that_exclude_each_other_still_do_not_share_a_shape() -> None:
    """Overlap is decided by shape, not by pattern: two templates of one shape are
    refused even when their patterns could never match the same value (documented)."""
    with pytest.raises(ConfigError):
        parse_config(
            {
                "channels": {
                    "a.{n}": {"params": {"n": {"pattern": "[0-9]+"}}},
                    "a.{s}": {"params": {"s": {"pattern": "[a-z]+"}}},
                }
            }
        )


def test_instances_are_bounded_forgotten_when_idle_and_counted() -> None:
    catalog = Catalog({"t.{id}": ChannelConfig()})
    forgotten: list[str] = []
    busy = {"t.1"}
    instances = Instances(
        3, lambda key: 10.0, in_use=lambda name: name in busy, forget=forgotten.append
    )
    for i in range(3):
        instances.use(catalog.resolve(f"t.{i}"), 100.0)
    assert instances.counts() == {"t.{id}": 3}
    with pytest.raises(TooManyChannels) as info:
        instances.use(catalog.resolve("t.9"), 105.0)  # none idle for 10 s yet
    assert info.value.code == "too_many_channels" and info.value.status == 503
    instances.use(catalog.resolve("t.2"), 105.0)  # known ones are fine
    # At 111 s, t.0 is idle (t.1 is in use, t.2 was used at 105): t.9 takes t.0's place.
    instances.use(catalog.resolve("t.9"), 111.0)
    assert forgotten == ["t.0"]
    assert "t.0" not in instances and "t.1" in instances and len(instances) == 3
    assert instances.sweep(200.0) == 2  # t.2 and t.9; t.1 stays, in use
    assert forgotten == ["t.0", "t.2", "t.9"] and instances.counts() == {"t.{id}": 1}


def test_a_full_table_is_swept_whole_at_most_once_a_second() -> None:
    """A client asking for new instances of a full server costs a full sweep at most
    once a second, not once per ask."""
    catalog = Catalog({"t.{id}": ChannelConfig()})
    asked: list[str] = []

    def in_use(name: str) -> bool:
        asked.append(name)
        return True

    limit = Instances.FULL_SWEEP * 3
    instances = Instances(limit, lambda key: 0.0, in_use=in_use)
    for i in range(limit):
        instances.use(catalog.resolve(f"t.{i}"), 1.0)
    asked.clear()
    for i in range(50):
        with pytest.raises(TooManyChannels):
            instances.use(catalog.resolve(f"t.new{i}"), 2.0)
    # one full sweep (FULL_SWEEP looked at) and ordinary ones (SWEEP each) at most
    assert len(asked) <= Instances.FULL_SWEEP + Instances.SWEEP * 50


def test_full_sweeps_go_round_the_table() -> None:
    """Idle instances behind FULL_SWEEP busy ones are found by the next full sweeps."""
    catalog = Catalog({"t.{id}": ChannelConfig()})
    n = Instances.FULL_SWEEP * 2 + 10
    busy = {f"t.{i}" for i in range(n - 5)}  # the last 5 are idle and unused
    instances = Instances(n, lambda key: 0.0, in_use=lambda name: name in busy)
    for i in range(n):
        instances.use(catalog.resolve(f"t.{i}"), 1.0)
    now = 10.0
    for _ in range(3):  # at most three seconds of refusals
        try:
            instances.use(catalog.resolve("t.new"), now)
            break
        except TooManyChannels:
            now += 1.0
    assert "t.new" in instances


# ------------------------------------------------------------------ through a real server


async def test_instances_are_served_where_channels_are(serve: Any) -> None:
    realtime = templates()
    server = await serve(realtime)
    async with (
        server.connect("/ws/orders.42?status=shipped") as route,
        server.connect("/ws?channels=orders.42,logs") as general,
        server.connect("/ws") as later,
    ):
        welcome = await recv_json(route)
        assert welcome["data"]["channels"] == ["orders.42"]
        assert (await recv_json(general))["data"]["channels"] == ["orders.42", "logs"]
        await recv_json(later)
        await later.send(json.dumps({"type": "subscribe", "channels": ["orders.7"]}))
        assert (await recv_json(later))["data"]["channels"] == ["orders.7"]

        other = await realtime.publish("orders.7", "status", {"status": "shipped"})
        one = await realtime.publish("orders.42", "status", {"status": "packed"})
        two = await realtime.publish("orders.42", "status", {"status": "shipped"})
        # Each instance has ids of its own: both start at offset 1, in epochs of their own.
        assert other.id.endswith(":1") and one.id.endswith(":1") and two.id.endswith(":2")
        assert other.id.split(":")[0] != one.id.split(":")[0]

        got = await recv_json(route)  # the filter: shipped only
        assert (got["channel"], got["id"], got["data"]) == (
            "orders.42",
            two.id,
            {"status": "shipped"},
        )
        assert [(await recv_json(general))["id"] for _ in range(2)] == [one.id, two.id]
        assert (await recv_json(later))["id"] == other.id

        stats = realtime.stats()
        assert stats["by_channel"] == {"orders.{order_id}": 3, "logs": 1}
        assert stats["channel_instances"] == {"orders.{order_id}": 2}
        response = await server.http.get("/admin/ws/stats")
        assert response.json()["channel_instances"] == {"orders.{order_id}": 2}


async def test_each_instance_has_its_own_history_resume_and_initial_state(serve: Any) -> None:
    realtime = templates()
    server = await serve(realtime)
    first = await realtime.publish("orders.1", "status", {"status": "packed"})
    for i in range(5):
        await realtime.publish("orders.2", "status", {"status": f"s{i}"})
    second = await realtime.publish("orders.1", "status", {"status": "shipped"})
    # initial: last is per instance
    async with server.connect("/ws/orders.1") as ws:
        await recv_json(ws)
        initial = await recv_until(ws, "initial_state")
        assert initial["data"] == {"status": "shipped"}
    # resume is per instance: orders.2's events do not count against orders.1
    async with server.connect(f"/ws/orders.1?since={first.id}") as ws:
        welcome = await recv_json(ws)
        assert welcome["data"]["recovered"] == {"orders.1": True}
        assert (await recv_json(ws))["id"] == second.id
    # an id of another instance is another epoch: not recovered, not replayed wrongly
    async with server.connect(f"/ws/orders.2?since={first.id}") as ws:
        assert (await recv_json(ws))["data"]["recovered"] == {"orders.2": False}


async def test_template_refusals_before_the_upgrade_and_in_band(serve: Any) -> None:
    server = await serve(templates())
    for path, status, code, words in [
        ("/ws/orders.x", 400, "invalid_channel", "parameter 'order_id'"),
        ("/ws/orders.42.x", 404, "unknown_channel", "'orders.42.x'"),
        ("/ws?channels=logs,orders.x", 400, "invalid_channel", "parameter 'order_id'"),
        ("/ws/orders.42?colour=red", 400, "unknown_filter", "'colour'"),
    ]:
        got_status, error = await refused(server, path)
        assert (got_status, error["code"]) == (status, code), path
        assert words in error["message"], path
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        for name, code in [("orders.x", "invalid_channel"), ("orders.1.2", "unknown_channel")]:
            await ws.send(json.dumps({"type": "subscribe", "channels": ["logs", name]}))
            error = await recv_until(ws, "error")
            assert error["data"]["code"] == code, name
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"  # nothing else was subscribed
    assert server.realtime.stats()["by_channel"] == {}


async def test_publish_and_broadcast_to_instances(serve: Any) -> None:
    realtime = templates()
    server = await serve(realtime)
    async with server.connect("/ws/orders.42") as ws:
        await recv_json(ws)
        body = {"channel": "orders.42", "type": "status", "data": {"status": "paid"}}
        response = await server.http.post("/admin/ws/broadcast", json=body)
        assert response.status_code == 200 and response.json()["recipients"] == 1
        assert (await recv_json(ws))["data"] == {"status": "paid"}
    for channel, status, code in [
        ("orders.x", 400, "invalid_channel"),
        ("nope.1", 404, "unknown_channel"),
    ]:
        body = {"channel": channel, "type": "status", "data": {}}
        response = await server.http.post("/admin/ws/broadcast", json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    with pytest.raises(InvalidChannel):
        await realtime.publish("orders.x", "status", {})


async def test_max_channels_refuses_new_instances_clearly(serve: Any) -> None:
    realtime = templates(max_channels=2)
    server = await serve(realtime)
    await realtime.publish("orders.1", "status", {})
    await realtime.publish("orders.2", "status", {})
    with pytest.raises(TooManyChannels) as info:
        await realtime.publish("orders.3", "status", {})
    assert "at most 2 channel instances (max_channels)" in str(info.value)
    await realtime.publish("orders.1", "status", {})  # a kept instance is fine
    await realtime.publish("logs", "log_update", {})  # static channels do not count
    body = {"channel": "orders.3", "type": "status", "data": {}}
    response = await server.http.post("/admin/ws/broadcast", json=body)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "too_many_channels")
    status, error = await refused(server, "/ws/orders.4")
    assert (status, error["code"]) == (503, "too_many_channels")
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "subscribe", "channels": ["orders.5"]}))
        assert (await recv_until(ws, "error"))["data"]["code"] == "too_many_channels"
        await ws.send(json.dumps({"type": "subscribe", "channels": ["orders.2"]}))
        assert (await recv_until(ws, "subscribed"))["data"]["channels"] == ["orders.2"]
    assert realtime.stats()["channel_instances"] == {"orders.{order_id}": 2}


async def test_initial_state_hook_of_a_template_gets_the_parameters(serve: Any) -> None:
    realtime = templates()
    seen: list[Any] = []

    @realtime.initial_state("orders.{order_id}")
    async def order_state(request: Any, order_id: str, params: dict[str, str]) -> Any:
        seen.append((request.path, order_id, params))
        return {"order": order_id}

    @realtime.initial_state("rooms.{tenant}.{room}")
    async def room_state(request: Any, tenant: str, room: str) -> Any:
        return {"tenant": tenant, "room": room}

    server = await serve(realtime)
    async with server.connect("/ws?channels=orders.42,rooms.acme.lobby") as ws:
        await recv_json(ws)
        first, second = await recv_json(ws), await recv_json(ws)
    assert first == {**first, "type": "initial_state", "data": {"order": "42"}}
    assert second["data"] == {"tenant": "acme", "room": "lobby"}
    assert seen == [("/ws", "42", {"order_id": "42"})]


async def test_on_redis_a_quiet_instance_expires_with_its_history_and_starts_afresh(
    serve: Any,
) -> None:
    """An instance's Redis keys live as long as its history.ttl; once they expired, the
    next event starts a new epoch at offset 1, and a subscriber that was watching gets it
    without a false ``messages_dropped`` (nothing was published meanwhile)."""
    import redis.asyncio as redis

    from .redis_support import delete_prefix, new_prefix, redis_url

    url, prefix = redis_url(), new_prefix()
    channels = {"orders.{order_id}": {"history": {"size": 10, "ttl": "1s"}}}
    realtime = Realtime(
        parse_config({"channels": channels, "backplane": url, "redis": {"prefix": prefix}})
    )
    r = redis.from_url(url)
    try:
        server = await serve(realtime)
        async with server.connect("/ws/orders.9") as ws:
            await recv_json(ws)
            first = await realtime.publish("orders.9", "status", {"n": 1})
            assert (await recv_json(ws))["id"] == first.id
            assert 0 < await r.pttl(f"{prefix}:orders.9:meta") <= 1000
            deadline = asyncio.get_running_loop().time() + 10
            while await r.exists(f"{prefix}:orders.9:meta"):
                assert asyncio.get_running_loop().time() < deadline, "the meta key never expired"
                await asyncio.sleep(0.1)
            second = await realtime.publish("orders.9", "status", {"n": 2})
            assert second.id.endswith(":1") and second.id != first.id
            got = await recv_json(ws)
            assert (got["type"], got["id"]) == ("status", second.id)
            await no_message(ws)
    finally:
        await r.aclose()
        await delete_prefix(url, prefix)


async def test_the_python_client_takes_instance_names_and_their_refusals(serve: Any) -> None:
    from sanic_realtime.client import RealtimeClient, RequestFailed

    realtime = templates()
    server = await serve(realtime)
    async with RealtimeClient(server.ws_url(), channels=["orders.42"]) as client:
        sent = await realtime.publish("orders.42", "status", {"status": "paid"})
        async with asyncio.timeout(5):
            async for event in client:
                if event.is_event:
                    break
        assert (event.channel, event.id) == ("orders.42", sent.id)
        with pytest.raises(RequestFailed) as info:
            await client.subscribe("orders.x")
        assert info.value.code == "invalid_channel"
    # A channel URL of an instance, as the CLI's tail takes it.
    async with RealtimeClient(server.ws_url("/ws/orders.7?status=shipped")) as client:
        assert client.channels == ["orders.7"]


def test_the_cache_of_resolved_names_is_bounded() -> None:
    """A client naming ever new instances cannot grow the catalog's cache past CACHE
    (plus the static channels); refused names are not kept."""
    catalog = parse_config({"channels": CHANNELS}).catalog
    first = catalog.resolve("orders.1")
    assert catalog.resolve("orders.1") is first  # kept: no pattern is matched again
    for i in range(Catalog.CACHE * 2 + 5):
        catalog.resolve(f"orders.{i}")
        with pytest.raises(InvalidChannel):
            catalog.resolve(f"orders.x{i}")
    assert len(catalog._resolved) <= Catalog.CACHE + len(catalog.static)
    assert not any(name.startswith("orders.x") for name in catalog._resolved)
