"""history.py, rooms.py, limits.py: the rest of the pure core."""

from __future__ import annotations

import pytest

from sanic_realtime.config import FilterSpec
from sanic_realtime.events import Event, EventId
from sanic_realtime.filters import compile_filter
from sanic_realtime.history import ChannelHistory
from sanic_realtime.limits import TokenBucket
from sanic_realtime.rooms import Rooms


def fill(history: ChannelHistory, n: int, start_time: float = 0.0) -> list[Event]:
    events = []
    for i in range(n):
        event = Event("c", "t", history.next_id(), start_time + i, {"i": i})
        history.append(event)
        events.append(event)
    return events


def test_ids_increase_by_one() -> None:
    """Offsets start at 1 and grow by one; the epoch is the history's."""
    history = ChannelHistory("ep", 10, 60)
    events = fill(history, 3)
    assert [str(e.id) for e in events] == ["ep:1", "ep:2", "ep:3"]
    with pytest.raises(ValueError, match="not the next id"):
        history.append(events[0])


def test_since_replays_exactly_the_missed_events() -> None:
    """since(n) gives the events after n, none when up to date."""
    history = ChannelHistory("ep", 10, 60)
    events = fill(history, 5)
    assert history.since(EventId("ep", 2), now=5) == events[2:]
    assert history.since(EventId("ep", 0), now=5) == events
    assert history.since(EventId("ep", 5), now=5) == []


def test_since_is_all_or_nothing() -> None:
    """When history no longer reaches back, the answer is None, not a partial list."""
    history = ChannelHistory("ep", 3, 60)
    events = fill(history, 5)  # keeps 3, 4, 5
    assert history.since(EventId("ep", 2), now=5) == events[2:]
    assert history.since(EventId("ep", 1), now=5) is None


def test_since_other_epoch_or_future_is_not_recoverable() -> None:
    """Ids of another run, or ahead of this history, are never replayed against."""
    history = ChannelHistory("ep", 10, 60)
    fill(history, 3)
    assert history.since(EventId("old", 1), now=3) is None
    assert history.since(EventId("ep", 4), now=3) is None


def test_ttl_expires_events() -> None:
    """Events older than ttl are gone; resuming from before them is not recoverable."""
    history = ChannelHistory("ep", 10, ttl=10)
    events = fill(history, 5, start_time=100)  # times 100..104
    assert history.since(EventId("ep", 1), now=109) == events[1:]
    assert history.since(EventId("ep", 1), now=112) is None  # 100..102 expired
    assert history.since(EventId("ep", 3), now=112) == events[3:]
    assert history.since(EventId("ep", 5), now=1000) == []  # up to date, nothing lost


def test_size_zero_keeps_nothing_but_still_counts() -> None:
    """With no history, ids still grow; only an up-to-date client recovers."""
    history = ChannelHistory("ep", 0, 60)
    fill(history, 2)
    assert history.top == 2
    assert history.since(EventId("ep", 2), now=2) == []
    assert history.since(EventId("ep", 1), now=2) is None


def test_last_matching() -> None:
    """last() finds the newest kept event that matches."""
    history = ChannelHistory("ep", 10, 60)
    events = fill(history, 4)
    assert history.last(lambda e: e.data["i"] % 2 == 0, now=4) is events[2]
    assert history.last(lambda e: False, now=4) is None


def test_rooms_group_by_filter() -> None:
    """Subscribers with equal filters share a group; re-adding replaces the filter."""
    specs = {"level": FilterSpec(op="min", order=["a", "b"])}
    fa = compile_filter("c", specs, {"level": "a"})
    fb = compile_filter("c", specs, {"level": "b"})
    fa2 = compile_filter("c", specs, {"level": "a"})
    rooms: Rooms[str] = Rooms()
    rooms.add("s1", "c", fa)
    rooms.add("s2", "c", fa2)
    rooms.add("s3", "c", None)
    room = rooms.get("c")
    assert room is not None and len(room) == 3 and len(room.groups) == 2
    rooms.add("s2", "c", fb)
    assert len(room) == 3 and len(room.groups) == 3
    assert room.filter_of("s2") is fb
    assert rooms.counts() == {"c": 3}


def test_rooms_remove_cleans_up() -> None:
    """Empty groups and rooms disappear; removing twice is harmless."""
    rooms: Rooms[str] = Rooms()
    rooms.add("s1", "c", None)
    assert rooms.remove("s1", "c")
    assert not rooms.remove("s1", "c")
    assert rooms.get("c") is None
    assert not rooms.remove("s1", "other")


def test_token_bucket() -> None:
    """Bursts up to capacity, then capacity/per per second."""
    bucket = TokenBucket(3, per=1.0, now=0.0)
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.allow(0.2)  # 0.6 tokens
    assert bucket.allow(0.4)  # 1.2 tokens
    assert not bucket.allow(0.4)
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]
