"""The Redis backplane's publish path at speed: automatic pipelining, publish_many and the
admin broadcast's events list. Real servers, real clients, real Redis (two hubs on one
prefix are two workers as far as Redis can tell)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from sanic_realtime import Realtime
from sanic_realtime.backplanes.redis import RedisBackplane
from sanic_realtime.exceptions import ServerUnavailable

from .conftest import make_realtime, no_message, recv_json, recv_until
from .redis_support import RedisServer, delete_prefix, new_prefix, redis_url

PUBLISHERS = 50
EACH = 20


def redis_realtime(url: str, prefix: str) -> Realtime:
    return make_realtime(backplane=url, redis={"prefix": prefix})


def offsets(messages: list[dict[str, Any]]) -> list[int]:
    return [int(m["id"].rpartition(":")[2]) for m in messages]


async def burst(realtime: Realtime, name: str) -> list[str]:
    """PUBLISHERS concurrent tasks, each awaiting EACH publishes of its own."""

    async def one(p: int) -> list[str]:
        ids = []
        for i in range(EACH):
            result = await realtime.publish("logs", "t", {"by": f"{name}{p}", "i": i})
            ids.append(result.id)
        return ids

    return [i for ids in await asyncio.gather(*(one(p) for p in range(PUBLISHERS))) for i in ids]


async def test_concurrent_publishers_on_two_workers_arrive_complete_and_in_order(
    serve: Any,
) -> None:
    """50 publishers on each of two workers at once: every client, on either worker, gets
    all 2,000 events once, in id order with consecutive offsets, and each publisher's own
    events in the order it made them; the publishes were pipelined (fewer writes than
    calls)."""
    url, prefix = redis_url(), new_prefix()
    a, b = redis_realtime(url, prefix), redis_realtime(url, prefix)
    server_a, server_b = await serve(a), await serve(b)
    try:
        async with server_a.connect("/ws/logs") as ws_a, server_b.connect("/ws/logs") as ws_b:
            for ws in (ws_a, ws_b):
                await recv_until(ws, "connection_established")
            ids_a, ids_b = await asyncio.gather(burst(a, "a"), burst(b, "b"))
            published = ids_a + ids_b
            total = 2 * PUBLISHERS * EACH
            assert len(set(published)) == total
            for ws in (ws_a, ws_b):
                got = [await recv_json(ws, timeout=20) for _ in range(total)]
                assert offsets(got) == list(range(1, total + 1))
                assert sorted(m["id"] for m in got) == sorted(published)
                by: dict[str, list[int]] = {}
                for m in got:
                    by.setdefault(m["data"]["by"], []).append(m["data"]["i"])
                assert all(seq == list(range(EACH)) for seq in by.values()) and len(by) == 100
                await no_message(ws)
        for realtime in (a, b):
            backplane = realtime.hub.backplane
            assert isinstance(backplane, RedisBackplane)
            pipeline = backplane._broker.pipeline
            assert pipeline.calls == PUBLISHERS * EACH
            assert pipeline.writes < pipeline.calls
    finally:
        await delete_prefix(url, prefix)


async def test_publish_many_in_order_and_its_refusals(serve: Any) -> None:
    url, prefix = redis_url(), new_prefix()
    realtime = redis_realtime(url, prefix)
    server = await serve(realtime)
    try:
        async with server.connect("/ws/logs") as ws:
            await recv_until(ws, "connection_established")
            results = await realtime.publish_many("logs", [("t", {"i": i}) for i in range(300)])
            assert [r.recipients for r in results] == [1] * 300
            assert offsets([{"id": r.id} for r in results]) == list(range(1, 301))
            got = [await recv_json(ws) for _ in range(300)]
            assert [m["id"] for m in got] == [r.id for r in results]
            assert [m["data"]["i"] for m in got] == list(range(300))

            # Data that cannot be encoded publishes none of them.
            with pytest.raises(TypeError):
                await realtime.publish_many("logs", [("t", {"i": 1}), ("t", {"bad": object()})])
            with pytest.raises(ValueError, match="non-empty string"):
                await realtime.publish_many("logs", [("", {})])
            assert await realtime.publish_many("logs", []) == []
            await no_message(ws)

            # The admin broadcast's list: ids in order, recipients summed.
            body = {
                "channel": "logs",
                "events": [{"type": "t", "data": {"i": i}} for i in range(5)],
            }
            response = await server.http.post("/admin/ws/broadcast", json=body)
            assert response.status_code == 200, response.text
            reply = response.json()
            assert reply["recipients"] == 5 and offsets([{"id": i} for i in reply["ids"]]) == [
                301,
                302,
                303,
                304,
                305,
            ]
            assert [m["id"] for m in [await recv_json(ws) for _ in range(5)]] == reply["ids"]

            bad = [
                ({"channel": "logs", "type": "t", "events": [{"type": "t"}]}, "not both"),
                ({"channel": "logs"}, "not neither"),
                ({"channel": "logs", "events": []}, "events"),
                ({"channel": "logs", "events": [{"type": "t"}] * 1001}, "events"),
                ({"channel": "logs", "events": [{"type": ""}]}, "type"),
                ({"channel": "logs", "events": [{"type": "t"}], "data": 1}, "inside each"),
                ({"channel": "logs", "events": [{"type": "t", "x": 1}]}, "x"),
            ]
            for body, words in bad:
                response = await server.http.post("/admin/ws/broadcast", json=body)
                assert response.status_code == 400, body
                error = response.json()["error"]
                assert error["code"] == "invalid_body" and words in error["message"], error
            deep: Any = 1
            for _ in range(200):
                deep = [deep]
            body = {"channel": "logs", "events": [{"type": "t", "data": deep}]}
            response = await server.http.post("/admin/ws/broadcast", json=body)
            assert (
                response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
            )
            await no_message(ws)
    finally:
        await delete_prefix(url, prefix)


async def test_a_burst_when_redis_dies_fails_cleanly_and_publishing_resumes(serve: Any) -> None:
    """Redis is killed under a pipelined burst: every publish returns or fails with
    backplane_unavailable (none waits forever), no id is given twice, and once Redis is
    back publishes work again, on a new connection."""
    own = RedisServer()
    await own.start()
    try:
        realtime = redis_realtime(own.url, "burst")
        await serve(realtime)
        backplane = realtime.hub.backplane
        assert isinstance(backplane, RedisBackplane)
        outcomes: list[str] = []
        underway = asyncio.Event()

        async def one() -> None:
            for i in range(200):
                try:
                    outcomes.append((await realtime.publish("logs", "t", {"i": i})).id)
                    if len(outcomes) >= 500:
                        underway.set()
                except ServerUnavailable as e:
                    assert e.code == "backplane_unavailable"
                    outcomes.append("failed")
                    return

        tasks = [asyncio.create_task(one()) for _ in range(PUBLISHERS)]
        async with asyncio.timeout(30):
            await underway.wait()
        await own.stop()
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
        ids = [o for o in outcomes if o != "failed"]
        assert len(ids) == len(set(ids)) and "failed" in outcomes
        await own.start()
        async with asyncio.timeout(30):
            while True:
                try:
                    result = await realtime.publish("logs", "t", {"after": True})
                    break
                except ServerUnavailable:
                    await asyncio.sleep(0.1)
        assert result.id not in ids
        assert backplane._broker.pipeline.run is not None
    finally:
        await own.close()


async def test_a_flushed_script_cache_fails_one_publish_then_loads_again(serve: Any) -> None:
    """On a redis-server of its own: SCRIPT FLUSH would disturb every other user of a
    shared one."""
    own = RedisServer()
    await own.start()
    realtime = redis_realtime(own.url, "flush")
    await serve(realtime)
    admin = aioredis.Redis.from_url(own.url)
    try:
        first = await realtime.publish("logs", "t", {})
        await admin.script_flush()
        with pytest.raises(ServerUnavailable, match="NOSCRIPT") as refused:
            await realtime.publish("logs", "t", {})
        assert refused.value.code == "backplane_unavailable"
        after = await realtime.publish("logs", "t", {})
        # The refused call did not run: no id was used up.
        assert offsets([{"id": first.id}, {"id": after.id}]) == [1, 2]
    finally:
        await admin.aclose()
        await own.close()


async def test_count_cluster_sums_every_workers_recipients(serve: Any) -> None:
    """count="cluster": each worker that got the event answers with its recipients; the
    publisher sums them (with none of its own, and through the admin route)."""
    url, prefix = redis_url(), new_prefix()
    a, b, c = (redis_realtime(url, prefix) for _ in range(3))
    server_a, server_b, server_c = await serve(a), await serve(b), await serve(c)
    try:
        async with (
            server_a.connect("/ws/logs") as a1,
            server_a.connect("/ws/logs?level=error") as a2,
            server_b.connect("/ws/logs") as b1,
            server_b.connect("/ws/logs") as b2,
            server_b.connect("/ws/logs") as b3,
        ):
            clients = (a1, a2, b1, b2, b3)
            for ws in clients:
                await recv_until(ws, "connection_established")
            local = await a.publish("logs", "t", {"level": "info"})
            assert local.recipients == 1 and local.complete
            counted = await a.publish("logs", "t", {"level": "info"}, count="cluster")
            assert (counted.recipients, counted.complete) == (4, True)
            counted = await a.publish("logs", "t", {"level": "error"}, count="cluster")
            assert (counted.recipients, counted.complete) == (5, True)
            # A worker without subscribers of its own counts the others'.
            counted = await c.publish("logs", "t", {"level": "error"}, count="cluster")
            assert (counted.recipients, counted.complete) == (5, True)
            body = {"channel": "logs", "type": "t", "data": {"level": "error"}, "count": "cluster"}
            response = await server_c.http.post("/admin/ws/broadcast", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["recipients"] == 5 and response.json()["complete"] is True
            body["events"], body["count"] = [{"type": "t"}], "cluster"
            del body["type"], body["data"]
            response = await server_c.http.post("/admin/ws/broadcast", json=body)
            assert response.status_code == 400 and "count is for one event" in response.text
            with pytest.raises(ValueError, match="count must be"):
                await a.publish("logs", "t", {}, count="everywhere")  # type: ignore[arg-type]
    finally:
        await delete_prefix(url, prefix)
