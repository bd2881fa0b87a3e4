"""Delivery guarantees through a real server: order, resume, slow clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.exceptions import ConnectionClosed

from .conftest import make_realtime, no_message, recv_json
from .rawclient import RawClient


async def test_order_and_no_duplicates_across_clients(serve: Any) -> None:
    """Many clients each get every event exactly once, in publish order."""
    server = await serve(make_realtime())
    clients = [await server.connect("/ws/logs").__aenter__() for _ in range(20)]
    try:
        for ws in clients:
            await recv_json(ws)
        ids = [(await server.realtime.publish("logs", "log", {"i": i})).id for i in range(300)]
        for ws in clients:
            got = [(await recv_json(ws))["id"] for _ in range(300)]
            assert got == ids
            await no_message(ws, 0.05)
    finally:
        for ws in clients:
            await ws.close()


async def test_resume_on_channel_route(serve: Any) -> None:
    """?since=<id> replays exactly the missed events that match the filter, then live."""
    server = await serve(make_realtime())
    realtime = server.realtime
    async with server.connect("/ws/logs?level=warn") as ws:
        await recv_json(ws)
        first = await realtime.publish("logs", "log", {"level": "error", "i": 0})
        assert (await recv_json(ws))["id"] == first.id
    # Missed while away: two match the filter, one does not.
    await realtime.publish("logs", "log", {"level": "warn", "i": 1})
    await realtime.publish("logs", "log", {"level": "debug", "i": 2})
    await realtime.publish("logs", "log", {"level": "critical", "i": 3})
    async with server.connect(f"/ws/logs?level=warn&since={first.id}") as ws:
        hello = await recv_json(ws)
        assert hello["data"]["recovered"] == {"logs": True}
        await realtime.publish("logs", "log", {"level": "error", "i": 4})
        got = [(await recv_json(ws))["data"]["i"] for _ in range(3)]
        assert got == [1, 3, 4]
        await no_message(ws, 0.1)


async def test_resume_up_to_date_is_recovered_with_nothing_replayed(serve: Any) -> None:
    """Resuming from the newest id: recovered true, nothing replayed, no initial_state."""
    server = await serve(make_realtime())
    last = await server.realtime.publish("stats", "s", {"n": 1})
    async with server.connect(f"/ws/stats?since={last.id}") as ws:
        assert (await recv_json(ws))["data"]["recovered"] == {"stats": True}
        await no_message(ws, 0.1)


async def test_resume_past_history_is_reported(serve: Any) -> None:
    """When history does not reach back: recovered false, nothing partial."""
    server = await serve(make_realtime(history={"size": 3, "ttl": "1m"}))
    realtime = server.realtime
    first = await realtime.publish("logs", "log", {"i": 0})
    for i in range(1, 6):
        await realtime.publish("logs", "log", {"i": i})
    async with server.connect(f"/ws/logs?since={first.id}") as ws:
        assert (await recv_json(ws))["data"]["recovered"] == {"logs": False}
        await no_message(ws, 0.1)
        await realtime.publish("logs", "log", {"i": 6})
        assert (await recv_json(ws))["data"]["i"] == 6


async def test_resume_after_restart_is_not_recovered(serve: Any) -> None:
    """A new server run has a new epoch: old ids are never replayed against."""
    old = await serve(make_realtime())
    stale = await old.realtime.publish("logs", "log", {})
    new = await serve(make_realtime())
    await new.realtime.publish("logs", "log", {})
    assert stale.id.split(":")[0] != (await new.realtime.publish("logs", "x", {})).id.split(":")[0]
    async with new.connect(f"/ws/logs?since={stale.id}") as ws:
        assert (await recv_json(ws))["data"]["recovered"] == {"logs": False}
        await no_message(ws, 0.1)


async def test_resume_on_general_route_and_by_subscribe(serve: Any) -> None:
    """since.<channel>= on the general route, and since in subscribe messages."""
    server = await serve(make_realtime())
    realtime = server.realtime
    a = await realtime.publish("logs", "log", {"i": 0})
    s = await realtime.publish("stats", "s", {"i": 0})
    await realtime.publish("logs", "log", {"i": 1})
    await realtime.publish("stats", "s", {"i": 1})
    async with server.connect(f"/ws?channels=logs,stats&since.logs={a.id}") as ws:
        hello = await recv_json(ws)
        assert hello["data"]["recovered"] == {"logs": True}
        messages = [await recv_json(ws), await recv_json(ws)]
        # stats did not resume: it gets its initial_state; logs gets the missed event.
        assert {(m["type"], m["channel"]) for m in messages} == {
            ("initial_state", "stats"),
            ("log", "logs"),
        }
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send(
            json.dumps({"type": "subscribe", "channels": ["stats"], "since": {"stats": s.id}})
        )
        reply = await recv_json(ws)
        assert reply["type"] == "subscribed"
        assert reply["data"]["recovered"] == {"stats": True}
        assert (await recv_json(ws))["data"] == {"i": 1}


async def test_reconnect_loop_loses_nothing(serve: Any) -> None:
    """A client that reconnects with its last id while events keep flowing sees every
    event exactly once, in order."""
    server = await serve(make_realtime())
    realtime = server.realtime
    stop = asyncio.Event()

    async def publisher() -> int:
        n = 0
        while not stop.is_set():
            await realtime.publish("logs", "log", {"i": n})
            n += 1
            await asyncio.sleep(0.001)
        return n

    task = asyncio.create_task(publisher())
    seen: list[int] = []
    last_id: str | None = None
    for _ in range(8):
        path = "/ws/logs" + (f"?since={last_id}" if last_id else "")
        async with server.connect(path) as ws:
            hello = await recv_json(ws)
            if last_id:
                assert hello["data"]["recovered"] == {"logs": True}
            for _ in range(15):
                event = await recv_json(ws)
                seen.append(event["data"]["i"])
                last_id = event["id"]
    stop.set()
    await task
    assert seen == list(range(seen[0], seen[0] + len(seen)))


async def test_slow_reader_is_disconnected_and_never_blocks_others(serve: Any) -> None:
    """A client that stops reading is closed with 4008 once its buffer is full; the
    publisher and a fast client are not held up, and the slow one got a gap-free prefix."""
    server = await serve(make_realtime(buffer_size=16))
    realtime = server.realtime
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    async with server.connect("/ws/logs", max_queue=None) as fast:
        await recv_json(fast)
        payload = "x" * 1000
        total = 4000  # ~4 MB: more than kernel and transport buffers hold

        async def publish_all() -> None:
            for i in range(total):
                await realtime.publish("logs", "log", {"i": i, "p": payload})
                if i % 50 == 0:
                    await asyncio.sleep(0)

        await asyncio.wait_for(publish_all(), 20)
        got = [(await recv_json(fast))["data"]["i"] for _ in range(total)]
        assert got == list(range(total))
    stats = realtime.stats()
    assert stats["slow_disconnects"] == 1
    assert stats["messages_dropped"] >= 1
    await slow.read_until_closed(answer_close=True)
    assert slow.close_code == 4008
    assert "slow consumer" in (slow.close_reason or "")
    received = [m["data"]["i"] for m in slow.messages() if m.get("channel") == "logs"]
    assert received == list(range(len(received)))  # a prefix: in order, no gap
    assert 0 < len(received) < total
    slow.close()


async def test_back_to_back_burst_keeps_order_policies_and_close_handshakes(serve: Any) -> None:
    """One event per loop iteration (the coalescing path) under load: 20 clients get
    every event in order; a client that stops reading is closed with 4008 without
    holding anyone up; a client that closes mid-burst completes the close handshake."""
    server = await serve(make_realtime(buffer_size=256))
    realtime = server.realtime
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    clients = [await server.connect("/ws/logs", max_queue=None).__aenter__() for _ in range(20)]
    leaver = await server.connect("/ws/logs", max_queue=None).__aenter__()
    try:
        for ws in [*clients, leaver]:
            await recv_json(ws)
        total, payload = 3000, "x" * 1000
        closing: asyncio.Task[None] | None = None
        slow_reader: asyncio.Task[None] | None = None
        for i in range(total):
            await realtime.publish("logs", "log", {"i": i, "p": payload})
            await asyncio.sleep(0)
            if i == total // 2:
                closing = asyncio.create_task(leaver.close())
            if slow_reader is None and realtime.stats()["slow_disconnects"]:
                # Closed with 4008: the client now reads what it was sent, up to the close
                # frame, and answers it. It does so at once: the server waits CLOSE_TIMEOUT
                # for the answer, and on a loaded machine reading the 20 others takes longer.
                slow_reader = asyncio.create_task(slow.read_until_closed(answer_close=True))
        assert closing is not None and slow_reader is not None
        await asyncio.wait_for(closing, 10)
        assert leaver.protocol.close_rcvd is not None
        assert leaver.protocol.close_rcvd.code == 1000
        for ws in clients:
            got = [(await recv_json(ws))["data"]["i"] for _ in range(total)]
            assert got == list(range(total))
            await no_message(ws, 0.01)
        await asyncio.wait_for(slow_reader, 20)
        assert slow.close_code == 4008
        received = [m["data"]["i"] for m in slow.messages() if m.get("channel") == "logs"]
        assert received == list(range(len(received))) and len(received) < total
        stats = realtime.stats()
        assert stats["slow_disconnects"] == 1
        assert stats["total_clients"] == 20
    finally:
        slow.close()
        for ws in clients:
            await ws.close()


async def test_drop_oldest_accounts_for_every_event(serve: Any) -> None:
    """drop_oldest over a real socket: what the slow client receives plus what it is
    told was dropped is exactly what was published; order is kept."""
    server = await serve(make_realtime(buffer_size=16, slow_client="drop_oldest"))
    realtime = server.realtime
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    payload = "x" * 1000
    total = 4000
    for i in range(total):
        await realtime.publish("logs", "log", {"i": i, "p": payload})
        if i % 50 == 0:
            await asyncio.sleep(0)
    await slow.read_for(1.0)  # now read everything that was kept
    messages = slow.messages()
    received = [m["data"]["i"] for m in messages if m.get("channel") == "logs"]
    dropped = sum(m["data"]["count"] for m in messages if m["type"] == "messages_dropped")
    assert all(m["data"]["channel"] == "logs" for m in messages if m["type"] == "messages_dropped")
    assert dropped > 0
    assert len(received) + dropped == total
    assert received == sorted(received)
    assert received[-1] == total - 1  # the newest always arrive
    assert realtime.stats()["messages_dropped"] == dropped
    assert realtime.stats()["slow_disconnects"] == 0
    slow.close()


async def test_stalled_client_does_not_delay_shutdown_forever(serve: Any) -> None:
    """Shutdown gives a stalled client shutdown_timeout, then drops it."""
    server = await serve(make_realtime(buffer_size=100000, shutdown_timeout="300ms"))
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    for i in range(3000):
        await server.realtime.publish("logs", "log", {"i": i, "p": "x" * 1000})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.realtime.hub.shutdown()
    assert loop.time() - started < 2.0
    assert server.realtime.stats()["total_clients"] == 0
    slow.close()


async def test_graceful_shutdown_flushes_then_1001(serve: Any) -> None:
    """On shutdown, clients get what was queued for them, then close 1001."""
    server = await serve(make_realtime())
    ws = await server.connect("/ws/logs").__aenter__()
    await recv_json(ws)
    for i in range(200):
        await server.realtime.publish("logs", "log", {"i": i})
    await server.stop()
    got = []
    try:
        while True:
            got.append((await recv_json(ws))["data"]["i"])
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1001
    assert got == list(range(200))
