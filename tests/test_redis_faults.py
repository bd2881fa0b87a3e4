"""The Redis backplane when things go wrong: pub/sub loses messages, Redis goes away and
comes back empty. Real servers, real clients, real redis-servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidStatus

from sanic_realtime import Realtime
from sanic_realtime.backplanes.redis import RedisBackplane
from sanic_realtime.exceptions import ServerUnavailable

from .conftest import BASE, make_realtime, no_message, recv_json, recv_until
from .redis_support import RedisServer, delete_prefix, new_prefix, redis_url

CHANNELS = {**BASE["channels"], "nohist": {"history": {"size": 0, "ttl": "1m"}}}


def redis_realtime(url: str, prefix: str) -> Realtime:
    return make_realtime(backplane=url, redis={"prefix": prefix}, channels=CHANNELS)


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.close()


async def health(
    server: Any, status: int, timeout: float = 15.0, **backplane: Any
) -> dict[str, Any]:
    """Poll the health route until it answers ``status`` (and the backplane fields given)."""
    async with asyncio.timeout(timeout):
        while True:
            response = await server.http.get("/ws/health")
            body: dict[str, Any] = response.json()
            state = body["backplane"]
            if response.status_code == status and all(state[k] == v for k, v in backplane.items()):
                return body
            await asyncio.sleep(0.1)


async def test_events_that_pubsub_missed_come_from_the_stream_or_are_reported(
    serve: Any,
) -> None:
    """The server's pub/sub connection is killed and events are published in the same
    Redis transaction, so pub/sub cannot carry them: on reconnecting, the server reads
    them from the stream (logs; requests, which had no event yet), or reports how many it
    cannot get (nohist: no history)."""
    url, prefix = redis_url(), new_prefix()
    realtime = redis_realtime(url, prefix)
    server = await serve(realtime)
    publisher = redis_realtime(url, prefix)  # another process, as far as Redis can tell
    await publisher.hub.start()
    admin = aioredis.Redis.from_url(url)
    backplane = realtime.hub.backplane
    other = publisher.hub.backplane
    assert isinstance(backplane, RedisBackplane) and isinstance(other, RedisBackplane)
    try:
        async with server.connect("/ws?channels=logs,nohist,requests") as ws:
            await recv_until(ws, "connection_established")
            await publisher.publish("logs", "t", {"i": 0})
            await publisher.publish("nohist", "t", {"i": 0})
            assert [(await recv_json(ws))["data"]["i"] for _ in range(2)] == [0, 0]

            name = f"sanic-realtime:{prefix}:{backplane.node}"
            ids = [c["id"] for c in await admin.client_list(_type="pubsub") if c["name"] == name]
            assert len(ids) == 1, ids
            run = (await admin.info("server"))["run_id"]
            async with admin.pipeline(transaction=True) as pipe:
                pipe.client_kill_filter(_id=ids[0])
                for channel in ("logs", "nohist", "requests"):
                    for i in range(1, 6):
                        pub = other.prepare(channel, "t", {"i": i}, user_id=None, role=None)
                        await other._script(keys=pub.keys, args=[*pub.args, run], client=pipe)
                await pipe.execute()

            got: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                while len(got) < 11:
                    got.append(await recv_json(ws))
            logs = [m for m in got if m.get("channel") == "logs"]
            assert [m["data"]["i"] for m in logs] == [1, 2, 3, 4, 5]
            requests = [m for m in got if m.get("channel") == "requests"]
            assert [m["data"]["i"] for m in requests] == [1, 2, 3, 4, 5]
            offsets = [int(m["id"].rpartition(":")[2]) for m in logs]
            assert offsets == [2, 3, 4, 5, 6]
            (lost,) = [m for m in got if m["type"] == "messages_dropped"]
            assert lost["data"] == {"channel": "nohist", "count": 5, "reason": "backplane_gap"}
            assert backplane.recovered_from_stream == 10
            assert backplane.reconnects >= 1

            # Live again, exactly once.
            await publisher.publish("logs", "t", {"i": 6})
            message = await recv_json(ws)
            assert message["data"]["i"] == 6 and message["id"].endswith(":7")
            await no_message(ws)
    finally:
        await admin.aclose()
        await publisher.hub.shutdown()
        await delete_prefix(url, prefix)


async def test_redis_goes_away_and_comes_back(serve: Any, own_redis: RedisServer) -> None:
    realtime = redis_realtime(own_redis.url, "faults")
    server = await serve(realtime)
    broadcast = {"channel": "logs", "type": "log_update", "data": {"level": "error"}}
    async with server.connect("/ws/logs") as ws:
        await recv_until(ws, "connection_established")
        response = await server.http.post("/admin/ws/broadcast", json=broadcast)
        first = response.json()["id"]
        assert (await recv_json(ws))["id"] == first

        await own_redis.stop()
        body = await health(server, 503, listener="reconnecting")
        assert body["backplane"]["ok"] is False

        # Publishing fails loudly, never "success".
        response = await server.http.post("/admin/ws/broadcast", json=broadcast)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "backplane_unavailable" and "Redis" in error["message"]
        with pytest.raises(ServerUnavailable):
            await realtime.publish("logs", "log_update", {"level": "error"})
        # New connections are refused before the upgrade; figures say they are partial.
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect("/ws/logs"):
                pass
        assert refused.value.response.status_code == 503
        stats = (await server.http.get("/admin/ws/stats")).json()
        assert stats["complete"] is False and stats["total_clients"] == 1
        # The connected client stays connected.
        await ws.send('{"type": "ping"}')
        assert (await recv_json(ws))["type"] == "pong"

        await own_redis.start()  # same port, empty: it kept nothing
        body = await health(server, 200)
        assert body["backplane"]["reconnects"] >= 1
        # Redis lost the history: the client is told, not left to guess.
        lost = await recv_until(ws, "messages_dropped", timeout=10)
        assert lost["data"] == {"channel": "logs", "count": None, "reason": "history_reset"}

        response = await server.http.post("/admin/ws/broadcast", json=broadcast)
        assert response.status_code == 200
        second = response.json()["id"]
        assert second.rpartition(":")[0] != first.rpartition(":")[0]  # a new epoch
        assert (await recv_json(ws))["id"] == second

    # Resuming works again: an id of the lost history is refused as a whole, a new one
    # is recovered.
    async with server.connect(f"/ws/logs?since={first}") as ws:
        hello = await recv_json(ws)
        assert hello["data"]["recovered"] == {"logs": False}
    response = await server.http.post("/admin/ws/broadcast", json=broadcast)
    third = response.json()["id"]
    async with server.connect(f"/ws/logs?since={second}") as ws:
        hello = await recv_json(ws)
        assert hello["data"]["recovered"] == {"logs": True}
        assert (await recv_json(ws))["id"] == third
        await no_message(ws)


async def test_a_server_starts_while_redis_is_down(serve: Any, own_redis: RedisServer) -> None:
    """Start-up does not fail; health says 503 until Redis is there, then 200."""
    await own_redis.stop()
    server = await serve(redis_realtime(own_redis.url, "late"))
    body = await health(server, 503)
    assert body["backplane"]["last_error"]
    await own_redis.start()
    await health(server, 200)
    async with server.connect("/ws/logs") as ws:
        await recv_until(ws, "connection_established")
        response = await server.http.post(
            "/admin/ws/broadcast", json={"channel": "logs", "type": "t", "data": {}}
        )
        assert (await recv_json(ws))["id"] == response.json()["id"]


async def test_redis_restored_from_an_older_snapshot_never_reuses_ids(
    serve: Any, own_redis: RedisServer
) -> None:
    """Redis crashes and comes back from a snapshot older than what clients saw: the
    offsets it remembers are behind. A new epoch starts (ids are never given out twice),
    the client is told, and old ids are not resumed."""
    realtime = redis_realtime(own_redis.url, "restore")
    server = await serve(realtime)
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with server.connect("/ws/logs") as ws:
            await recv_until(ws, "connection_established")
            ids = []
            for i in range(10):
                if i == 5:
                    await admin.save()  # the snapshot holds events 1-5
                ids.append((await realtime.publish("logs", "t", {"i": i})).id)
            assert [(await recv_json(ws))["id"] for _ in range(10)] == ids
            await admin.aclose()

            await own_redis.stop()  # a crash: events 6-10 were never saved
            await health(server, 503)
            await own_redis.start()  # loads the snapshot
            await health(server, 200)
            lost = await recv_until(ws, "messages_dropped", timeout=10)
            assert lost["data"] == {"channel": "logs", "count": None, "reason": "history_reset"}

            fresh = [(await realtime.publish("logs", "t", {"i": i})).id for i in range(10, 17)]
            assert [(await recv_json(ws))["id"] for _ in range(7)] == fresh
            assert not set(fresh) & set(ids)
            await no_message(ws)
        for old in (ids[2], ids[-1]):
            async with server.connect(f"/ws/logs?since={old}") as ws:
                hello = await recv_json(ws)
                assert hello["data"]["recovered"] == {"logs": False}
    finally:
        await admin.aclose()


async def test_publish_and_disconnect_say_clearly_when_redis_is_not_there(
    serve: Any, own_redis: RedisServer
) -> None:
    realtime = redis_realtime(own_redis.url, "early")
    with pytest.raises(ServerUnavailable, match="not started"):
        await realtime.publish("logs", "t", {})  # before the server started
    server = await serve(realtime)
    async with server.connect("/ws/logs") as ws:
        await recv_until(ws, "connection_established")
        await own_redis.stop()
        await health(server, 503)
        with pytest.raises(ServerUnavailable, match="closed 0 connection"):
            await realtime.disconnect(user_id="nobody")
        await ws.send('{"type": "ping"}')
        assert (await recv_json(ws))["type"] == "pong"
