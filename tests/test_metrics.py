"""Prometheus metrics (metrics.enabled): what a scrape says after real connections,
publishes, refusals, slow clients and a Redis outage, in one process and summed over
`--workers 2`."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sanic_realtime.exceptions import ConfigError

from .conftest import make_realtime, recv_json, recv_until
from .processes import SanicProcess, cluster_figures
from .rawclient import RawClient
from .redis_support import RedisServer, delete_prefix, new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .tokens import SECRET, bearer, jwt_realtime, token

METRICS = {"enabled": True}


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition, parsed by
    prometheus_client's own parser (a malformed exposition fails here)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def scrape(server: Any, path: str = "/metrics", **kwargs: Any) -> dict[Any, float]:
    response = await server.http.get(path, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse(response.text)


async def test_figures_follow_connections_publishes_and_closes(serve: Any) -> None:
    server = await serve(make_realtime(metrics=METRICS))
    before = await scrape(server)
    # Every configured channel shows before its first event.
    for channel in ("logs", "stats", "alerts", "requests"):
        assert value(before, "sanic_realtime_subscribers", channel=channel) == 0
        assert value(before, "sanic_realtime_messages_published_total", channel=channel) == 0
    assert value(before, "sanic_realtime_connections") == 0
    assert value(before, "sanic_realtime_backplane_up", backplane="memory") == 1
    assert ("process_cpu_seconds_total", ()) in before  # one process: its own figures too

    async with (
        server.connect("/ws/logs?level=error") as errors_only,
        server.connect("/ws?channels=logs,stats") as both,
    ):
        await recv_until(errors_only, "connection_established")
        await recv_until(both, "connection_established")
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_connections") == 2
        assert value(samples, "sanic_realtime_subscribers", channel="logs") == 2
        assert value(samples, "sanic_realtime_subscribers", channel="stats") == 1
        assert value(samples, "sanic_realtime_connections_opened_total") == 2

        for level in ("info", "error", "info"):
            await server.realtime.publish("logs", "log", {"level": level})
        await server.realtime.publish("stats", "tick", {"n": 1})
        for _ in range(4):
            await recv_json(both)
        assert (await recv_json(errors_only))["data"] == {"level": "error"}
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_messages_published_total", channel="logs") == 3
        assert value(samples, "sanic_realtime_messages_published_total", channel="stats") == 1
        # A copy per matching subscriber: 3 + 1 of logs, 1 of stats.
        assert value(samples, "sanic_realtime_messages_delivered_total", channel="logs") == 4
        assert value(samples, "sanic_realtime_messages_delivered_total", channel="stats") == 1
        # 5 events and 2 connection_established.
        assert value(samples, "sanic_realtime_messages_sent_total") == 7
        # Once per event that reached someone, not once per copy.
        assert value(samples, "sanic_realtime_publish_to_write_seconds_count") == 4
        assert value(samples, "sanic_realtime_publish_to_write_seconds_bucket", le="1.0") == 4
        assert value(samples, "sanic_realtime_outbound_queue_messages") == 0
        assert value(samples, "sanic_realtime_connection_duration_seconds_count") == 0
        await both.close(4321, "client's own code")

    samples = {}
    async with asyncio.timeout(5):
        while samples.get(("sanic_realtime_connections", ())) != 0:
            samples = await scrape(server)
    assert value(samples, "sanic_realtime_disconnects_total", code="1000") == 1
    # Codes outside the protocol's own are one label value: clients cannot invent labels.
    assert value(samples, "sanic_realtime_disconnects_total", code="other") == 1
    assert value(samples, "sanic_realtime_connection_duration_seconds_count") == 2
    assert value(samples, "sanic_realtime_subscribers", channel="logs") == 0


async def test_refusals_are_counted_by_status_and_code(serve: Any) -> None:
    server = await serve(jwt_realtime(metrics=METRICS))
    # Without a token, the token is what is refused first.
    for path in ("/ws/nope", "/ws/logs?level=loud", "/ws/logs"):
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect(path):
                pass
        assert refused.value.response.status_code == 401
    for path, status in (("/ws/nope", 404), ("/ws/logs?level=loud", 400)):
        with pytest.raises(InvalidStatus) as refused:
            async with server.connect(path, additional_headers=bearer(token())):
                pass
        assert refused.value.response.status_code == status
    async with server.connect(
        "/ws?channels=logs", additional_headers=bearer(token("carol", ["ops", "admin"]))
    ) as ws:
        await recv_until(ws, "connection_established")
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_connections_by_role", role="ops") == 1
        assert value(samples, "sanic_realtime_connections_by_role", role="admin") == 1
    samples = await scrape(server)
    refusals = {
        labels: v
        for (name, labels), v in samples.items()
        if name == "sanic_realtime_refusals_total"
    }
    assert refusals == {
        (("code", "unauthorized"), ("status", "401")): 3,
        (("code", "unknown_channel"), ("status", "404")): 1,
        (("code", "bad_filter_value"), ("status", "400")): 1,
    }
    assert value(samples, "sanic_realtime_connections_by_role", role="ops") == 0


BUFFER = 16


async def fill(server: Any, slow: RawClient, total: int = 6000) -> None:
    """Publish until ``slow``'s socket is over its high-water mark (it reads nothing),
    then more than its buffer holds."""
    payload = "x" * 1000
    for i in range(total):
        await server.realtime.publish("logs", "log", {"i": i, "p": payload})
        if i % 50 == 0:
            await asyncio.sleep(0)
            conns = list(server.realtime.hub.connections.values())
            if not conns or conns[0].blocked:  # blocked, or already closed with 4008
                break
    # The buffer may not be full yet when the block is seen: a buffer's worth fills it
    # (whatever it held), and 40 more go past it, so the slow_client policy applies to
    # at least 40 events, however the scheduler ran the loop above.
    for i in range(BUFFER + 40):
        await server.realtime.publish("logs", "log", {"i": i, "p": payload})


async def test_a_client_that_stops_reading_shows_in_the_buffer_figures(serve: Any) -> None:
    config = make_realtime(buffer_size=BUFFER, slow_client="drop_oldest", metrics=METRICS)
    server = await serve(config)
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    try:
        await fill(server, slow)
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_blocked_connections") == 1
        assert value(samples, "sanic_realtime_outbound_queue_max_messages") == BUFFER
        assert value(samples, "sanic_realtime_outbound_queue_messages") == BUFFER
        assert value(samples, "sanic_realtime_messages_dropped_total") >= 40
        assert value(samples, "sanic_realtime_slow_disconnects_total") == 0
    finally:
        slow.close()


async def test_a_slow_client_disconnected_with_4008_is_counted(serve: Any) -> None:
    server = await serve(make_realtime(buffer_size=BUFFER, metrics=METRICS))
    slow = await RawClient.connect(server.port, "/ws/logs", rcvbuf=4096)
    try:
        await fill(server, slow)
        await slow.read_until_closed(answer_close=True)
        assert slow.close_code == 4008
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_slow_disconnects_total") == 1
        assert value(samples, "sanic_realtime_disconnects_total", code="4008") == 1
        assert value(samples, "sanic_realtime_messages_dropped_total") >= 1
        assert value(samples, "sanic_realtime_outbound_queue_messages") == 0
        assert value(samples, "sanic_realtime_connections") == 0
    finally:
        slow.close()


async def test_the_path_and_token_are_configurable(serve: Any) -> None:
    secret = "metrics-token-" + "z" * 20
    server = await serve(make_realtime(metrics={**METRICS, "path": "/ops/prom", "token": secret}))
    assert (await server.http.get("/metrics")).status_code == 404
    response = await server.http.get("/ops/prom")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    response = await server.http.get("/ops/prom", headers=bearer("wrong"))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_token")
    await scrape(server, "/ops/prom", headers=bearer(secret))


async def test_openmetrics_when_the_scraper_asks_for_it(serve: Any) -> None:
    server = await serve(make_realtime(metrics=METRICS))
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    response = await server.http.get("/metrics", headers={"accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "sanic_realtime_connections_opened_total 0.0" in response.text


async def test_metrics_are_off_unless_enabled(serve: Any) -> None:
    server = await serve(make_realtime())
    assert server.realtime.metrics is None
    assert (await server.http.get("/metrics")).status_code == 404


def test_a_metrics_path_that_clashes_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as e:
        make_realtime(metrics={**METRICS, "path": "/admin/ws/stats"})
    assert e.value.path == "realtime.metrics.path"
    with pytest.raises(ConfigError) as e:
        make_realtime(metrics={**METRICS, "path": "/ws/logs"})
    assert e.value.path == "realtime.channels.logs"
    assert "metrics.path" in str(e.value)
    with pytest.raises(ConfigError) as e:
        make_realtime(metrics={**METRICS, "path": "metrics"})
    assert e.value.path == "realtime.metrics.path"


async def test_backplane_state_and_reconnects_follow_redis(serve: Any) -> None:
    own = RedisServer()
    await own.start()
    try:
        realtime = make_realtime(backplane=own.url, redis={"prefix": "m"}, metrics=METRICS)
        server = await serve(realtime)
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_backplane_up", backplane="redis") == 1
        assert value(samples, "sanic_realtime_backplane_reconnects_total") == 0
        await own.stop()
        async with asyncio.timeout(15):
            while value(samples, "sanic_realtime_backplane_up", backplane="redis") != 0:
                await asyncio.sleep(0.1)
                samples = await scrape(server)
        await own.start()
        async with asyncio.timeout(15):
            while value(samples, "sanic_realtime_backplane_up", backplane="redis") != 1:
                await asyncio.sleep(0.1)
                samples = await scrape(server)
        assert value(samples, "sanic_realtime_backplane_reconnects_total") >= 1
    finally:
        await own.close()


def metric_dirs() -> set[Path]:
    """The directories sanic-realtime made for workers' metric files (metrics.py)."""
    return set(Path(tempfile.gettempdir()).glob("sanic-realtime-metrics-*"))


async def test_several_workers_are_summed_in_every_scrape() -> None:
    """`sanic --workers 2`: whichever worker answers the scrape, it reports every
    worker's connections and publishes (prometheus_client's multiprocess mode)."""
    url, prefix = redis_url(), new_prefix()
    env = {"RT_BACKPLANE": url, "RT_PREFIX": prefix, "RT_METRICS": "1"}
    before = metric_dirs()
    server = await SanicProcess("tests.scale_app:create_app", env, workers=2).start()
    # The main process made a directory for the workers' files...
    assert len(metric_dirs() - before) == 1
    sockets = []
    try:
        # The kernel picks the worker of each connect, and may put them all on one: connect
        # six at a time until both workers hold some (bounded); the figures below must then
        # be summed whatever the spread, and whichever worker answers the scrape.
        stats: dict[str, Any] = {}
        while len(sockets) < 36:
            for _ in range(6):
                ws = await connect(
                    server.ws_url("/ws/logs"),
                    additional_headers=bearer(token("bob", "user")),
                    open_timeout=10,
                )
                sockets.append(ws)
                await recv_until(ws, "connection_established")
                await asyncio.sleep(0.02)
            stats = await cluster_figures(server, ADMIN_TOKEN, clients=len(sockets), workers=2)
            if len([n for n in stats["by_worker"].values() if n]) == 2:
                break
        n = len(sockets)
        print(f"{n} connections over the workers: {stats['by_worker']}")
        for i in range(6):
            response = await server.http.post(
                "/admin/ws/broadcast",
                json={"channel": "logs", "type": "log", "data": {"i": i}},
                headers=bearer(ADMIN_TOKEN),
            )
            assert response.status_code == 200
        for ws in sockets:
            for _ in range(6):
                await recv_json(ws, 10)
        await asyncio.sleep(1.5)  # each worker refreshes its gauges every second
        for _ in range(6):  # the kernel picks the worker: ask several times
            samples = await scrape(server)
            assert value(samples, "sanic_realtime_connections") == n
            assert value(samples, "sanic_realtime_subscribers", channel="logs") == n
            assert value(samples, "sanic_realtime_connections_opened_total") == n
            assert value(samples, "sanic_realtime_messages_published_total", channel="logs") == 6
            delivered = value(samples, "sanic_realtime_messages_delivered_total", channel="logs")
            assert delivered == 6 * n
            assert value(samples, "sanic_realtime_publish_to_write_seconds_count") >= 6
            # Per-process figures are left out: they do not sum across workers.
            assert ("process_cpu_seconds_total", ()) not in samples
    finally:
        for ws in sockets:
            await ws.close()
        await server.stop()
        await delete_prefix(url, prefix)
    # ... and removed it when it stopped.
    assert metric_dirs() - before == set()


async def test_metrics_name_templates_not_instances(serve: Any) -> None:
    """Label cardinality does not grow with orders: instances count under their template."""
    channels = {"logs": {}, "orders.{order_id}": {}}
    server = await serve(make_realtime(channels=channels, metrics=METRICS))
    async with server.connect("/ws?channels=orders.1,orders.2") as ws:
        await recv_until(ws, "connection_established")
        for order in range(1, 6):
            await server.realtime.publish(f"orders.{order}", "status", {"n": order})
        for _ in range(2):
            await recv_json(ws)
        samples = await scrape(server)
    template = "orders.{order_id}"
    assert value(samples, "sanic_realtime_messages_published_total", channel=template) == 5
    assert value(samples, "sanic_realtime_messages_delivered_total", channel=template) == 2
    assert value(samples, "sanic_realtime_subscribers", channel=template) == 2
    channels_seen = {dict(labels).get("channel") for _, labels in samples} - {None}
    assert channels_seen == {"logs", template}


async def test_present_users_by_template(serve: Any) -> None:
    """Users, not connections, named by the template; anonymous connections are no users."""
    channels = {"logs": {}, "rooms.{room}": {"presence": True}}
    auth = {"mode": "jwt", "jwt_secret": SECRET, "anonymous": True}
    realtime = make_realtime(channels=channels, metrics=METRICS, auth=auth)
    server = await serve(realtime)
    samples = await scrape(server)
    assert value(samples, "sanic_realtime_present_users", channel="rooms.{room}") == 0
    alice = bearer(token("alice", "user"))
    async with (
        server.connect("/ws?channels=rooms.a,rooms.b", additional_headers=alice) as one,
        server.connect("/ws/rooms.a", additional_headers=alice) as two,
        server.connect("/ws/rooms.a") as anonymous,
    ):
        for ws in (one, two, anonymous):
            await recv_until(ws, "connection_established")
        assert realtime.stats()["present_users"] == {"rooms.{room}": 2}  # a and b
        assert (await realtime.presence("rooms.a")).anonymous == 1
        samples = await scrape(server)
        assert value(samples, "sanic_realtime_present_users", channel="rooms.{room}") == 2
