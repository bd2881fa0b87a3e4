"""The hub (sanic_realtime/hub/) with a recording socket: fan-out, buffers, policies, resume,
liveness."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from sanic_realtime.auth import Identity
from sanic_realtime.backplanes.memory import MemoryBackplane
from sanic_realtime.config import parse_config
from sanic_realtime.events import EventId
from sanic_realtime.exceptions import ServerUnavailable, TooManyRequests, UnknownChannel
from sanic_realtime.filters import Filter, compile_filter
from sanic_realtime.hub import LINGER_ITERATIONS, Connection, Hub
from sanic_realtime.hub import core as hub_module
from sanic_realtime.protocol import Pong, PongData
from sanic_realtime.subscriptions import SubRequest

from .conftest import BASE
from .fakes import FakeSocket


def make_hub(*, monotonic: Callable[[], float] = time.monotonic, **overrides: Any) -> Hub:
    config = parse_config({**BASE, **overrides})
    histories = {name: config.history_for(name) for name in config.channels}
    return Hub(config, MemoryBackplane(histories, epoch="ep"), monotonic=monotonic)


async def slow_subscription(
    hub: Hub, since: EventId | None = None, state: Any = None
) -> tuple[Connection, FakeSocket, asyncio.Event, asyncio.Task[None]]:
    """Start subscribing a new connection to logs, with an initial_state hook that waits
    for the returned gate (and then returns ``state``)."""
    gate = asyncio.Event()

    async def slow_hook(params: Any) -> Any:
        await gate.wait()
        return state

    socket = FakeSocket()
    conn = hub.register(socket)
    task = asyncio.create_task(
        hub.subscribe(conn, [SubRequest("logs", None, since)], hooks={"logs": slow_hook})
    )
    await settle()
    return conn, socket, gate, task


def pong(hub: Hub) -> Pong:
    """A control message, as the session sends one."""
    return Pong(timestamp=hub.timestamp(), data=PongData(client_id="c", timestamp="t"))


async def joined(
    hub: Hub,
    channel: str = "logs",
    socket: FakeSocket | None = None,
    filter: Filter | None = None,
    **kw: Any,
) -> tuple[Connection, FakeSocket]:
    socket = socket or FakeSocket()
    conn = hub.register(socket, **kw)
    await hub.subscribe(conn, [SubRequest(channel, filter)])
    return conn, socket


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_first_fan_out_of_an_iteration_is_written_at_once_later_ones_coalesce() -> None:
    """One event per loop iteration costs one write per connection, as broadcast() does;
    several events in one iteration still go out in one write per connection."""
    hub = make_hub()
    conn, socket = await joined(hub)
    await settle()
    before = socket.writes
    await hub.publish("logs", "log", {"i": 0})
    assert socket.writes == before + 1 and not conn.queue  # written, nothing queued
    await hub.publish("logs", "log", {"i": 1})
    await hub.publish("logs", "log", {"i": 2})
    assert socket.writes == before + 1 and len(conn.queue) == 2
    await settle()
    assert socket.writes == before + 2
    assert [e["data"]["i"] for e in socket.events()] == [0, 1, 2]
    assert hub.stats()["messages_sent"] == 4  # subscribed reply + 3 events


async def test_back_to_back_events_are_coalesced_and_an_isolated_one_is_not() -> None:
    """Events arriving one per loop iteration (a burst from a yielding publisher) share
    writes; no frame waits more than LINGER_ITERATIONS + 1 iterations; once the burst
    ends, the next event is written at once again."""
    hub = make_hub()
    conn, socket = await joined(hub)
    await settle()
    before = socket.writes
    for i in range(40):
        await hub.publish("logs", "log", {"i": i})
        await asyncio.sleep(0)  # one event per loop iteration
        assert len(conn.queue) <= LINGER_ITERATIONS + 1
    await settle()
    assert not conn.queue
    assert socket.writes - before <= 40 // 2  # at least two frames per write on average
    assert [e["data"]["i"] for e in socket.events()] == list(range(40))
    before = socket.writes
    await hub.publish("logs", "log", {"i": 40})
    assert socket.writes == before + 1 and not conn.queue  # not delayed
    assert hub.stats()["messages_sent"] == 42  # subscribed reply + 41 events


async def test_lingering_stops_at_linger_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no time to linger, a burst is still queued (not written per event) but each
    flush writes what is there without waiting for more."""
    monkeypatch.setattr(hub_module, "LINGER_SECONDS", 0.0)
    hub = make_hub()
    conn, socket = await joined(hub)
    await settle()
    for i in range(10):
        await hub.publish("logs", "log", {"i": i})
        await asyncio.sleep(0)
        assert not conn.queue
    await settle()
    assert [e["data"]["i"] for e in socket.events()] == list(range(10))


async def test_fan_out_in_order_with_one_frame_per_event() -> None:
    """Every subscriber gets every event in publish order; the frame is built once."""
    hub = make_hub()
    subs = [await joined(hub) for _ in range(3)]
    for i in range(50):
        await hub.publish("logs", "log", {"i": i})
    frames = [conn.queue[1][1] for conn, _ in subs]  # [0] is the subscribed reply
    assert frames[0] is frames[1] is frames[2]
    await settle()
    for _, socket in subs:
        assert [e["data"]["i"] for e in socket.events()] == list(range(50))
        assert socket.writes == 1  # everything queued in one iteration went in one write


async def test_publish_result_and_unknown_channel() -> None:
    """publish returns the id and the number of connections it was queued for."""
    hub = make_hub()
    await joined(hub)
    await joined(
        hub, filter=compile_filter("logs", hub.config.channels["logs"].filters, {"level": "error"})
    )
    result = await hub.publish("logs", "log", {"level": "info"})
    assert (result.channel, result.id, result.recipients) == ("logs", "ep:1", 1)
    assert (await hub.publish("logs", "log", {"level": "error"})).recipients == 2
    assert (await hub.publish("stats", "s", {})).recipients == 0
    with pytest.raises(UnknownChannel):
        await hub.publish("nope", "x", {})
    with pytest.raises(ValueError, match="non-empty string"):
        await hub.publish("logs", "", {})


async def test_filter_evaluated_once_per_distinct_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 subscribers over 2 distinct filters: 2 evaluations per event, not 100."""
    hub = make_hub()
    specs = hub.config.channels["logs"].filters
    for i in range(100):
        level = "warn" if i % 2 else "error"
        await joined(hub, filter=compile_filter("logs", specs, {"level": level}))
    calls = 0
    original = Filter.matches

    def counting(self: Filter, event_type: str, data: Any) -> bool:
        nonlocal calls
        calls += 1
        return original(self, event_type, data)

    monkeypatch.setattr(Filter, "matches", counting)
    result = await hub.publish("logs", "log", {"level": "warn"})
    assert calls == 2
    assert result.recipients == 50


async def test_slow_client_disconnect_never_blocks_others() -> None:
    """disconnect: a full buffer closes that client with 4008; others get everything."""
    hub = make_hub(buffer_size=4)
    slow_conn, slow = await joined(hub, socket=FakeSocket(writable=False))
    _, fast = await joined(hub)
    results = [await hub.publish("logs", "log", {"i": i}) for i in range(10)]
    await settle()
    assert slow.aborted_with is not None and slow.aborted_with[0] == 4008
    assert "slow consumer" in slow.aborted_with[1]
    assert slow_conn.id not in hub.connections
    assert [e["data"]["i"] for e in fast.events()] == list(range(10))
    # Queued for both while the slow buffer had room (4 events), then only for one.
    assert [r.recipients for r in results] == [2, 2, 2, 2, 1, 1, 1, 1, 1, 1]
    stats = hub.stats()
    assert stats["slow_disconnects"] == 1
    # The four events it had queued, and the one that found its buffer full.
    assert stats["messages_dropped"] == 5
    assert stats["total_clients"] == 1


async def test_drop_oldest_reports_the_loss_before_the_next_event() -> None:
    """drop_oldest: the oldest events go; the client is told how many, then gets the rest."""
    hub = make_hub(buffer_size=3, slow_client="drop_oldest")
    conn, socket = await joined(hub, socket=FakeSocket(writable=False))
    for i in range(6):
        assert (await hub.publish("logs", "log", {"i": i})).recipients == 1
    await settle()
    assert socket.written == b""
    socket.set_writable(True)
    await settle()
    messages = socket.messages()
    assert [m["type"] for m in messages] == ["subscribed", "messages_dropped", "log", "log", "log"]
    assert messages[1]["data"] == {"channel": "logs", "count": 3}
    assert [m["data"]["i"] for m in messages[2:]] == [3, 4, 5]
    assert hub.stats()["messages_dropped"] == 3
    assert conn.id in hub.connections


async def test_a_failing_socket_does_not_stop_fan_out() -> None:
    """A write that raises closes that connection (1011) and nobody else notices."""
    hub = make_hub()
    broken_conn, broken = await joined(hub)
    _, ok = await joined(hub)
    await settle()
    broken.fail_writes = True
    for i in range(3):
        await hub.publish("logs", "log", {"i": i})
    await settle()
    assert broken.aborted_with is not None and broken.aborted_with[0] == 1011
    assert broken_conn.id not in hub.connections
    assert [e["data"]["i"] for e in ok.events()] == [0, 1, 2]
    assert hub.stats()["messages_dropped"] == 3  # the batch that could not be written


async def test_targeted_events() -> None:
    """user_id reaches that user's connections, role that role's; either suffices."""
    hub = make_hub()
    _, alice1 = await joined(hub, identity=Identity(user_id="alice", roles=("user",)))
    _, alice2 = await joined(hub, identity=Identity(user_id="alice", roles=("user",)))
    _, bob = await joined(hub, identity=Identity(user_id="bob", roles=("admin",)))
    _, anon = await joined(hub)
    assert (await hub.publish("logs", "a", {}, user_id="alice")).recipients == 2
    assert (await hub.publish("logs", "b", {}, role="admin")).recipients == 1
    assert (await hub.publish("logs", "c", {}, user_id="alice", role="admin")).recipients == 3
    assert (await hub.publish("logs", "d", {})).recipients == 4
    await settle()
    assert [e["type"] for e in alice1.events()] == ["a", "c", "d"]
    assert [e["type"] for e in alice2.events()] == ["a", "c", "d"]
    assert [e["type"] for e in bob.events()] == ["b", "c", "d"]
    assert [e["type"] for e in anon.events()] == ["d"]


async def test_resume_during_slow_setup_has_no_gap_and_no_duplicate() -> None:
    """Events published while a subscription is being set up are held, then sent after
    the replay, each exactly once, in order."""
    hub = make_hub()
    for i in range(5):
        await hub.publish("logs", "log", {"i": i})  # ep:1..ep:5
    _, socket, gate, task = await slow_subscription(hub, EventId("ep", 2), {"snapshot": True})
    for i in range(5, 8):
        await hub.publish("logs", "log", {"i": i})  # arrive during set-up
    gate.set()
    await task
    await hub.publish("logs", "log", {"i": 8})
    await settle()
    messages = socket.messages()
    assert messages[0]["type"] == "subscribed"
    assert messages[0]["data"]["recovered"] == {"logs": True}
    # Recovered: no initial_state; then exactly events 3.. in order.
    assert [m["data"]["i"] for m in messages[1:]] == [2, 3, 4, 5, 6, 7, 8]
    assert [m["id"] for m in messages[1:]] == [f"ep:{n}" for n in range(3, 10)]


async def test_resume_not_recoverable_sends_nothing_partial() -> None:
    """Past the history: recovered false, no replay, initial state and live events only."""
    hub = make_hub(channels={"stats": {"initial": "last", "history": {"size": 2, "ttl": "1m"}}})
    for i in range(5):
        await hub.publish("stats", "s", {"i": i})
    conn = hub.register(FakeSocket())
    await hub.subscribe(conn, [SubRequest("stats", None, EventId("ep", 1))])
    await hub.publish("stats", "s", {"i": 5})
    await settle()
    socket = conn.socket
    assert isinstance(socket, FakeSocket)
    messages = socket.messages()
    assert messages[0]["data"]["recovered"] == {"stats": False}
    assert messages[1] == {
        **messages[1],
        "type": "initial_state",
        "channel": "stats",
        "data": {"i": 4},
    }
    assert [m["data"]["i"] for m in messages[2:]] == [5]


async def test_initial_last_respects_filters() -> None:
    """initial: last sends the newest event this subscriber's filter matches."""
    hub = make_hub(channels={"stats": {"initial": "last", "filters": {"window": {}}}})
    await hub.publish("stats", "s", {"window": "1m", "n": 1})
    await hub.publish("stats", "s", {"window": "5m", "n": 2})
    await hub.publish("stats", "s", {"window": "1h", "n": 3})
    f = compile_filter("stats", hub.config.channels["stats"].filters, {"window": "5m"})
    _, socket = await joined(hub, "stats", filter=f)
    await settle()
    assert socket.messages()[1]["data"] == {"window": "5m", "n": 2}


async def test_failing_hook_reports_and_keeps_subscription() -> None:
    """A hook that raises: an error message, and the subscription still works."""
    hub = make_hub()

    async def broken(params: Any) -> Any:
        raise RuntimeError("database down")

    conn = hub.register(FakeSocket())
    await hub.subscribe(conn, [SubRequest("logs", None)], hooks={"logs": broken})
    await hub.publish("logs", "log", {})
    await settle()
    socket = conn.socket
    assert isinstance(socket, FakeSocket)
    types = [m["type"] for m in socket.messages()]
    assert types == ["subscribed", "error", "log"]
    assert socket.messages()[1]["data"]["code"] == "initial_state_failed"


async def test_unsubscribe() -> None:
    """unsubscribe removes only what was subscribed and stops delivery."""
    hub = make_hub()
    conn, _ = await joined(hub)
    assert hub.unsubscribe(conn, ["logs", "stats"]) == ["logs"]
    assert (await hub.publish("logs", "log", {})).recipients == 0
    assert hub.stats()["by_channel"] == {}


async def test_reservations_bound_connections() -> None:
    """max_clients counts live connections and slots reserved before the upgrade."""
    hub = make_hub(max_clients=2)
    r1 = hub.reserve()
    hub.reserve()
    with pytest.raises(ServerUnavailable, match="at most 2"):
        hub.reserve()
    conn = hub.register(FakeSocket(), r1)
    with pytest.raises(ServerUnavailable):
        hub.reserve()
    hub.unregister(conn)
    hub.reserve()


async def test_connections_per_user_count_reservations_too() -> None:
    """A burst of handshakes by one user cannot overshoot max_connections_per_user."""
    hub = make_hub(max_connections_per_user=2)
    alice = Identity(user_id="alice")
    r1 = hub.reserve("alice")
    hub.reserve("alice")
    with pytest.raises(TooManyRequests) as info:
        hub.reserve("alice")
    assert info.value.code == "too_many_connections" and info.value.status == 429
    hub.reserve("bob")  # others are not affected
    hub.reserve(None)  # nor anonymous connections
    conn = hub.register(FakeSocket(), r1, alice)
    assert hub.stats()["total_users"] == 1
    hub.unregister(conn)
    assert hub.stats()["total_users"] == 0
    hub.reserve("alice")


async def test_token_expiry_closes_1008_and_reidentify_moves_it() -> None:
    """The expiry timer follows the identity: a refresh reschedules it."""
    hub = make_hub()
    soon = Identity(user_id="alice", roles=("user",), expires_at=time.time() + 0.1)
    conn, socket = await joined(hub, identity=soon)
    later = Identity(user_id="alice", roles=("ops",), expires_at=time.time() + 0.3)
    hub.reidentify(conn, later)
    assert conn.roles == frozenset({"ops"}) and conn.role == "ops"
    await asyncio.sleep(0.2)
    assert socket.closed_with is None  # the first expiry was cancelled
    await asyncio.sleep(0.25)
    assert socket.closed_with == (1008, "token expired")
    with pytest.raises(ValueError):
        hub.reidentify(conn, Identity(user_id="mallory"))


async def test_expired_reservations_are_released() -> None:
    """A reservation whose upgrade never happened stops counting after its deadline."""
    now = [0.0]
    hub = make_hub(monotonic=lambda: now[0], max_clients=1)
    hub.reserve()
    with pytest.raises(ServerUnavailable):
        hub.reserve()
    now[0] = 31.0
    hub.reserve()


async def test_heartbeat_pings_and_timeout() -> None:
    """Pings go out every heartbeat_interval; a pong counts as traffic; silence past
    client_timeout closes with 1011."""
    now = [0.0]
    hub = make_hub(monotonic=lambda: now[0], heartbeat_interval="10s", client_timeout="25s")
    quiet = FakeSocket()
    lively = FakeSocket()
    quiet_conn = hub.register(quiet)
    lively_conn = hub.register(lively)
    now[0] = 10.0
    hub._tick()
    await settle()
    assert len(quiet.pings) == 1 and len(lively.pings) == 1
    assert lively.ping_frames[0] == quiet.ping_frames[0]  # one frame for all
    lively.pings[0]()  # the pong
    await settle()
    assert lively_conn.last_seen == 10.0
    now[0] = 26.0
    hub._tick()
    assert quiet.aborted_with is not None and quiet.aborted_with[0] == 1011
    assert "client timeout" in quiet.aborted_with[1]
    assert quiet_conn.id not in hub.connections
    assert lively.aborted_with is None


async def test_shutdown_flushes_then_closes_1001() -> None:
    """Shutdown writes what is queued, then closes 1001; a stuck client is aborted."""
    hub = make_hub(shutdown_timeout="200ms")
    await hub.start()
    _, ok = await joined(hub)
    _, stuck = await joined(hub, socket=FakeSocket(writable=False))
    await hub.publish("logs", "log", {"i": 1})
    await hub.shutdown()
    assert [e["data"]["i"] for e in ok.events()] == [1]
    assert ok.closed_with == (1001, "server shutting down")
    assert stuck.aborted_with is not None and stuck.aborted_with[0] == 1001
    assert hub.stats()["total_clients"] == 0
    with pytest.raises(ServerUnavailable, match="shutting down"):
        hub.reserve()


async def test_a_burst_larger_than_the_buffer_reaches_a_fast_client() -> None:
    """A publisher that never yields does not make fast clients 'slow': a full queue is
    written out when the transport can take it."""
    hub = make_hub(buffer_size=8)
    _, fast = await joined(hub)
    for i in range(100):
        assert (await hub.publish("logs", "log", {"i": i})).recipients == 1
    await settle()
    assert [e["data"]["i"] for e in fast.events()] == list(range(100))
    assert hub.stats()["slow_disconnects"] == 0
    assert fast.writes < 20  # still coalesced: about one write per buffer-full


async def test_drop_notice_goes_right_before_the_next_event() -> None:
    """Control messages queued before the loss keep their place."""
    hub = make_hub(buffer_size=2, slow_client="drop_oldest")
    conn, socket = await joined(hub, socket=FakeSocket(writable=False))
    for i in range(3):
        await hub.publish("logs", "log", {"i": i})
    hub.send(conn, pong(hub))
    await hub.publish("logs", "log", {"i": 3})
    socket.set_writable(True)
    await settle()
    types = [m["type"] for m in socket.messages()]
    assert types == ["subscribed", "messages_dropped", "log", "pong", "log"]
    assert socket.messages()[1]["data"] == {"channel": "logs", "count": 2}


async def test_control_replies_to_a_client_that_never_reads_are_bounded() -> None:
    """A client that keeps asking (pings) but never reads is closed as slow (4008)."""
    hub = make_hub(buffer_size=8)
    conn, socket = await joined(hub, socket=FakeSocket(writable=False))
    for _ in range(200):
        hub.send(conn, pong(hub))
    await settle()
    assert socket.aborted_with is not None and socket.aborted_with[0] == 4008
    assert len(conn.queue) == 0
    assert hub.stats()["slow_disconnects"] == 1


async def test_hook_returning_none_sends_nothing_and_unencodable_is_reported() -> None:
    """A hook's None means no initial_state; a result that cannot be encoded is an
    initial_state_failed error, and the subscription stays."""
    hub = make_hub()

    async def nothing(params: Any) -> Any:
        return None

    async def unencodable(params: Any) -> Any:
        return {"x": object()}

    conn = hub.register(FakeSocket())
    await hub.subscribe(
        conn,
        [SubRequest("logs", None), SubRequest("stats", None)],
        hooks={"logs": nothing, "stats": unencodable},
    )
    await hub.publish("stats", "s", {"n": 1})
    await settle()
    socket = conn.socket
    assert isinstance(socket, FakeSocket)
    messages = socket.messages()
    assert [m["type"] for m in messages] == ["subscribed", "error", "s"]
    assert messages[1]["data"]["code"] == "initial_state_failed"
    assert "'stats'" in messages[1]["data"]["message"]


async def test_leaving_during_setup_counts_the_held_events_as_dropped() -> None:
    """Events held for a subscription being set up are counted if the client leaves."""
    hub = make_hub()
    conn, _, gate, task = await slow_subscription(hub)
    for i in range(3):
        assert (await hub.publish("logs", "log", {"i": i})).recipients == 1
    hub.unregister(conn)
    gate.set()
    await task
    assert hub.stats()["messages_dropped"] == 3


async def test_uptime_counts_from_start() -> None:
    """uptime_s is the time since the hub started, not since it was built."""
    now = [100.0]
    hub = make_hub(monotonic=lambda: now[0])
    now[0] = 500.0
    await hub.start()
    now[0] = 512.5
    assert hub.stats()["uptime_s"] == 12.5
    await hub.shutdown()


async def test_publish_from_another_thread_is_refused() -> None:
    """publish() on another thread's loop raises, naming the thread-safe way."""
    hub = make_hub()
    await hub.start()

    def elsewhere() -> None:
        asyncio.run(hub.publish("logs", "log", {}))

    with pytest.raises(RuntimeError, match="run_coroutine_threadsafe"):
        await asyncio.to_thread(elsewhere)
    assert (await hub.publish("logs", "log", {})).id == "ep:1"  # no id was used up
    await hub.shutdown()


async def test_client_leaving_during_setup_counts_held_events() -> None:
    """If the client goes away while its subscription is being set up (the handler is
    cancelled), the events held for it are counted as dropped."""
    hub = make_hub()
    conn, _, _, task = await slow_subscription(hub)
    for i in range(2):
        await hub.publish("logs", "log", {"i": i})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hub.stats()["messages_dropped"] == 2
    assert hub._warming == {}
    assert conn.channels == {}


async def test_overflow_during_setup_counts_the_event() -> None:
    """disconnect policy: the held event that finds the set-up buffer full is counted."""
    hub = make_hub(buffer_size=2)
    _, _, gate, task = await slow_subscription(hub)
    for i in range(3):
        await hub.publish("logs", "log", {"i": i})
    await settle()
    gate.set()
    await task
    stats = hub.stats()
    assert stats["slow_disconnects"] == 1
    assert stats["messages_dropped"] == 3  # one refused, two held and discarded
