"""The Redis backplane through Sentinel: the URL's parsing and its errors (no event loop),
and a failover with real processes: a master, a replica, three sentinels (quorum 2) and
two `--single-process` servers of tests.scale_app; the master is SIGKILLed while a
publisher posts to the admin broadcast route."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from sanic_realtime.backplanes.redis.connection import REDIS_ERRORS, Connection
from sanic_realtime.backplanes.redis.endpoints import BadRedisURL, Sentinels, parse, redact
from sanic_realtime.config import parse_config
from sanic_realtime.exceptions import ConfigError

from .conftest import BASE, recv_until
from .processes import SanicProcess
from .redis_support import SentinelGroup, new_prefix
from .scale_app import ADMIN_TOKEN
from .tokens import bearer, token

# ---------------------------------------------------------------------- the URL


def test_a_sentinel_url_gives_hosts_service_db_and_credentials() -> None:
    """Hosts (26379 by default), the service, the db, the master's and the sentinels'
    credentials, TLS from the scheme or ?ssl=true."""
    got = parse(
        "redis+sentinel://app:s%40cret@10.0.0.1:26380,sentinel-b/orders/3"
        "?sentinel_username=sen&sentinel_password=pw"
    )
    assert got == Sentinels(
        hosts=(("10.0.0.1", 26380), ("sentinel-b", 26379)),
        service="orders",
        db=3,
        username="app",
        password="s@cret",
        sentinel_username="sen",
        sentinel_password="pw",
    )
    assert parse("redis+sentinel://h/m") == Sentinels(hosts=(("h", 26379),), service="m")
    assert parse("redis+sentinels://[::1]:1/m").ssl is True  # type: ignore[union-attr]
    tls = parse("redis+sentinel://h/m?ssl=true&ssl_cert_reqs=none&ssl_ca_certs=/ca.pem")
    assert tls is not None and tls.ssl and tls.hosts == (("h", 26379),)
    assert tls.ssl_options == (("ssl_cert_reqs", "none"), ("ssl_ca_certs", "/ca.pem"))


def test_plain_urls_are_not_sentinel_urls() -> None:
    for url in ("redis://127.0.0.1:6379/0", "rediss://h/1", "unix:///run/redis.sock"):
        assert parse(url) is None


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+sentinel:///mymaster", "names no sentinel host"),
        ("redis+sentinel://:pw@/mymaster", "names no sentinel host"),
        ("redis+sentinel://h1:26379", "names no master service"),
        ("redis+sentinel://h1:26379/", "names no master service"),
        ("redis+sentinel://h1:0/m", "bad port '0' of sentinel 'h1': must be 1-65535"),
        ("redis+sentinel://h1:99999/m", "bad port '99999' of sentinel 'h1'"),
        ("redis+sentinel://h1:x/m", "bad port 'x' of sentinel 'h1'"),
        ("redis+sentinel://h1,,h2/m", "empty sentinel host"),
        ("redis+sentinel://:1/m", "sentinel ':1' has no host name"),
        ("redis+sentinel://h1/m/x", "bad db 'x': must be a number"),
        ("redis+sentinel://h1/m/-1", "bad db '-1'"),
        ("redis+sentinel://h1/m/0/extra", "the path must be /<service>[/<db>]"),
        ("redis+sentinel://h1/m?db=2", "unknown option 'db'"),
        ("redis+sentinel://h1/m?ssl=maybe", "ssl must be true or false"),
        ("redis+sentinel://h1/m?ssl_ca_certs=/ca.pem", "ssl_ca_certs needs TLS"),
        ("redis+sentinels://h1/m?ssl_cert_reqs=lax", "ssl_cert_reqs must be one of"),
        ("redis+sentinel://h1/m?ssl=1&ssl=0", "option 'ssl' is given twice"),
    ],
)
def test_a_bad_sentinel_url_is_refused_with_what_is_wrong(url: str, error: str) -> None:
    """Each mistake is named, by the parser and by the configuration check."""
    with pytest.raises(BadRedisURL, match=error.replace("[", r"\[").replace("]", r"\]")):
        parse(url)
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "backplane": url})
    assert caught.value.path == "realtime.backplane" and error in caught.value.reason


def test_errors_and_health_show_no_password() -> None:
    url = "redis+sentinel://app:secret@h1,h2/m?sentinel_password=also-secret&ssl=true"
    assert redact(url) == "redis+sentinel://app:***@h1,h2/m?sentinel_password=***&ssl=true"
    with pytest.raises(BadRedisURL) as caught:
        parse("redis+sentinel://app:secret@h1/m/x?sentinel_password=also-secret")
    assert "secret" not in str(caught.value)
    assert redact("redis+sentinel:///m") == "redis+sentinel:///m"


def test_other_urls_keep_their_error() -> None:
    with pytest.raises(ConfigError, match="must be 'memory' or a redis:// URL, got 'postgres://x'"):
        parse_config({**BASE, "backplane": "postgres://x"})
    config = parse_config({**BASE, "backplane": "redis+sentinel://h1,h2:26380/mymaster/1"})
    assert config.backplane.startswith("redis+sentinel://")


# ---------------------------------------------------------------------- a failover


@pytest.fixture
async def group() -> AsyncIterator[SentinelGroup]:
    sentinels = SentinelGroup(sentinels=3, quorum=2)
    try:
        await sentinels.start()
        yield sentinels
    finally:
        await sentinels.close()


class Recorder:
    """Every message a client receives, and how its connection ended."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.closed: BaseException | None = None
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        import json

        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
        except Exception as e:  # the connection ended: the test fails on it
            self.closed = e
        else:
            self.closed = ConnectionError(f"closed: {self.ws.close_code} {self.ws.close_reason}")

    def events(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "log_update"]


def _id(event_id: str) -> tuple[str, int]:
    epoch, _, offset = event_id.rpartition(":")
    return epoch, int(offset)


async def test_a_failover_keeps_clients_connected_and_reports_the_new_epoch(
    group: SentinelGroup,
) -> None:
    """SIGKILL the master: publishes answer 503 backplane_unavailable during the switch,
    then succeed on the promoted replica; clients on both servers stay connected, get
    the new epoch as messages_dropped (history_reset), and no id repeats or goes back."""
    env = {"RT_BACKPLANE": group.url(), "RT_PREFIX": new_prefix()}
    servers = [SanicProcess("tests.scale_app:create_app", env) for _ in range(2)]
    stack = contextlib.AsyncExitStack()
    try:
        for server in servers:
            stack.push_async_callback(server.stop)
        await asyncio.gather(*(s.start() for s in servers))
        recorders = []
        for server in servers:
            ws = await stack.enter_async_context(
                connect(
                    server.ws_url("/ws/logs"),
                    additional_headers=bearer(token("bob", "user")),
                    open_timeout=10,
                )
            )
            await recv_until(ws, "connection_established", timeout=10)
            recorders.append(Recorder(ws))

        results: list[tuple[float, int, dict[str, Any]]] = []
        stop = asyncio.Event()

        async def publish_forever() -> None:
            n = 0
            while not stop.is_set():
                server = servers[n % 2]
                n += 1
                response = await server.http.post(
                    "/admin/ws/broadcast",
                    json={"channel": "logs", "type": "log_update", "data": {"n": n}},
                    headers=bearer(ADMIN_TOKEN),
                )
                results.append((time.monotonic(), response.status_code, response.json()))
                await asyncio.sleep(0.02)

        publisher = asyncio.create_task(publish_forever())
        loop = asyncio.get_running_loop()

        async def wait_for(check: Any, timeout: float, what: str) -> None:
            deadline = loop.time() + timeout
            while not check():
                assert loop.time() < deadline, f"timed out: {what}"
                assert stop.is_set() or not publisher.done(), publisher
                await asyncio.sleep(0.05)

        await wait_for(lambda: all(len(r.events()) >= 20 for r in recorders), 20, "first events")
        old_master = await group.master_address()
        before = sum(1 for _, status, _ in results if status == 200)
        last_old_id = next(b["id"] for _, s, b in reversed(results) if s == 200)
        killed_at = time.monotonic()
        group.kill_master()

        def failed() -> list[tuple[float, int, dict[str, Any]]]:
            return [r for r in results if r[1] != 200]

        def switched() -> bool:
            bad = failed()
            return bool(bad) and sum(1 for t, s, _ in results if s == 200 and t > bad[-1][0]) >= 20

        await wait_for(switched, 60, "publishes to succeed again after the failover")
        # Every event published after the switch reached both servers' clients.
        last_new = results[-1][2]["id"] if results[-1][1] == 200 else None
        stop.set()
        await publisher
        final = [b["id"] for _, s, b in results if s == 200][-1]
        await wait_for(
            lambda: all(any(e["id"] == final for e in r.events()) for r in recorders),
            20,
            "the last event on both clients",
        )
        new_master = await group.master_address()
        assert new_master == f"127.0.0.1:{group.replica_port}" != old_master

        # Publishes failed only with 503 backplane_unavailable, and only during the switch.
        bad = failed()
        assert bad and all(
            status == 503 and body["error"]["code"] == "backplane_unavailable"
            for _, status, body in bad
        ), bad[:3]
        first_bad = bad[0][0]
        recovered_at = next(t for t, s, _ in results if s == 200 and t > bad[-1][0])
        after_first_ok = [r for r in results if r[0] >= recovered_at]
        assert all(s == 200 for _, s, _ in after_first_ok)
        ok_ids = [b["id"] for _, s, b in results if s == 200]
        assert len(ok_ids) == len(set(ok_ids)), "an id was given out twice"
        epochs = {_id(i)[0] for i in ok_ids}
        assert len(epochs) == 2 and _id(ok_ids[-1])[0] != _id(last_old_id)[0]

        for recorder in recorders:
            assert recorder.closed is None, recorder.closed  # still connected
            seen: list[tuple[str, int]] = [_id(e["id"]) for e in recorder.events()]
            assert len(seen) == len(set(seen)), "a client got an id twice"
            for (e1, o1), (e2, o2) in itertools.pairwise(seen):
                assert e1 != e2 or o2 > o1, f"id went back: {e1}:{o1} -> {e2}:{o2}"
            # The epoch change reached the client as a loss, before the new epoch's events.
            first_new = next(
                i
                for i, m in enumerate(recorder.messages)
                if m.get("id") and _id(m["id"])[0] == _id(ok_ids[-1])[0]
            )
            losses = [
                m
                for m in recorder.messages[:first_new]
                if m["type"] == "messages_dropped" and m["data"]["channel"] == "logs"
            ]
            assert any(m["data"].get("reason") == "history_reset" for m in losses), (
                recorder.messages[first_new - 3 : first_new + 1]
            )
            # Nothing published after the switch is missing.
            got = {e["id"] for e in recorder.events()}
            new_ids = [i for i in ok_ids if _id(i)[0] == _id(ok_ids[-1])[0]]
            assert set(new_ids) <= got

        # A resume from an id of the old epoch reports the loss.
        async with connect(
            servers[1].ws_url(f"/ws/logs?since={last_old_id}"),
            additional_headers=bearer(token("carol", "user")),
            open_timeout=10,
        ) as ws:
            hello = await recv_until(ws, "connection_established", timeout=10)
            assert hello["data"]["recovered"] == {"logs": False}

        switch = recovered_at - first_bad
        print(
            f"\nSentinel failover (3 sentinels, quorum 2, down-after 1 s): "
            f"{before} publishes before the kill, {len(bad)} answered 503, "
            f"first 503 {first_bad - killed_at:.2f} s after the SIGKILL, "
            f"switch (first 503 -> first 200) {switch:.2f} s, "
            f"kill -> first 200 {recovered_at - killed_at:.2f} s; last id {last_new}"
        )
        assert switch < 60
    finally:
        await stack.aclose()


def _tcp_port(info: bytes) -> int:
    line = next(x for x in info.splitlines() if x.startswith(b"tcp_port:"))
    return int(line.split(b":")[1])


async def test_a_held_connection_breaks_and_the_next_one_reaches_the_new_master(
    group: SentinelGroup,
) -> None:
    """The publish pipeliner's way: a connection taken from the unretried pool and kept
    fails once the master is killed; a new one from the same pool, after the sentinels
    promoted the replica, reaches the replica. The retried client follows too."""
    conn = Connection(group.url(), prefix=new_prefix(), node="test")
    conn.open()
    try:
        pool = conn.unretried.connection_pool
        held = await pool.get_connection()
        await held.send_command("INFO", "server")
        assert _tcp_port(await held.read_response()) == group.master_port
        group.kill_master()
        with pytest.raises(REDIS_ERRORS):
            await held.send_command("PING")
            await held.read_response()
        await pool.release(held)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        failures = 0
        while True:
            try:
                fresh = await pool.get_connection()
                break
            except REDIS_ERRORS:  # refused by the dead master, or no master named yet
                failures += 1
                assert loop.time() < deadline, "no master after 60 s"
                await asyncio.sleep(0.1)
        await fresh.send_command("INFO", "server")
        assert _tcp_port(await fresh.read_response()) == group.replica_port
        await pool.release(fresh)
        assert (await conn.redis.info("replication"))["role"] == "master"
        assert failures > 0  # the switch was seen as failures, not as a hang
    finally:
        await conn.close()
