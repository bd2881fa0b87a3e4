"""Cluster-wide ``max_connections_per_user`` (``connection_limits: cluster``): the config
checks, then two server processes (the real `sanic` command line, this module's
``create_app``) sharing the machine's Redis, with real websockets clients of one user on
both: the limit holds across them, a close frees a slot for the other process, a
handshake refused after its claim leaves no slot taken, a stopped or SIGKILLed process
stops counting, Redis down refuses (503) and the counts come back after, and the default
``process`` mode counts each process on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from sanic import Sanic
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sanic_realtime import Realtime
from sanic_realtime.backplanes.redis.presence import HEARTBEAT
from sanic_realtime.config import parse_config
from sanic_realtime.exceptions import ConfigError

from .conftest import BASE, recv_json
from .processes import SanicProcess
from .redis_support import RedisServer, delete_prefix, new_prefix, redis_url
from .tokens import SECRET, bearer, token

LIMIT = 2


def create_app() -> Sanic:
    """The app of each server process: BASE's channels and ``secret``, which the
    ``authorize`` hook refuses to everyone (403 after the slot was claimed)."""
    config = parse_config(
        {
            "channels": {**BASE["channels"], "secret": {}},
            "backplane": os.environ["RT_BACKPLANE"],
            "redis": {"prefix": os.environ["RT_PREFIX"]},
            "auth": {"mode": "jwt", "jwt_secret": SECRET},
            "max_connections_per_user": LIMIT,
            "connection_limits": os.environ.get("RT_LIMITS", "cluster"),
        }
    )
    realtime = Realtime(config)

    @realtime.authorize("secret")
    async def nobody(request: Any, identity: Any, params: dict[str, str]) -> bool:
        return False

    app = Sanic("cluster_limits_app")
    app.config.AUTO_EXTEND = False
    app.blueprint(realtime.blueprint)
    return app


# ------------------------------------------------------------------ config (no loop)


def test_cluster_limits_need_a_redis_backplane() -> None:
    """``connection_limits: cluster`` with the memory backplane names both settings."""
    with pytest.raises(ConfigError) as info:
        parse_config({"connection_limits": "cluster", "max_connections_per_user": 2})
    message = str(info.value)
    assert "connection_limits" in message and "backplane" in message


def test_connection_limits_is_process_or_cluster() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"connection_limits": "everywhere"})
    assert "connection_limits" in str(info.value)
    assert parse_config({}).connection_limits == "process"
    config = parse_config({"connection_limits": "cluster", "backplane": "redis://localhost"})
    assert config.connection_limits == "cluster"


# ------------------------------------------------------------------ two processes

Start = Callable[..., Awaitable[SanicProcess]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    url, prefix = redis_url(), new_prefix()
    started: list[SanicProcess] = []

    async def run(limits: str = "cluster") -> SanicProcess:
        env = {"RT_BACKPLANE": url, "RT_PREFIX": prefix, "RT_LIMITS": limits}
        process = SanicProcess("tests.test_cluster_limits:create_app", env)
        started.append(process)
        return await process.start()

    yield run
    await asyncio.gather(*(p.stop() for p in started))
    await delete_prefix(url, prefix)


def client(server: SanicProcess, user: str, path: str = "/ws/logs") -> Any:
    return connect(
        server.ws_url(path), additional_headers=bearer(token(user, "user")), open_timeout=15
    )


async def opened(stack: contextlib.AsyncExitStack, server: SanicProcess, user: str) -> Any:
    ws = await stack.enter_async_context(client(server, user))
    message = await recv_json(ws)
    assert message["type"] == "connection_established", message
    return ws


async def refusal(server: SanicProcess, user: str, path: str = "/ws/logs") -> tuple[int, Any]:
    """Status and error body of a refused handshake."""
    with pytest.raises(InvalidStatus) as info:
        async with client(server, user, path):
            pass
    response = info.value.response
    return response.status_code, json.loads(response.body)["error"]


async def until_served(server: SanicProcess, user: str, timeout: float = 30.0) -> float:
    """Connect (and close) until the handshake is served; how long it took."""
    begun = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            try:
                async with client(server, user) as ws:
                    assert (await recv_json(ws))["type"] == "connection_established"
                    return time.monotonic() - begun
            except InvalidStatus as e:
                assert e.response.status_code == 429, e.response.body
            await asyncio.sleep(0.1)


async def assert_full(servers: tuple[SanicProcess, ...], user: str) -> None:
    for server in servers:
        status, error = await refusal(server, user)
        assert (status, error["code"]) == (429, "too_many_connections"), error
        assert repr(user) in error["message"] and str(LIMIT) in error["message"]


async def test_the_limit_holds_across_processes_and_a_close_frees_a_slot(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with contextlib.AsyncExitStack() as stack:
        on_a = await opened(stack, a, "alice")
        await opened(stack, b, "alice")
        await assert_full((a, b), "alice")
        # Another user is not affected.
        async with contextlib.AsyncExitStack() as other:
            await opened(other, a, "bob")
            await opened(other, b, "bob")
        await on_a.close()
        # The close is given back by a's task, not awaited by the close: poll.
        took = await until_served(b, "alice")
        print(f"slot free on b {took:.3f}s after a close on a")
        await opened(stack, b, "alice")
        await assert_full((a, b), "alice")


async def test_a_handshake_refused_after_its_claim_leaves_no_slot(start: Start) -> None:
    """403 from the authorize hook (after the claim), and 429s: none keeps a slot."""
    a, b = await asyncio.gather(start(), start())
    for server in (a, b, a, b, a):
        status, error = await refusal(server, "carol", "/ws/secret")
        assert (status, error["code"]) == (403, "forbidden"), error
    async with contextlib.AsyncExitStack() as stack:
        await opened(stack, a, "carol")
        await opened(stack, b, "carol")
        for _ in range(3):
            await assert_full((a, b), "carol")
    # Both closed: both slots come back.
    await until_served(a, "carol")
    async with contextlib.AsyncExitStack() as stack:
        await opened(stack, a, "carol")
        await opened(stack, a, "carol")
        await assert_full((b,), "carol")


async def test_a_stopped_process_gives_its_slots_back(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with contextlib.AsyncExitStack() as stack:
        await opened(stack, b, "dave")
        await opened(stack, b, "dave")
        await assert_full((a,), "dave")
        await b.stop()  # SIGTERM: a graceful stop closes dave's connections
        took = await until_served(a, "dave")
        print(f"slots free on a {took:.3f}s after b stopped")
        async with contextlib.AsyncExitStack() as more:
            await opened(more, a, "dave")
            await opened(more, a, "dave")
            await assert_full((a,), "dave")


async def test_a_killed_process_stops_counting(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with contextlib.AsyncExitStack() as stack:
        await opened(stack, b, "erin")
        await opened(stack, b, "erin")
        await assert_full((a,), "erin")
        assert b.process is not None
        killed = time.monotonic()
        os.killpg(b.process.pid, signal.SIGKILL)
        await until_served(a, "erin", timeout=60)
        took = time.monotonic() - killed
        # Its heartbeat expires 3 * HEARTBEAT after its last beat; a's next beat sees it.
        print(f"SIGKILLed process stopped counting after {took:.2f}s (~{4 * HEARTBEAT:g}s)")
        await opened(stack, a, "erin")
        await opened(stack, a, "erin")
        await assert_full((a,), "erin")


async def test_process_mode_counts_each_process_on_its_own(start: Start) -> None:
    a, b = await asyncio.gather(start("process"), start("process"))
    async with contextlib.AsyncExitStack() as stack:
        for server in (a, a, b, b):
            await opened(stack, server, "frank")
        for server in (a, b):
            status, error = await refusal(server, "frank")
            assert (status, error["code"]) == (429, "too_many_connections"), error
            assert "'frank'" in error["message"]


# ------------------------------------------------------------------ Redis goes away


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.close()


async def test_redis_down_refuses_and_counts_come_back(own_redis: RedisServer) -> None:
    """Redis down: a connect is refused with 503 backplane_unavailable (fail closed); a
    close meanwhile is given back later; Redis back empty: each process re-registers
    what it holds, and the limit holds again."""
    env = {"RT_BACKPLANE": own_redis.url, "RT_PREFIX": new_prefix(), "RT_LIMITS": "cluster"}
    a = SanicProcess("tests.test_cluster_limits:create_app", env)
    b = SanicProcess("tests.test_cluster_limits:create_app", env)
    try:
        await asyncio.gather(a.start(), b.start())
        async with contextlib.AsyncExitStack() as stack:
            first = await opened(stack, b, "gina")
            await opened(stack, b, "gina")
            await assert_full((a,), "gina")
            await own_redis.stop()
            async with asyncio.timeout(30):
                while True:
                    status, error = await refusal(a, "gina")
                    if status == 503:
                        break
                    await asyncio.sleep(0.1)
            assert error["code"] == "backplane_unavailable", error
            await first.close()  # its release fails: retried once Redis is back
            await own_redis.start()  # empty
            key = f"{env['RT_PREFIX']}:uconn:gina"
            client_ = Redis.from_url(own_redis.url)
            try:
                async with asyncio.timeout(30):
                    while True:
                        if list((await client_.hgetall(key)).values()) == [b"1"]:
                            break
                        await asyncio.sleep(0.1)
            finally:
                await client_.aclose()
            await until_served(a, "gina")
            await opened(stack, a, "gina")
            await assert_full((a, b), "gina")
    finally:
        await asyncio.gather(a.stop(), b.stop())
