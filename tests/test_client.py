"""The Python client (``sanic_realtime.client``) against real servers: an in-process Sanic
server for the protocol, and real ``sanic`` processes sharing Redis for restarts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sanic_realtime.client import (
    ConnectionStatus,
    Event,
    GaveUp,
    RealtimeClient,
    RealtimeClientError,
    Refused,
    RequestFailed,
    ServerClosed,
    backoff,
    broadcast_url,
    data_matches,
    publish,
)

from .conftest import make_realtime
from .processes import Cluster, SanicProcess
from .redis_support import free_port, new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .tokens import jwt_realtime, token

FAST = {"min_reconnect_delay": 0.05, "max_reconnect_delay": 0.2}


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` (state kept by callbacks) until true; fails after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the state is plain lists, not events
            await asyncio.sleep(0.01)


async def take(client: RealtimeClient, n: int, timeout: float = 10.0) -> list[Event]:
    """The next ``n`` messages of ``async for``."""
    got: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in client:
            got.append(event)
            if len(got) == n:
                break
    return got


class States:
    """Records every status change."""

    def __init__(self, client: RealtimeClient) -> None:
        self.seen: list[ConnectionStatus] = []
        client.on_connection_change(self.seen.append)

    @property
    def states(self) -> list[str]:
        return [s.state for s in self.seen]

    def compact(self) -> list[str]:
        """The states without repeats (each reconnect attempt reports one)."""
        states = self.states
        return [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]

    async def wait(self, state: str, count: int = 1, timeout: float = 15.0) -> None:
        await until(lambda: self.states.count(state) >= count, timeout)


# ------------------------------------------------------------------ pure parts


def test_backoff_is_full_jitter_capped() -> None:
    for attempt in range(1, 12):
        ceiling = min(20.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff(attempt, 0.5, 20.0) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a constant
    assert len({backoff(3, 0.5, 20.0) for _ in range(20)}) > 1


def test_data_matches() -> None:
    data = {"level": "error", "component": "db", "n": 3}
    assert data_matches(data, {})
    assert data_matches(data, {"level": "error"})
    assert data_matches(data, {"level": ["warn", "error"], "component": "db"})
    assert data_matches(data, {"n": lambda n: n > 2})
    assert not data_matches(data, {"level": "warn"})
    assert not data_matches(data, {"missing": "x"})
    assert not data_matches("not a dict", {"level": "error"})


def test_broadcast_url() -> None:
    assert broadcast_url("http://h:8000") == "http://h:8000/admin/ws/broadcast"
    assert broadcast_url("ws://h:8000/") == "http://h:8000/admin/ws/broadcast"
    assert broadcast_url("wss://h/custom/pub") == "https://h/custom/pub"
    with pytest.raises(ValueError, match="not an http"):
        broadcast_url("ftp://h")


def test_bad_arguments_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        RealtimeClient("http://127.0.0.1:1/ws")
    with pytest.raises(ValueError, match="filters without channels"):
        RealtimeClient("ws://127.0.0.1:1/ws", filters={"level": "error"})


def test_the_client_imports_no_sanic() -> None:
    code = (
        "import sys; import sanic_realtime.client, sanic_realtime.cli; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sanic', 'sanic_ext')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------ one server


async def test_events_filters_caches_and_callbacks(serve: Any) -> None:
    server = await serve(make_realtime())
    realtime = server.realtime
    await realtime.publish("stats", "stats_update", {"clients": 7})
    seen: list[Event] = []
    client = RealtimeClient(
        server.ws_url("/ws"), channels=["logs", "stats"], filters={"level": "warn"}
    )
    client.on("log_update", seen.append)
    async with client:
        assert client.is_connected and client.status.client_id
        assert sorted(client.channels) == ["logs", "stats"]
        for i, level in enumerate(["info", "error", "debug", "warn", "critical"]):
            await realtime.publish("logs", "log_update", {"level": level, "i": i})
        got = await take(client, 4)
        assert (got[0].type, got[0].channel, got[0].data) == (
            "initial_state",
            "stats",
            {"clients": 7},
        )
        assert [e.data["i"] for e in got[1:]] == [1, 3, 4]
        assert all(e.is_event for e in got[1:]) and not got[0].is_event
        assert [e.data["i"] for e in seen] == [1, 3, 4]
        # Caches: the newest per channel, and the recent ones by data fields.
        latest = client.latest("stats")
        assert latest is not None and latest.data == {"clients": 7}
        assert [e.data["i"] for e in client.recent("logs", 10, level="error")] == [1]
        assert [e.data["i"] for e in client.recent("logs", 2)] == [3, 4]
        assert client.status.last_ids["logs"] == got[-1].id
        # A status update reaches the cache and the loop.
        await realtime.publish("stats", "stats_update", {"clients": 8})
        (update,) = await take(client, 1)
        assert client.latest("stats") == update
        assert client.latest("stats", "initial_state") == got[0]
    assert client.status.state == "disconnected"
    await asyncio.sleep(0.1)
    assert not realtime.hub.connections


async def test_subscribe_and_unsubscribe_at_run_time(serve: Any) -> None:
    server = await serve(make_realtime())
    realtime = server.realtime
    async with RealtimeClient(server.ws_url("/ws")) as client:
        assert await client.subscribe(["alerts"], {"severity": "high"}) == ["alerts"]
        await realtime.publish("alerts", "alert", {"severity": "low"})
        await realtime.publish("alerts", "alert", {"severity": "critical"})
        (event,) = await take(client, 1)
        assert event.data == {"severity": "critical"}
        with pytest.raises(RequestFailed) as refused:
            await client.subscribe(["nope"])
        assert refused.value.code == "unknown_channel"
        assert "unknown channel 'nope'" in refused.value.message
        with pytest.raises(RequestFailed) as bad:
            await client.subscribe(["logs"], {"level": "loud"})
        assert bad.value.code == "bad_filter_value"
        assert client.channels == ["alerts"]
        assert await client.unsubscribe("alerts") == ["alerts"]
        assert client.channels == []
        assert realtime.stats()["by_channel"] == {}
        everything = await client.subscribe("all")
        assert sorted(everything) == ["alerts", "logs", "requests", "stats"]
        assert sorted(client.channels) == sorted(everything)


async def test_a_bad_first_subscription_fails_connect(serve: Any) -> None:
    server = await serve(make_realtime())
    client = RealtimeClient(server.ws_url("/ws"), channels=["logs"], filters={"colour": "red"})
    with pytest.raises(RequestFailed) as failed:
        await client.connect()
    assert failed.value.code == "unknown_filter"
    assert client.status.state == "failed"
    assert "unknown filter 'colour'" in (client.status.last_error or "")
    with pytest.raises(RequestFailed):  # a loop over a failed client says why
        await take(client, 1)
    await client.close()


async def test_a_refused_handshake_shows_status_and_message(serve: Any) -> None:
    server = await serve(jwt_realtime())
    client = RealtimeClient(server.ws_url("/ws"), token="not-a-jwt", **FAST)
    states = States(client)
    with pytest.raises(Refused) as refused:
        await client.connect()
    assert refused.value.status == 401 and refused.value.code == "invalid_token"
    assert str(refused.value).startswith("HTTP 401 invalid_token: invalid token")
    assert states.states == ["connecting", "failed"]  # not retried: it cannot get better
    await client.close()


async def test_token_is_sent_as_bearer(serve: Any) -> None:
    server = await serve(jwt_realtime())
    calls = []

    async def fresh_token() -> str:
        calls.append(1)
        return token("alice", ["ops", "admin"])

    async with RealtimeClient(server.ws_url("/ws"), channels=["alerts"], token=fresh_token) as c:
        assert (c.status.user_id, c.status.roles) == ("alice", ("ops", "admin"))
        await server.realtime.publish("alerts", "alert", {"severity": "high"})
        (event,) = await take(c, 1)
        assert event.channel == "alerts"
    assert calls == [1]


async def test_a_failing_token_function_is_retried(serve: Any) -> None:
    server = await serve(jwt_realtime())
    calls = 0

    def flaky_token() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("token service down")
        return token("erin", "user")

    client = RealtimeClient(server.ws_url("/ws"), token=flaky_token, **FAST)
    states = States(client)
    async with client:
        assert client.status.user_id == "erin"
    assert states.states[:3] == ["connecting", "reconnecting", "connected"]
    assert states.seen[1].last_error == (
        "the token function failed: ConnectionError: token service down"
    )


async def test_reconnects_and_resumes_after_a_drop(serve: Any) -> None:
    """The server drops the connection (1011) with events queued and more published while
    the client is away: it reconnects and gets all of them once, in order, including a
    channel on which it had received nothing yet (resumed from its position)."""
    server = await serve(make_realtime())
    realtime = server.realtime
    client = RealtimeClient(server.ws_url("/ws"), channels=["logs", "requests"], **FAST)
    states = States(client)
    async with client:
        await realtime.publish("logs", "log_update", {"i": 0})
        assert [e.data["i"] for e in await take(client, 1)] == [0]
        await realtime.publish("logs", "log_update", {"i": 1})
        await realtime.publish("requests", "request", {"r": 0})
        for conn in list(realtime.hub.connections.values()):
            realtime.hub.abort(conn, 1011, "test drop")
        await realtime.publish("logs", "log_update", {"i": 2})
        await realtime.publish("requests", "request", {"r": 1})
        got = await take(client, 4)
        assert [e.data for e in got if e.channel == "logs"] == [{"i": 1}, {"i": 2}]
        assert [e.data for e in got if e.channel == "requests"] == [{"r": 0}, {"r": 1}]
        await states.wait("connected", 2)
        assert client.status.recovered == {"logs": True, "requests": True}
        reconnecting = next(s for s in states.seen if s.state == "reconnecting")
        assert reconnecting.attempt == 1 and reconnecting.close_code == 1011
        assert "1011 test drop" in (reconnecting.last_error or "")
        assert reconnecting.next_retry_in is not None and reconnecting.next_retry_in <= 0.05
    assert states.states == ["connecting", "connected", "reconnecting", "connected", "disconnected"]


async def test_a_slow_loop_loses_nothing(serve: Any) -> None:
    """A loop that does not keep up makes the client stop reading; the server's buffer
    fills and it closes with 4008; the client reconnects and resumes: every event once."""
    server = await serve(make_realtime(buffer_size=8))
    realtime = server.realtime
    client = RealtimeClient(server.ws_url("/ws"), channels=["logs"], queue_size=4, **FAST)
    states = States(client)
    total = 600

    async def slow_loop() -> list[int]:
        got: list[int] = []
        async for event in client:
            got.append(event.data["i"])
            if len(got) == total:
                break
            if len(got) < 50:
                await asyncio.sleep(0.02)
        return got

    async with client:
        loop = asyncio.create_task(slow_loop())
        await asyncio.sleep(0.05)  # the loop is waiting: backpressure applies
        for i in range(total):
            await realtime.publish("logs", "log_update", {"i": i, "pad": "x" * 16384})
        got = await asyncio.wait_for(loop, 30)
        assert got == list(range(total))
    assert realtime.stats()["slow_disconnects"] >= 1, "the test did not make the client slow"
    assert any(s.close_code == 4008 for s in states.seen)


async def test_without_a_loop_the_client_does_not_stall(serve: Any) -> None:
    """Used through callbacks only: messages for a later loop are capped at queue_size
    (oldest dropped), and the client keeps reading."""
    server = await serve(make_realtime())
    seen: list[Event] = []
    async with RealtimeClient(server.ws_url("/ws"), channels=["logs"], queue_size=5) as client:
        client.on("*", seen.append)
        for i in range(50):
            await server.realtime.publish("logs", "log_update", {"i": i})
        await until(lambda: len(seen) == 50, 5)
        assert [e.data["i"] for e in await take(client, 5)] == [45, 46, 47, 48, 49]


async def test_gives_up_after_max_reconnect_attempts() -> None:
    port = free_port()  # nothing listens there
    client = RealtimeClient(f"ws://127.0.0.1:{port}/ws", max_reconnect_attempts=3, **FAST)
    states = States(client)
    with pytest.raises(GaveUp) as gave_up:
        await client.connect()
    assert gave_up.value.message.startswith("could not connect (3 retries failed); last error: ")
    assert "Connect call failed" in gave_up.value.message or "refused" in gave_up.value.message
    assert states.states == [
        "connecting",
        "reconnecting",
        "reconnecting",
        "reconnecting",
        "failed",
    ]
    assert [s.attempt for s in states.seen[1:4]] == [1, 2, 3]
    ceilings = [0.05, 0.1, 0.2]
    for status, ceiling in zip(states.seen[1:4], ceilings, strict=True):
        assert status.next_retry_in is not None and 0 <= status.next_retry_in <= ceiling
    await client.close()


async def test_heartbeat_detects_a_silent_server(serve: Any) -> None:
    """A server that stops answering without closing (a blackhole proxy) is detected by
    the app-level ping; the client reconnects and resumes without loss."""
    from .proxy import Proxy

    server = await serve(make_realtime())
    realtime = server.realtime
    async with Proxy(server.port) as proxy:
        client = RealtimeClient(
            f"ws://127.0.0.1:{proxy.port}/ws",
            channels=["logs"],
            ping_interval=0.2,
            pong_timeout=0.3,
            **FAST,
        )
        states = States(client)
        async with client:
            await realtime.publish("logs", "log_update", {"i": 0})
            await take(client, 1)
            proxy.blackhole()  # bytes from the server stop reaching the client
            await realtime.publish("logs", "log_update", {"i": 1})
            await states.wait("reconnecting")
            lost = next(s for s in states.seen if s.state == "reconnecting")
            assert lost.close_code == 4000
            assert "heartbeat timeout" in (lost.last_error or "")
            await realtime.publish("logs", "log_update", {"i": 2})
            got = await take(client, 2)
            assert [e.data["i"] for e in got] == [1, 2]


# ------------------------------------------------------------------ server processes


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    cluster = Cluster(redis_url(), new_prefix())
    try:
        yield cluster
    finally:
        await cluster.close()


async def publish_numbered(server: SanicProcess, start: int, stop: int, pause: float) -> None:
    for i in range(start, stop):
        await asyncio.to_thread(
            publish,
            f"http://127.0.0.1:{server.port}",
            "logs",
            "log_update",
            {"level": "error", "i": i},
            token=ADMIN_TOKEN,
        )
        await asyncio.sleep(pause)


async def test_server_restart_mid_stream_loses_nothing(cluster: Cluster) -> None:
    """Server A is restarted (SIGTERM, new process on the same port) while B keeps
    publishing: the client on A reconnects, resumes from Redis's history, and ends with
    every event exactly once, in order."""
    a, b = await asyncio.gather(cluster.start(), cluster.start())
    client = RealtimeClient(
        a.ws_url("/ws"),
        channels=["logs"],
        filters={"level": "error"},
        token=token("alice", "ops"),
        **FAST,
    )
    states = States(client)
    async with client:
        stream = asyncio.create_task(publish_numbered(b, 0, 60, 0.02))
        await take(client, 10)
        a = await cluster.restart(a)
        await stream
        rest = await take(client, 50, timeout=30)
        got = [e.data["i"] for e in rest]
        assert got == list(range(10, 60)), got
        assert client.status.recovered == {"logs": True}
        # Every attempt while A was down is reported, with its number.
        assert states.compact() == ["connecting", "connected", "reconnecting", "connected"]
        retries = [s for s in states.seen if s.state == "reconnecting"]
        assert [s.attempt for s in retries] == list(range(1, len(retries) + 1))
        assert retries[0].close_code == 1001  # the server's graceful shutdown


async def test_restart_without_history_reports_resume_failed() -> None:
    """The memory backplane forgets everything on restart: the client says so with a
    ``resume_failed`` message and ``recovered: false``, then resumes from the new run."""
    env = {"RT_BACKPLANE": "memory"}
    server = await SanicProcess("tests.scale_app:create_app", env).start()
    try:
        client = RealtimeClient(
            server.ws_url("/ws"), channels=["logs"], token=token("bob", "user"), **FAST
        )
        async with client:
            await publish_numbered(server, 0, 1, 0)
            (first,) = await take(client, 1)
            await server.stop()
            server = await SanicProcess("tests.scale_app:create_app", env, port=server.port).start()
            (notice,) = await take(client, 1, timeout=30)
            assert notice.type == "resume_failed" and notice.channel == "logs"
            assert notice.data == {"channel": "logs", "since": first.id}
            assert client.status.recovered == {"logs": False}
            # The new run's position replaced the old id: the next event resumes normally.
            assert client.status.last_ids["logs"] != first.id
            await publish_numbered(server, 1, 2, 0)
            (event,) = await take(client, 1)
            assert event.data["i"] == 1
    finally:
        await server.stop()


async def test_a_revoked_connection_is_not_retried(serve: Any) -> None:
    """1008 (access revoked, token expired) with a fixed token: reconnecting would only
    fail again, so the client stops and says why."""
    server = await serve(jwt_realtime())
    client = RealtimeClient(server.ws_url("/ws"), token=token("carol", "user"), **FAST)
    await client.connect()
    await server.realtime.disconnect(user_id="carol")
    with pytest.raises(ServerClosed) as closed:
        await take(client, 1)
    assert closed.value.close_code == 1008 and "access revoked" in closed.value.reason
    assert client.status.state == "failed"
    await client.close()


async def test_unsolicited_errors_are_dispatched_not_taken_as_replies(serve: Any) -> None:
    """``initial_state_failed`` follows ``subscribed`` on its own: it reaches handlers, and
    the next replies still pair with their requests."""
    realtime = make_realtime()

    @realtime.initial_state("stats")
    async def broken(request: Any) -> Any:
        raise RuntimeError("stats store down")

    server = await serve(realtime)
    async with RealtimeClient(server.ws_url("/ws"), channels=["stats"]) as client:
        (error,) = await take(client, 1)
        assert error.type == "error" and error.data["code"] == "initial_state_failed"
        assert "stats store down" in error.data["message"]
        assert await client.subscribe("logs") == ["logs"]
        with pytest.raises(RequestFailed, match="unknown channel"):
            await client.subscribe("nope")
        assert await client.unsubscribe("logs") == ["logs"]


async def test_a_transient_refusal_of_the_subscriptions_is_retried() -> None:
    """A server whose backplane is briefly away answers the subscription with
    ``backplane_unavailable``: the client tries again instead of giving up. (A minimal
    protocol server: the real one only answers so in a narrow window of a Redis outage.)"""
    from websockets.asyncio.server import ServerConnection, serve

    attempts = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal attempts
        attempts += 1
        welcome = {"type": "connection_established", "data": {"client_id": f"c{attempts}"}}
        await ws.send(json.dumps(welcome))
        json.loads(await ws.recv())  # the subscribe
        if attempts == 1:
            error = {"code": "backplane_unavailable", "message": "the backplane is unavailable"}
            await ws.send(json.dumps({"type": "error", "data": error}))
        else:
            await ws.send(json.dumps({"type": "subscribed", "data": {"channels": ["logs"]}}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = RealtimeClient(f"ws://127.0.0.1:{port}/ws", channels=["logs"], **FAST)
        states = States(client)
        async with client:
            assert client.status.client_id == "c2"
        assert states.states[:3] == ["connecting", "reconnecting", "connected"]
        assert "backplane_unavailable" in (states.seen[1].last_error or "")


async def test_a_channel_url_means_that_channel_and_its_filters(serve: Any) -> None:
    """ws://host/ws/logs?level=error: the client keeps the channel and the filter, on the
    general route (so that reconnections resume and subscribe() works as usual)."""
    server = await serve(make_realtime())
    realtime = server.realtime
    async with RealtimeClient(server.ws_url("/ws/logs?level=error")) as client:
        assert client.channels == ["logs"]
        assert client.url == server.ws_url("/ws")
        await realtime.publish("logs", "log", {"level": "info"})
        await realtime.publish("logs", "log", {"level": "error"})
        (event,) = await take(client, 1)
        assert event.data == {"level": "error"}
        assert await client.subscribe(["alerts"]) == ["alerts"]
    # With channels of its own, a channel URL is a clear error, naming the general route.
    client = RealtimeClient(server.ws_url("/ws/logs"), channels=["alerts"])
    with pytest.raises(RealtimeClientError) as failed:
        await client.connect()
    assert failed.value.code == "not_general_route"
    assert server.ws_url("/ws") in failed.value.message
    await client.close()


def test_plan_from_url() -> None:
    from sanic_realtime.client.urls import plan_from_url

    plan = plan_from_url("ws://h:1/ws/logs?level=error&component=db&since=e:3&token=t", ["logs"])
    assert plan.url == "ws://h:1/ws?token=t"
    assert plan.subs == {"logs": {"level": "error", "component": "db"}}
    assert plan.since == {"logs": "e:3"}
    plan = plan_from_url("ws://h/live?channels=a,b&level=warn&since.a=e:1", ["a", "b"])
    assert (plan.url, plan.subs, plan.since) == (
        "ws://h/live",
        {"a": {"level": "warn"}, "b": {"level": "warn"}},
        {"a": "e:1"},
    )
