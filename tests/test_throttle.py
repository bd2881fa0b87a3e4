"""Per-subscription throttling (``throttle`` on a channel, ``?interval=`` from a client):
at most one event per key per interval, always the latest, in publish order."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from sanic_realtime.config import FilterSpec, ThrottleConfig, parse_config
from sanic_realtime.exceptions import BadFilterValue, ConfigError, UnknownFilter
from sanic_realtime.filters import compile_filter
from sanic_realtime.subscriptions import plan_subscription

from .conftest import BASE, make_realtime, no_message, recv_json, recv_until

THROTTLE = ThrottleConfig(min=0.1, max=10.0, key="window")
STATS = {
    "initial": "none",
    "filters": {"window": {}},
    "throttle": {"min": "100ms", "max": "10s", "key": "window"},
}


def stats_realtime(**throttle: Any) -> Any:
    channels = {
        **BASE["channels"],
        "stats": {**STATS, "throttle": {**STATS["throttle"], **throttle}},
    }
    return make_realtime(channels=channels)


# --------------------------------------------------------------------------- pure


def test_interval_values_and_bounds() -> None:
    specs = {"window": FilterSpec()}
    for value, seconds in [("2s", 2.0), ("500ms", 0.5), ("2", 2.0), (3, 3.0), ("0.25", 0.25)]:
        f = compile_filter("stats", specs, {"interval": value}, THROTTLE)
        assert f is not None and f.interval == seconds, value
        assert f.matches("stats_update", {})  # a rate, not a condition
    for bad in ("fast", "50ms", "11s", "-1", True, "nan"):
        with pytest.raises(BadFilterValue) as info:
            compile_filter("stats", specs, {"interval": bad}, THROTTLE)
        assert info.value.param == "interval"
        assert "between 0.1s and 10s" in info.value.message, bad
    # Without throttle the channel does not know the parameter.
    with pytest.raises(UnknownFilter) as unknown:
        compile_filter("logs", specs, {"interval": "1s"})
    assert "known: types, window" in unknown.value.message
    # Throttled subscriptions group apart from unthrottled ones, and by interval.
    plain = compile_filter("stats", specs, {"window": "5m"}, THROTTLE)
    slow = compile_filter("stats", specs, {"window": "5m", "interval": "5s"}, THROTTLE)
    assert plain is not None and slow is not None and plain.key != slow.key
    assert plain.interval == 0
    # A default interval applies to subscriptions that ask for none.
    default = ThrottleConfig(min=1.0, max=5.0, default=2.0)
    f = compile_filter("stats", specs, {}, default)
    assert f is not None and f.interval == 2.0 and f.conflation_key({"window": "1m"}) is None
    assert slow.conflation_key({"window": "1m"}) == "1m"
    assert slow.conflation_key({}) is None and slow.conflation_key({"window": [1]}) is None


def test_interval_goes_to_the_throttled_channels_of_a_subscription() -> None:
    config = parse_config({"channels": {**BASE["channels"], "stats": STATS}})
    plan = plan_subscription(config, ["logs", "stats"], {"interval": "1s", "level": "warn"}, {})
    by_channel = {req.channel: req.filter for req in plan}
    assert by_channel["stats"] is not None and by_channel["stats"].interval == 1.0
    assert by_channel["logs"] is not None and by_channel["logs"].interval == 0
    with pytest.raises(UnknownFilter) as info:
        plan_subscription(config, ["logs"], {"interval": "1s"}, {})
    assert info.value.param == "interval"


@pytest.mark.parametrize(
    ("throttle", "path", "message"),
    [
        ({"min": 0}, "realtime.channels.stats.throttle.min", "greater than 0"),
        ({"min": "5s", "max": "1s"}, "realtime.channels.stats.throttle.max", "at least min"),
        ({"default": "1h"}, "realtime.channels.stats.throttle.default", "between min and max"),
        ({"key": "a..b"}, "realtime.channels.stats.throttle.key", "not a field path"),
        ({"every": "1s"}, "realtime.channels.stats.throttle", "every"),
    ],
)
def test_bad_throttle_config_names_the_key(throttle: Any, path: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"channels": {"stats": {"throttle": throttle}}})
    assert path in str(info.value) and message in str(info.value)


def test_interval_is_a_reserved_filter_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"channels": {"stats": {"filters": {"interval": {}}}}})
    assert "reserved" in str(info.value)


# --------------------------------------------------------------------------- live


async def publish_burst(rt: Any, n: int, period: float) -> list[dict[str, Any]]:
    """``n`` stats updates alternating windows 1m and 5m, ``period`` seconds apart."""
    sent = []
    for i in range(n):
        data = {"window": "1m" if i % 2 == 0 else "5m", "n": i}
        result = await rt.publish("stats", "stats_update", data)
        sent.append({"id": result.id, **data})
        await asyncio.sleep(period)
    return sent


async def collect(ws: Any, until: float) -> list[tuple[float, dict[str, Any]]]:
    out = []
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return out
        try:
            message = await recv_json(ws, left)
        except TimeoutError:
            return out
        out.append((time.monotonic(), message))


async def test_at_most_one_event_per_key_per_interval_and_the_latest_last(serve: Any) -> None:
    server = await serve(stats_realtime())
    rt = server.realtime
    async with server.connect("/ws/stats?interval=400ms") as slow:
        await recv_until(slow, "connection_established")
        started = time.monotonic()
        sent, got = await asyncio.gather(
            publish_burst(rt, 60, 0.02), collect(slow, time.monotonic() + 2.5)
        )
    assert time.monotonic() - started < 4
    events = [(t, m) for t, m in got if m["type"] == "stats_update"]
    # Fewer events than published, ids increasing (publish order), and per window no two
    # closer than the interval (a little slack for timers).
    assert 4 <= len(events) < 20, len(events)
    ids = [m["id"] for _, m in events]
    assert ids == sorted(ids, key=lambda i: int(i.split(":")[1]))
    for window in ("1m", "5m"):
        times = [t for t, m in events if m["data"]["window"] == window]
        assert all(b - a >= 0.35 for a, b in itertools.pairwise(times)), (window, times)
        # The latest value of each window always arrives: nothing is stuck in the throttle.
        last_sent = [s for s in sent if s["window"] == window][-1]
        last_got = [m for _, m in events if m["data"]["window"] == window][-1]
        assert last_got["id"] == last_sent["id"] and last_got["data"]["n"] == last_sent["n"]
    # The first event goes out at once, not after an interval.
    assert events[0][1]["id"] == sent[0]["id"]


async def test_unthrottled_subscribers_get_everything_and_filters_still_apply(
    serve: Any,
) -> None:
    server = await serve(stats_realtime())
    rt = server.realtime
    async with (
        server.connect("/ws/stats") as full,
        server.connect("/ws/stats?window=5m&interval=300ms") as five,
    ):
        await recv_until(full, "connection_established")
        await recv_until(five, "connection_established")
        sent = await publish_burst(rt, 20, 0.01)
        everything = [await recv_json(full) for _ in sent]
        assert [m["id"] for m in everything] == [s["id"] for s in sent]
        got = [m for _, m in await collect(five, time.monotonic() + 1.0)]
    assert got and all(m["data"]["window"] == "5m" for m in got)
    assert got[-1]["id"] == [s for s in sent if s["window"] == "5m"][-1]["id"]
    assert len(got) <= 4


async def test_a_resume_replays_only_the_latest_per_key(serve: Any) -> None:
    server = await serve(stats_realtime())
    rt = server.realtime
    first = await rt.publish("stats", "stats_update", {"window": "1m", "n": 0})
    sent = await publish_burst(rt, 10, 0)
    async with server.connect(f"/ws/stats?interval=5s&since={first.id}") as ws:
        welcome = await recv_json(ws)
        assert welcome["data"]["recovered"] == {"stats": True}
        replay = [await recv_json(ws), await recv_json(ws)]
        assert [m["id"] for m in replay] == [sent[-2]["id"], sent[-1]["id"]]
        # The interval starts with the replay: the next event is held, then delivered.
        later = await rt.publish("stats", "stats_update", {"window": "1m", "n": 99})
        await no_message(ws, 0.3)
        assert later.recipients == 1


async def test_unsubscribe_drops_held_events(serve: Any) -> None:
    server = await serve(stats_realtime())
    rt = server.realtime
    async with server.connect("/ws?channels=stats&interval=1s") as ws:
        await recv_until(ws, "connection_established")
        await rt.publish("stats", "stats_update", {"window": "1m", "n": 1})
        assert (await recv_json(ws))["data"]["n"] == 1
        await rt.publish("stats", "stats_update", {"window": "1m", "n": 2})  # held
        await ws.send(json.dumps({"type": "unsubscribe", "channels": ["stats"]}))
        assert (await recv_json(ws))["type"] == "unsubscribed"
        await no_message(ws, 1.3)
        # Subscribing again starts afresh: the next event goes out at once.
        await ws.send(
            json.dumps({"type": "subscribe", "channels": ["stats"], "filter": {"interval": 2}})
        )
        assert (await recv_json(ws))["type"] == "subscribed"
        await rt.publish("stats", "stats_update", {"window": "1m", "n": 3})
        assert (await recv_json(ws))["data"]["n"] == 3


async def test_a_bad_interval_is_refused_naming_it(serve: Any) -> None:
    server = await serve(stats_realtime())
    for path, code in [
        ("/ws/stats?interval=1ms", "bad_filter_value"),
        ("/ws/logs?interval=1s", "unknown_filter"),
    ]:
        with pytest.raises(InvalidStatus) as info:
            async with server.connect(path):
                pass
        error = json.loads(info.value.response.body)["error"]
        assert info.value.response.status_code == 400
        assert error["code"] == code, error
        assert "interval" in error["message"]
    async with server.connect("/ws") as ws:
        await recv_until(ws, "connection_established")
        await ws.send(
            json.dumps({"type": "subscribe", "channels": ["stats"], "filter": {"interval": "x"}})
        )
        error = await recv_json(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "bad_filter_value")
