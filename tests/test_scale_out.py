"""Several server processes sharing the machine's Redis, started with the real `sanic`
command line: two `--single-process` instances on two ports (deterministic: the test
picks the instance), and one `--workers 3` run (the kernel spreads the clients)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import no_message, recv_json, recv_until
from .processes import SanicProcess, cluster_figures
from .redis_support import delete_prefix, new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .tokens import bearer, token

Start = Callable[..., Awaitable[SanicProcess]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    url, prefix = redis_url(), new_prefix()
    env = {"RT_BACKPLANE": url, "RT_PREFIX": prefix}
    started: list[SanicProcess] = []

    async def run(workers: int = 1) -> SanicProcess:
        process = SanicProcess("tests.scale_app:create_app", env, workers=workers)
        started.append(process)
        return await process.start()

    yield run
    await asyncio.gather(*(p.stop() for p in started))
    await delete_prefix(url, prefix)


def client(server: SanicProcess, path: str, user: str = "bob", role: str = "user") -> Any:
    return connect(
        server.ws_url(path), additional_headers=bearer(token(user, role)), open_timeout=10
    )


async def broadcast(server: SanicProcess, channel: str, data: Any, **extra: Any) -> dict[str, Any]:
    response = await server.http.post(
        "/admin/ws/broadcast",
        json={"channel": channel, "type": "log_update", "data": data, **extra},
        headers=bearer(ADMIN_TOKEN),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_event_published_on_one_instance_reaches_clients_on_the_other(
    start: Start,
) -> None:
    a, b = await asyncio.gather(start(), start())
    async with client(b, "/ws/logs?level=warn") as on_b, client(a, "/ws/logs") as on_a:
        await recv_until(on_b, "connection_established")
        await recv_until(on_a, "connection_established")
        sent = await broadcast(a, "logs", {"level": "error", "message": "db down"})
        assert sent["recipients"] == 1  # this worker's: the client on A
        got = await recv_json(on_b)
        assert got["id"] == sent["id"] and got["data"]["message"] == "db down"
        assert (await recv_json(on_a))["id"] == sent["id"]
        # Filters apply on the receiving worker.
        await broadcast(a, "logs", {"level": "info", "message": "fine"})
        await no_message(on_b)
    # initial: last reads the shared history: published on A, first thing seen on B.
    await broadcast(a, "stats", {"total": 7})
    async with client(b, "/ws/stats") as ws:
        await recv_until(ws, "connection_established")
        initial = await recv_json(ws)
        assert initial["type"] == "initial_state" and initial["data"] == {"total": 7}


async def test_publishers_on_both_instances_share_one_order(start: Start) -> None:
    """Ids are strictly increasing across publishers; every client sees one order."""
    a, b = await asyncio.gather(start(), start())
    async with client(a, "/ws/logs") as on_a, client(b, "/ws/logs") as on_b:
        await recv_until(on_a, "connection_established")
        await recv_until(on_b, "connection_established")
        results = await asyncio.gather(
            *(broadcast(a if i % 2 else b, "logs", {"level": "info", "i": i}) for i in range(40))
        )
        ids_a = [(await recv_json(on_a))["id"] for _ in range(40)]
        ids_b = [(await recv_json(on_b))["id"] for _ in range(40)]
        assert ids_a == ids_b
        offsets = [int(i.rpartition(":")[2]) for i in ids_a]
        assert offsets == sorted(offsets) and len(set(offsets)) == 40
        assert sorted(ids_a) == sorted(r["id"] for r in results)
        await no_message(on_a)
        await no_message(on_b)


async def test_a_client_leaves_one_instance_and_resumes_on_the_other(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with client(a, "/ws/logs") as ws:
        await recv_until(ws, "connection_established")
        for i in range(3):
            await broadcast(a, "logs", {"level": "info", "i": i})
        seen = [await recv_json(ws) for _ in range(3)]
    last = seen[-1]["id"]
    # Missed while away, published on both instances.
    missed = [
        await broadcast(a if i % 2 else b, "logs", {"level": "info", "i": i}) for i in range(3, 8)
    ]
    async with client(b, f"/ws/logs?since={last}") as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"
        assert hello["data"]["recovered"] == {"logs": True}
        replay = [await recv_json(ws) for _ in range(5)]
        assert [m["id"] for m in replay] == [m["id"] for m in missed]
        assert [m["data"]["i"] for m in replay] == [3, 4, 5, 6, 7]
        live = await broadcast(a, "logs", {"level": "info", "i": 8})
        assert (await recv_json(ws))["id"] == live["id"]
        await no_message(ws)
    # An id from before history: recovered false, nothing partial.
    epoch = last.rpartition(":")[0]
    async with client(b, f"/ws/logs?since={epoch}x:1") as ws:
        hello = await recv_json(ws)
        assert hello["data"]["recovered"] == {"logs": False}
        await no_message(ws)


async def test_template_instances_span_workers_with_their_own_history(start: Start) -> None:
    """Two workers publish to and serve the same instances; each instance has its own
    ids and history in Redis (keys with TTLs), and a client resumes on the other worker."""
    import redis.asyncio as redis

    a, b = await asyncio.gather(start(), start())
    async with client(a, "/ws/orders.42") as on_a, client(b, "/ws?channels=orders.43") as on_b:
        await recv_until(on_a, "connection_established")
        await recv_until(on_b, "connection_established")
        first = await broadcast(b, "orders.42", {"status": "paid"})
        other = await broadcast(a, "orders.43", {"status": "packed"})
        assert first["id"].endswith(":1") and other["id"].endswith(":1")
        assert (await recv_json(on_a))["id"] == first["id"]
        assert (await recv_json(on_b))["id"] == other["id"]
        await no_message(on_a)
    missed = await broadcast(a, "orders.42", {"status": "shipped"})
    async with client(b, f"/ws/orders.42?since={first['id']}") as ws:
        hello = await recv_json(ws)
        assert hello["data"]["recovered"] == {"orders.42": True}
        assert (await recv_json(ws))["id"] == missed["id"]
    prefix = a.env["RT_PREFIX"]
    r = redis.from_url(a.env["RT_BACKPLANE"])
    try:
        for key in (f"{prefix}:orders.42:meta", f"{prefix}:orders.42:stream"):
            ttl = await r.pttl(key)
            assert 0 < ttl <= 10 * 60 * 1000, (key, ttl)  # bounded by history.ttl
    finally:
        await r.aclose()


async def test_tickets_stats_and_disconnect_span_instances(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    # A ticket issued by A is taken by B, once.
    response = await a.http.post("/ws/ticket", headers=bearer(token("carol", "user")))
    ticket = response.json()["ticket"]
    async with connect(b.ws_url(f"/ws/logs?ticket={ticket}"), open_timeout=10) as ws:
        hello = await recv_json(ws)
        assert hello["data"]["user_id"] == "carol"
    response = await a.http.get(f"/ws/logs?ticket={ticket}", headers={"Upgrade": "websocket"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_ticket"

    async with (
        client(a, "/ws/logs", "alice") as alice_a,
        client(b, "/ws/stats", "alice") as alice_b,
        client(b, "/ws/logs", "bob") as bob_b,
    ):
        for ws in (alice_a, alice_b, bob_b):
            await recv_until(ws, "connection_established")
        # Each worker writes its figures every 2 s; the route sums them.
        stats = await cluster_figures(a, ADMIN_TOKEN, clients=3, workers=2)
        assert stats["by_channel"] == {"logs": 2, "stats": 1}
        assert stats["total_users"] == 3  # alice on two workers counts twice
        assert sorted(stats["by_worker"].values()) == [1, 2]
        assert stats["complete"] is True

        # realtime.disconnect on B closes alice's connections on A too.
        response = await b.http.post("/kick", params={"user_id": "alice"})
        assert response.json() == {"closed_here": 1}
        for ws in (alice_a, alice_b):
            with pytest.raises(ConnectionClosed):
                await recv_until(ws, "never")
            assert ws.close_code == 1008
        await bob_b.send('{"type": "ping"}')
        assert (await recv_json(bob_b))["type"] == "pong"


async def test_three_workers_deliver_a_broadcast_to_thirty_clients(start: Start) -> None:
    server = await start(workers=3)
    clients = [client(server, "/ws/logs") for _ in range(30)]
    sockets = []
    try:
        for c in clients:
            # One at a time: a burst of connects is all accepted by whichever worker
            # wakes first (the workers share one listening socket).
            ws = await c.__aenter__()
            sockets.append(ws)
            await recv_until(ws, "connection_established")
            await asyncio.sleep(0.02)
        stats = await cluster_figures(server, ADMIN_TOKEN, clients=30, workers=3)
        busy = [n for n in stats["by_worker"].values() if n]
        # The kernel decides; the run proves something only if clients are spread.
        assert len(busy) >= 2, f"all clients landed on one worker: {stats['by_worker']}"
        sent = await broadcast(server, "logs", {"level": "error", "message": "to all"})
        received = await asyncio.gather(*(recv_json(ws, 10) for ws in sockets))
        assert [m["id"] for m in received] == [sent["id"]] * 30
        assert sent["recipients"] in stats["by_worker"].values()  # one worker's count
    finally:
        await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients[: len(sockets)]))
