"""hub/throttle.py without a hub: a fake clock and a recording enqueue stand in for the
loop's time and the outbox (the live behaviour is in tests/test_throttle.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sanic_realtime.config import FilterSpec, ThrottleConfig
from sanic_realtime.events import Event, EventId
from sanic_realtime.filters import Filter, compile_filter
from sanic_realtime.hub.connection import Connection
from sanic_realtime.hub.throttle import Throttle, Throttler, conflate

from .fakes import FakeSocket, parse_frames

THROTTLE = ThrottleConfig(min=0.1, max=10.0, key="window")


def throttled(interval: str = "1s") -> Filter:
    f = compile_filter("stats", {"window": FilterSpec()}, {"interval": interval}, THROTTLE)
    assert f is not None and f.interval
    return f


def ev(offset: int, window: str = "1m", **kw: Any) -> Event:
    return Event("stats", "s", EventId("ep", offset), 0.0, {"window": window, "n": offset}, **kw)


class Rig:
    """A Throttler with a fake clock; ``sent`` holds the offsets enqueued, in order."""

    def __init__(self, limit: int = 100) -> None:
        self.now = 0.0
        self.sent: list[tuple[str, int]] = []
        self.throttler = Throttler(self.enqueue, limit, lambda: self.now)
        self.conn = Connection("c", FakeSocket(), None, 0.0)
        self.conn.channels["stats"] = None
        self.members = {self.conn: None}

    def enqueue(self, conn: Connection, channel: str, frame: bytes) -> bool:
        (payload,) = parse_frames(frame)
        self.sent.append((conn.id, json.loads(payload)["data"]["n"]))
        return True

    def deliver(self, f: Filter, event: Event) -> int:
        return self.throttler.deliver(self.members, f, event, targeted=False)

    @property
    def state(self) -> Throttle:
        assert self.conn.throttles is not None
        return self.conn.throttles["stats"]


def test_conflate_keeps_the_newest_per_key_in_publish_order() -> None:
    events = [ev(1, "1m"), ev(2, "5m"), ev(3, "1m"), ev(4, "1h"), ev(5, "5m")]
    kept = conflate(events, lambda data: data["window"])
    assert [e.offset for e in kept] == [3, 4, 5]
    assert [e.offset for e in conflate(events, lambda data: None)] == [5]
    assert conflate([], lambda data: None) == []


async def test_first_event_goes_at_once_then_the_latest_per_key_after_the_interval() -> None:
    rig = Rig()
    f = throttled("1s")
    assert rig.deliver(f, ev(1, "1m")) == 1
    assert rig.sent == [("c", 1)]
    rig.now = 0.2
    for n, window in [(2, "1m"), (3, "5m"), (4, "1m")]:  # held; 4 replaces 2
        assert rig.deliver(f, ev(n, window)) == 1
    assert rig.sent == [("c", 1)]
    assert [e.offset for e in rig.state.pending.values()] == [3, 4]  # publish order
    timer = rig.state.timer
    assert timer is not None
    # The release is due when the interval since the last send has passed.
    loop_delay = timer.when() - asyncio.get_running_loop().time()
    assert 0.7 < loop_delay <= 0.8
    rig.now = 1.0
    rig.throttler.release(rig.conn, "stats")
    assert rig.sent == [("c", 1), ("c", 3), ("c", 4)]
    assert rig.state.timer is None and not rig.state.pending and rig.state.last == 1.0
    timer.cancel()


async def test_more_keys_held_than_the_limit_are_released_at_once() -> None:
    rig = Rig(limit=2)
    f = throttled("1s")
    rig.deliver(f, ev(1, "a"))
    for n, window in [(2, "b"), (3, "c")]:
        rig.deliver(f, ev(n, window))
    assert rig.sent == [("c", 1)]
    rig.deliver(f, ev(4, "d"))  # a third key: over the limit
    assert rig.sent == [("c", 1), ("c", 2), ("c", 3), ("c", 4)]
    assert rig.state.timer is None


async def test_forget_drops_the_held_events_and_the_timer() -> None:
    rig = Rig()
    f = throttled("1s")
    rig.deliver(f, ev(1))
    rig.deliver(f, ev(2))
    timer = rig.state.timer
    assert timer is not None
    rig.throttler.forget(rig.conn, "stats")
    assert rig.conn.throttles is None and timer.cancelled()
    rig.throttler.release(rig.conn, "stats")  # a timer that fired anyway: nothing
    assert rig.sent == [("c", 1)]


async def test_release_after_leaving_or_closing_sends_nothing() -> None:
    for leave in (lambda c: c.channels.clear(), lambda c: c.begin_closing()):
        rig = Rig()
        f = throttled("1s")
        rig.deliver(f, ev(1))
        rig.deliver(f, ev(2))
        leave(rig.conn)
        rig.throttler.release(rig.conn, "stats")
        assert rig.sent == [("c", 1)]
        assert not rig.state.pending


async def test_closing_and_untargeted_connections_are_skipped() -> None:
    rig = Rig()
    f = throttled("1s")
    rig.conn.begin_closing()
    assert rig.deliver(f, ev(1)) == 0
    rig = Rig()
    targeted = ev(2, user_id="someone")
    assert rig.throttler.deliver(rig.members, f, targeted, targeted=True) == 0
    assert rig.sent == [] and rig.conn.throttles is None


def test_a_resume_gets_the_latest_per_key_and_starts_the_interval() -> None:
    rig = Rig()
    rig.now = 42.0
    f = throttled("5s")
    events = [ev(1, "1m"), ev(2, "5m"), ev(3, "1m")]
    assert [e.offset for e in rig.throttler.resume(rig.conn, "stats", f, events)] == [2, 3]
    assert rig.state.last == 42.0 and not rig.state.pending
