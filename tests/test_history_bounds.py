"""What one cheap client request can make the server read from its history (issue 17).

A resume that cannot succeed (another epoch, an offset beyond the newest, events trimmed
or expired) reads none of the history's events, and ``initial: last`` looks at no more
than ``history.initial_scan`` events. Against Redis the bytes Redis sends are counted:
each test starts a redis-server of its own, so ``INFO stats`` ``total_net_output_bytes``
counts only its traffic. Real servers, real clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from sanic_realtime.backplanes.redis import RedisBackplane
from sanic_realtime.config import HistoryConfig
from sanic_realtime.events import Event, EventId

from .conftest import make_realtime, no_message, recv_json, recv_until
from .redis_support import RedisServer

EVENTS = 1000
BLOB = "x" * 20_000  # ~20 KB per event: the whole history is ~20 MB
#: What a request that reads none (or a few) of the events may make Redis send: the
#: script's reply, the pub/sub confirmation, the INFO reply itself.
SMALL = 100_000

CHANNELS: dict[str, Any] = {
    "big": {
        "filters": {"kind": {}},
        "history": {"size": 2 * EVENTS, "ttl": "10m"},
    },
    "state": {
        "initial": "last",
        "filters": {"kind": {}},
        "history": {"size": 2 * EVENTS, "ttl": "10m", "initial_scan": 3},
    },
}


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.close()


class Meter:
    """Bytes Redis sent to all its clients since the last :meth:`delta`."""

    def __init__(self, url: str) -> None:
        self.admin = aioredis.Redis.from_url(url)
        self.mark = 0

    async def sent(self) -> int:
        return int((await self.admin.info("stats"))["total_net_output_bytes"])

    async def start(self) -> None:
        self.mark = await self.sent()

    async def delta(self) -> int:
        now = await self.sent()
        delta, self.mark = now - self.mark, now
        return delta

    async def close(self) -> None:
        await self.admin.aclose()


async def fill(realtime: Any, channel: str, kind: str = "a") -> str:
    """Publish EVENTS events of ~20 KB; returns the newest id."""
    last = ""
    for i in range(EVENTS):
        result = await realtime.publish(channel, "t", {"i": i, "kind": kind, "blob": BLOB})
        last = result.id
    return last


async def test_redis_resume_that_cannot_succeed_reads_none_of_the_history(
    own_redis: RedisServer, serve: Any
) -> None:
    """``?since=`` with another epoch (the issue: 20 MB per handshake), with an offset
    beyond the newest, with an old offset whose events are trimmed, and in a
    ``subscribe`` message: Redis sends next to nothing. A resume that succeeds still
    reads (and replays) exactly the missed events."""
    realtime = make_realtime(backplane=own_redis.url, redis={"prefix": "b"}, channels=CHANNELS)
    server = await serve(realtime)
    newest = EventId.parse(await fill(realtime, "big"))
    epoch = newest.epoch
    meter = Meter(own_redis.url)
    try:
        await meter.start()

        async def handshake(since: str, recovered: bool) -> int:
            async with server.connect(f"/ws/big?since={since}") as ws:
                hello = await recv_until(ws, "connection_established")
                assert hello["data"]["recovered"] == {"big": recovered}
                if recovered:  # the last 10 events are replayed
                    got = [await recv_json(ws) for _ in range(newest.offset - 990)]
                    assert [m["data"]["i"] for m in got] == list(range(990, EVENTS))
                await no_message(ws, 0.1)
                return await meter.delta()

        await meter.delta()
        foreign = await handshake("zzzzzz:0", False)
        assert foreign < SMALL, f"a foreign epoch made Redis send {foreign} bytes"
        future = await handshake(f"{epoch}:{newest.offset + 5000}", False)
        assert future < SMALL, f"an offset from the future made Redis send {future} bytes"
        # Counted for real: a resume that succeeds reads the 10 events it replays.
        resumed = await handshake(f"{epoch}:990", True)
        assert 10 * len(BLOB) < resumed < 10 * len(BLOB) + SMALL, resumed

        # The first 100 events trimmed (exactly: XTRIM =): a resume from the start
        # cannot succeed, and reads none of the 900 still kept.
        await meter.admin.xtrim("b:big:stream", maxlen=EVENTS - 100, approximate=False)
        await meter.delta()
        trimmed = await handshake(f"{epoch}:0", False)
        assert trimmed < SMALL, f"a trimmed resume made Redis send {trimmed} bytes"

        # The same through a subscribe message on the general route, with positions.
        async with server.connect("/ws") as ws:
            await recv_until(ws, "connection_established")
            await meter.delta()
            for since in ("zzzzzz:0", f"{epoch}:0", f"{epoch}:99999999"):
                message = {
                    "type": "subscribe",
                    "channels": ["big"],
                    "since": {"big": since},
                    "positions": True,
                }
                await ws.send(json.dumps(message))
                reply = await recv_until(ws, "subscribed")
                assert reply["data"]["recovered"] == {"big": False}
                assert reply["data"]["positions"] == {"big": str(newest)}
                sent = await meter.delta()
                assert sent < SMALL, f"subscribe with since {since} made Redis send {sent} bytes"
    finally:
        await meter.close()


async def test_redis_initial_last_reads_at_most_initial_scan_events(
    own_redis: RedisServer, serve: Any
) -> None:
    """``initial: last`` with a filter that matches none of 1,000 events of 20 KB (the
    issue: 20 MB read and decoded per subscribe): Redis sends the newest
    ``initial_scan`` (3) events, on connect and on a subscribe message. A match among
    them is found; one older than them is not."""
    realtime = make_realtime(backplane=own_redis.url, redis={"prefix": "b"}, channels=CHANNELS)
    server = await serve(realtime)
    await realtime.publish("state", "t", {"kind": "old"})  # behind 1,000 others
    await fill(realtime, "state")
    meter = Meter(own_redis.url)
    try:
        await meter.start()
        async with server.connect("/ws/state?kind=none") as ws:
            await recv_until(ws, "connection_established")
            await no_message(ws, 0.1)  # no initial_state: nothing matches
            on_connect = await meter.delta()
        assert on_connect < SMALL, f"initial: last made Redis send {on_connect} bytes"

        async with server.connect("/ws/state?kind=old") as ws:
            await recv_until(ws, "connection_established")
            await no_message(ws, 0.1)  # older than the newest initial_scan events
        await meter.delta()

        async with server.connect("/ws") as ws:
            await recv_until(ws, "connection_established")
            await meter.delta()
            subscribe = {"type": "subscribe", "channels": ["state"], "filter": {"kind": "none"}}
            await ws.send(json.dumps(subscribe))
            await recv_until(ws, "subscribed")
            await no_message(ws, 0.1)
            on_subscribe = await meter.delta()
            assert on_subscribe < SMALL, f"subscribe made Redis send {on_subscribe} bytes"

        await realtime.publish("state", "t", {"kind": "b", "n": 1})
        await realtime.publish("state", "t", {"kind": "a", "n": 2})
        await realtime.publish("state", "t", {"kind": "a", "n": 3})
        async with server.connect("/ws/state?kind=b") as ws:  # the third newest
            await recv_until(ws, "connection_established")
            initial = await recv_json(ws)
            assert initial["type"] == "initial_state" and initial["data"] == {"kind": "b", "n": 1}
    finally:
        await meter.close()


class _Local:
    """The least a backplane needs from a hub."""

    def deliver(self, event: Event) -> int:
        return 0

    def report_loss(self, channel: str, count: int | None, reason: str) -> None:
        pass

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        return {}


async def test_redis_resume_of_expired_events_reads_none_of_them(own_redis: RedisServer) -> None:
    """Events still in the stream but older than ``history.ttl`` (a quiet channel keeps
    ``size`` events for longer than ``ttl``): the script sees the first one expired and
    reads none. The clock is the backplane's (events are stamped with it too)."""
    now = [1_000_000.0]
    backplane = RedisBackplane(
        own_redis.url,
        {"c": HistoryConfig(size=1000, ttl=60.0)},
        prefix="x",
        clock=lambda: now[0],
    )
    backplane.attach(_Local())
    await backplane.start()
    meter = Meter(own_redis.url)
    try:
        events = []
        for i in range(200):
            event, _ = await backplane.publish(
                "c", "t", {"i": i, "b": BLOB}, user_id=None, role=None
            )
            events.append(event)
            now[0] += 0.1
        start = EventId(events[0].id.epoch, 0)
        await meter.start()
        replay = await backplane.since("c", start)  # 20 s old: within the ttl
        assert replay is not None and len(replay) == 200
        assert await meter.delta() > 200 * len(BLOB)
        now[0] += 50.0  # the first events are older than 60 s, the last ones not
        assert await backplane.since("c", start) is None
        expired = await meter.delta()
        assert expired < SMALL, f"an expired resume made Redis send {expired} bytes"
        tail = await backplane.since("c", events[-3].id)  # still within the ttl
        assert tail is not None and [e.offset for e in tail] == [199, 200]
    finally:
        await meter.close()
        await backplane.stop()


async def test_memory_initial_last_looks_at_most_initial_scan_events(serve: Any) -> None:
    """The memory backplane: a match among the newest ``initial_scan`` (3) events is
    the ``initial_state``; one older than them is not looked at."""
    realtime = make_realtime(channels=CHANNELS)
    server = await serve(realtime)
    await realtime.publish("state", "t", {"kind": "a", "n": 1})
    for n in range(2, 5):
        await realtime.publish("state", "t", {"kind": "b", "n": n})
    async with server.connect("/ws/state?kind=a") as ws:  # the fourth newest: not found
        await recv_until(ws, "connection_established")
        await no_message(ws, 0.1)
    await realtime.publish("state", "t", {"kind": "a", "n": 5})
    await realtime.publish("state", "t", {"kind": "c", "n": 6})
    await realtime.publish("state", "t", {"kind": "c", "n": 7})
    async with server.connect("/ws/state?kind=a") as ws:  # the third newest: found
        await recv_until(ws, "connection_established")
        initial = await recv_json(ws)
        assert initial["type"] == "initial_state" and initial["data"] == {"kind": "a", "n": 5}

    looked: list[int] = []

    def match(event: Event) -> bool:
        looked.append(event.data["n"])
        return False

    assert await realtime.hub.backplane.last("state", match) is None
    assert looked == [7, 6, 5]  # newest first, initial_scan of them
