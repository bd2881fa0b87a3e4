"""One contract, every backplane: the memory backplane and the Redis backplane (against
the machine's real Redis) must behave the same for ids, history, delivery and tickets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sanic_realtime.backplanes.base import Backplane
from sanic_realtime.backplanes.memory import MemoryBackplane
from sanic_realtime.config import HistoryConfig
from sanic_realtime.events import Event, EventId, encode_event, encode_event_parts

from .redis_support import delete_prefix, new_prefix, redis_url

HISTORIES = {
    "logs": HistoryConfig(size=1000, ttl=600.0, initial_scan=1000),
    "small": HistoryConfig(size=10, ttl=600.0),
    "short": HistoryConfig(size=100, ttl=0.3),
    "none": HistoryConfig(size=0, ttl=600.0),
    "scan": HistoryConfig(size=1000, ttl=600.0, initial_scan=5),
}


class Recorder:
    """A stand-in for the hub: records what the backplane hands over."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.losses: list[tuple[str, int | None, str]] = []
        self.disconnects: list[tuple[str | None, str | None, str]] = []
        self.arrived = asyncio.Event()

    def deliver(self, event: Event) -> int:
        self.events.append(event)
        self.arrived.set()
        return 1

    def report_loss(self, channel: str, count: int | None, reason: str) -> None:
        self.losses.append((channel, count, reason))

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        self.disconnects.append((user_id, role, reason))
        return 0

    def stats(self) -> dict[str, Any]:
        return {"total_clients": 1, "by_channel": {"logs": 1}, "uptime_s": 1.0}

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Event]:
        async with asyncio.timeout(timeout):
            while len(self.events) < n:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Backplane, Recorder]]:
    recorder = Recorder()
    backplane: Backplane
    if request.param == "memory":
        backplane = MemoryBackplane(HISTORIES, epoch="ep01")
        backplane.attach(recorder)
        await backplane.start()
        yield backplane, recorder
        await backplane.stop()
        return
    from sanic_realtime.backplanes.redis import RedisBackplane

    url, prefix = redis_url(), new_prefix()
    backplane = RedisBackplane(url, HISTORIES, prefix=prefix)
    backplane.attach(recorder)
    await backplane.start()
    try:
        yield backplane, recorder
    finally:
        await backplane.stop()
        await delete_prefix(url, prefix)


async def listen(backplane: Backplane, channel: str) -> None:
    backplane.watch(channel)
    await backplane.ready(channel)


async def publish(backplane: Backplane, channel: str, n: int, start: int = 0) -> list[Event]:
    out = []
    for i in range(start, start + n):
        event, _ = await backplane.publish(channel, "tick", {"i": i}, user_id=None, role=None)
        out.append(event)
    return out


def test_envelope_parts_make_the_envelope() -> None:
    """The Redis script splices the id between two parts; the result is the envelope."""
    head, tail = encode_event_parts("logs", "log_update", "2026-11-22T10:00:00.000Z", {"a": [1]})
    expected = encode_event("logs", "log_update", "k3:7", "2026-11-22T10:00:00.000Z", {"a": [1]})
    assert head + b"k3:7" + tail == expected


async def test_ids_increase_and_every_event_is_delivered_once_in_order(
    pair: tuple[Backplane, Recorder],
) -> None:
    backplane, recorder = pair
    await listen(backplane, "logs")
    events = await publish(backplane, "logs", 50)
    assert [e.offset for e in events] == list(range(1, 51))
    assert len({e.id.epoch for e in events}) == 1
    delivered = await recorder.wait_for(50)
    await asyncio.sleep(0.1)  # nothing more arrives (no duplicate through pub/sub)
    assert [e.id for e in recorder.events] == [e.id for e in events]
    assert [e.payload for e in delivered] == [e.payload for e in events]
    assert delivered[0].data == {"i": 0} and delivered[0].type == "tick"


async def test_concurrent_publishers_keep_order(pair: tuple[Backplane, Recorder]) -> None:
    """Publishes racing on one channel: ids distinct and increasing in delivery order."""
    backplane, recorder = pair
    await listen(backplane, "logs")
    results = await asyncio.gather(
        *(backplane.publish("logs", "t", {"i": i}, user_id=None, role=None) for i in range(40))
    )
    await recorder.wait_for(40)
    offsets = [e.offset for e in recorder.events]
    assert offsets == list(range(1, 41))
    assert sorted(event.offset for event, _ in results) == offsets
    assert all(recipients == 1 for _, recipients in results)


async def test_since_is_all_or_nothing(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    events = await publish(backplane, "logs", 5)
    epoch = events[0].id.epoch
    replay = await backplane.since("logs", events[1].id)
    assert replay is not None
    assert [e.id for e in replay] == [e.id for e in events[2:]]
    assert [e.payload for e in replay] == [e.payload for e in events[2:]]
    assert await backplane.since("logs", events[-1].id) == []
    assert await backplane.since("logs", EventId(epoch, 0)) is not None
    assert await backplane.since("logs", EventId(epoch, 6)) is None  # from the future
    assert await backplane.since("logs", EventId("other", 1)) is None  # another epoch
    assert await backplane.since("small", EventId("x", 0)) is None  # nothing published yet


async def test_since_refuses_what_history_no_longer_holds(
    pair: tuple[Backplane, Recorder],
) -> None:
    """size: the stream is trimmed (approximately, for Redis: MAXLEN ~), never partially
    replayed; the newest events stay recoverable."""
    backplane, _ = pair
    events = await publish(backplane, "small", 250)
    assert await backplane.since("small", events[0].id) is None
    replay = await backplane.since("small", events[-6].id)
    assert replay is not None and [e.offset for e in replay] == [246, 247, 248, 249, 250]


async def test_since_refuses_expired_history(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    events = await publish(backplane, "short", 2)
    assert await backplane.since("short", events[0].id) is not None
    await asyncio.sleep(0.5)  # ttl 0.3 s
    assert await backplane.since("short", events[0].id) is None
    assert await backplane.since("short", events[1].id) == []  # nothing missed


async def test_no_history_still_gives_ids(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    events = await publish(backplane, "none", 3)
    assert [e.offset for e in events] == [1, 2, 3]
    assert await backplane.since("none", events[-1].id) == []
    assert await backplane.since("none", events[0].id) is None


async def test_last_finds_the_newest_match(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    assert await backplane.last("logs", lambda e: True) is None
    await publish(backplane, "logs", 230)
    newest = await backplane.last("logs", lambda e: True)
    assert newest is not None and newest.data == {"i": 229}
    old = await backplane.last("logs", lambda e: e.data["i"] == 3)  # beyond one page
    assert old is not None and old.offset == 4
    assert await backplane.last("logs", lambda e: False) is None


async def test_last_looks_at_most_initial_scan_events(pair: tuple[Backplane, Recorder]) -> None:
    """``last`` reads the newest ``history.initial_scan`` (5) events, newest first, and no
    more: a match among them is found, an older one is not (it is not even looked at)."""
    backplane, _ = pair
    await publish(backplane, "scan", 20)
    looked: list[int] = []

    def match(want: int) -> Callable[[Event], bool]:
        def matches(event: Event) -> bool:
            looked.append(event.data["i"])
            return bool(event.data["i"] == want)

        return matches

    found = await backplane.last("scan", match(15))  # the fifth newest
    assert found is not None and found.offset == 16
    assert looked == [19, 18, 17, 16, 15]
    looked.clear()
    assert await backplane.last("scan", match(14)) is None  # the sixth newest
    assert looked == [19, 18, 17, 16, 15]


def ids(events: list[Event] | None) -> list[EventId] | None:
    return None if events is None else [e.id for e in events]


async def test_position_is_where_since_gives_every_later_event(
    pair: tuple[Backplane, Recorder],
) -> None:
    """``position`` is the newest id (offset 0 before the first event, where the Redis
    backplane, which makes the epoch at the first publish, cannot tell: None); ``since``
    it gives exactly the events published after it."""
    backplane, _ = pair
    before = await backplane.position("logs")
    if isinstance(backplane, MemoryBackplane):
        assert before == EventId("ep01", 0)
    else:
        assert before is None
    first = await publish(backplane, "logs", 3)
    at = await backplane.position("logs")
    assert at == first[-1].id
    if before is not None:
        assert ids(await backplane.since("logs", before)) == ids(first)
    later = await publish(backplane, "logs", 2)
    assert ids(await backplane.since("logs", at)) == ids(later)
    assert await backplane.position("logs") == later[-1].id


async def test_unencodable_data_uses_no_id(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    with pytest.raises(TypeError):
        await backplane.publish("logs", "t", {"x": object()}, user_id=None, role=None)
    event, _ = await backplane.publish("logs", "t", None, user_id=None, role=None)
    assert event.offset == 1


async def test_targets_travel_with_the_event(pair: tuple[Backplane, Recorder]) -> None:
    backplane, recorder = pair
    await listen(backplane, "logs")
    event, _ = await backplane.publish("logs", "t", {}, user_id="u1", role="admin")
    (delivered,) = await recorder.wait_for(1)
    assert (delivered.user_id, delivered.role) == ("u1", "admin")
    (replayed,) = await backplane.since("logs", EventId(event.id.epoch, 0)) or []
    assert (replayed.user_id, replayed.role) == ("u1", "admin")


async def test_tickets_are_single_use_and_expire(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    await backplane.put_ticket("t1", b"identity", 5.0)
    takes = await asyncio.gather(*(backplane.take_ticket("t1") for _ in range(5)))
    assert sorted(takes, key=lambda v: v is None) == [b"identity"] + [None] * 4
    await backplane.put_ticket("t2", b"x", 0.1)
    await asyncio.sleep(0.3)
    assert await backplane.take_ticket("t2") is None
    assert await backplane.take_ticket("never") is None


async def test_stats_include_this_worker(pair: tuple[Backplane, Recorder]) -> None:
    backplane, _ = pair
    stats = await backplane.stats()
    assert stats["workers"] == 1 and stats["total_clients"] == 1
    assert stats["by_channel"] == {"logs": 1}


async def test_a_channel_can_be_left_and_joined_again(pair: tuple[Backplane, Recorder]) -> None:
    backplane, recorder = pair
    await listen(backplane, "logs")
    backplane.unwatch("logs")
    await listen(backplane, "logs")
    events = await publish(backplane, "logs", 3)
    await recorder.wait_for(3)
    await asyncio.sleep(0.1)
    assert [e.id for e in recorder.events] == [e.id for e in events]


async def test_redis_subscribes_only_to_channels_in_use() -> None:
    """One pub/sub subscription per channel with local subscribers, none for the others."""
    import redis.asyncio as aioredis

    from sanic_realtime.backplanes.redis import RedisBackplane

    url, prefix = redis_url(), new_prefix()
    backplane = RedisBackplane(url, HISTORIES, prefix=prefix)
    recorder = Recorder()
    backplane.attach(recorder)
    await backplane.start()
    admin = aioredis.Redis.from_url(url)

    async def subscribed() -> list[str]:
        names = await admin.pubsub_channels(f"{prefix}:ch:*")
        return sorted(n.decode().rpartition(":")[2] for n in names)

    try:
        await listen(backplane, "logs")
        await listen(backplane, "small")
        assert await subscribed() == ["logs", "small"]
        await publish(backplane, "none", 1)  # published, but nobody here listens
        assert recorder.events == []
        backplane.unwatch("small")
        for _ in range(100):  # the UNSUBSCRIBE is sent by a task of the backplane
            if await subscribed() == ["logs"]:
                break
            await asyncio.sleep(0.05)
        assert await subscribed() == ["logs"]
    finally:
        await admin.aclose()
        await backplane.stop()
        await delete_prefix(url, prefix)
