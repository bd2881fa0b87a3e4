"""Presence and client messages across server processes on the machine's Redis, started
with the real `sanic` command line (tests/scale_app.py, channel ``rooms.{room}``): one
user on two workers is present once, each join and leave is announced once per
subscriber (not once per worker), client messages cross workers with their sender, and
a worker killed with SIGKILL has its users leave within a bounded time."""

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
from websockets.asyncio.client import connect

from sanic_realtime import Realtime
from sanic_realtime.backplanes.redis.presence import HEARTBEAT
from sanic_realtime.config import parse_config
from sanic_realtime.exceptions import ServerUnavailable

from .conftest import no_message, recv_json, recv_until
from .processes import SanicProcess
from .redis_support import RedisServer, delete_prefix, new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .tokens import SECRET, bearer, token

Start = Callable[..., Awaitable[SanicProcess]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    url, prefix = redis_url(), new_prefix()
    env = {"RT_BACKPLANE": url, "RT_PREFIX": prefix}
    started: list[SanicProcess] = []

    async def run() -> SanicProcess:
        process = SanicProcess("tests.scale_app:create_app", env)
        started.append(process)
        return await process.start()

    yield run
    await asyncio.gather(*(p.stop() for p in started))
    await delete_prefix(url, prefix)


def client(server: SanicProcess, user: str, path: str = "/ws/rooms.a") -> Any:
    return connect(
        server.ws_url(path), additional_headers=bearer(token(user, "user")), open_timeout=10
    )


#: id(ws) -> the presence changes it got while a test waited for something else
_SEEN: dict[int, list[tuple[str, str]]] = {}


def _note(ws: Any, message: dict[str, Any]) -> None:
    if message["type"] in ("presence_join", "presence_leave"):
        _SEEN.setdefault(id(ws), []).append((message["type"], message["data"]["user_id"]))


async def presence(ws: Any, ref: str = "q") -> dict[str, Any]:
    await ws.send(json.dumps({"type": "presence", "channel": "rooms.a", "ref": ref}))
    while True:
        message = await recv_json(ws)
        if message["type"] == "presence":
            return message["data"]  # type: ignore[no-any-return]
        _note(ws, message)


def users_of(data: dict[str, Any]) -> dict[str, int]:
    return {u["user_id"]: u["connections"] for u in data["users"]}


async def changes(ws: Any, wait: float) -> list[tuple[str, str]]:
    """The presence_join / presence_leave messages ``ws`` gets within ``wait`` seconds."""
    out: list[tuple[str, str]] = _SEEN.pop(id(ws), [])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        try:
            message = await recv_json(ws, left)
        except TimeoutError:
            break
        _note(ws, message)
        out += _SEEN.pop(id(ws), [])
    return out


async def until_present(ws: Any, want: dict[str, int], timeout: float = 10.0) -> dict[str, Any]:
    """Ask until the users present are ``want`` (changes reach Redis through a queue)."""
    async with asyncio.timeout(timeout):
        while True:
            data = await presence(ws)
            if users_of(data) == want:
                return data
            await asyncio.sleep(0.1)


async def test_one_user_on_two_workers_is_present_once_and_announced_once(
    start: Start,
) -> None:
    a, b = await asyncio.gather(start(), start())
    async with client(a, "carol") as carol, client(b, "dave") as dave:
        for ws in (carol, dave):
            await recv_json(ws)
        await until_present(carol, {"carol": 1, "dave": 1})
        await changes(carol, 0.3)
        await changes(dave, 0.3)
        async with client(a, "alice") as tab1, client(b, "alice") as tab2:
            await recv_json(tab1)
            await recv_json(tab2)
            data = await until_present(dave, {"alice": 2, "carol": 1, "dave": 1})
            assert (data["count"], data["anonymous"]) == (3, 0)
            # One join for alice at each observer, though she came in through both.
            assert await changes(carol, 1.0) == [("presence_join", "alice")]
            assert await changes(dave, 0.2) == [("presence_join", "alice")]
            await tab1.close()
            await until_present(carol, {"alice": 1, "carol": 1, "dave": 1})
            assert await changes(dave, 1.0) == []  # still here through worker b
        # Her last connection closed: one leave at each, after leave_delay (500 ms).
        assert await changes(carol, 3.0) == [("presence_leave", "alice")]
        assert await changes(dave, 0.5) == [("presence_leave", "alice")]
        await until_present(dave, {"carol": 1, "dave": 1})
        # A worker's figures name the template.
        response = await a.http.get("/admin/ws/stats", headers=bearer(ADMIN_TOKEN))
        assert response.json()["present_users"].get("rooms.{room}", 0) >= 1


async def test_a_reload_onto_another_worker_announces_nothing(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with client(a, "carol") as carol:
        await recv_json(carol)
        ws = await client(a, "alice").__aenter__()
        await recv_json(ws)
        await until_present(carol, {"alice": 1, "carol": 1})
        await changes(carol, 0.3)
        await ws.close()  # reloaded onto worker b within leave_delay
        async with client(b, "alice") as again:
            await recv_json(again)
            assert await changes(carol, 1.5) == []
            await until_present(carol, {"alice": 1, "carol": 1})


async def test_client_messages_cross_workers_with_their_sender(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with (
        client(a, "alice") as alice,
        client(b, "alice") as other_tab,
        client(b, "bob") as bob,
    ):
        welcome = await recv_json(alice)
        await recv_json(other_tab)
        await recv_json(bob)
        message = {"type": "publish", "channel": "rooms.a", "event": "typing", "data": {}}
        await alice.send(json.dumps({**message, "ref": "t1", "from": {"user_id": "x"}}))
        assert (await recv_until(alice, "published"))["data"] == {"id": None}
        typing = await recv_until(bob, "typing")
        assert typing["id"] is None
        assert typing["from"] == {"user_id": "alice", "client_id": welcome["data"]["client_id"]}
        # Not the sending connection; her other tab does get it.
        assert (await recv_until(other_tab, "typing"))["from"]["user_id"] == "alice"
        chat = {**message, "event": "chat", "data": {"text": "hi"}, "ref": "c1"}
        await alice.send(json.dumps(chat))
        published = await recv_until(alice, "published")
        assert published["ref"] == "c1" and published["data"]["id"]
        line = await recv_until(bob, "chat")
        assert (line["id"], line["from"]["user_id"]) == (published["data"]["id"], "alice")
        # Neither came back to the sending connection (echo: false).
        rest: list[str] = []
        with contextlib.suppress(TimeoutError):
            while True:
                rest.append((await recv_json(alice, 0.5))["type"])
        assert "typing" not in rest and "chat" not in rest, rest


async def test_a_killed_worker_s_users_leave_within_a_bounded_time(start: Start) -> None:
    a, b = await asyncio.gather(start(), start())
    async with client(a, "carol") as carol:
        await recv_json(carol)
        victim = await client(b, "alice").__aenter__()
        await recv_json(victim)
        await until_present(carol, {"alice": 1, "carol": 1})
        await changes(carol, 0.3)
        assert b.process is not None
        killed = time.monotonic()
        os.killpg(b.process.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            while True:
                message = await recv_json(carol, 30)
                if message["type"] == "presence_leave":
                    break
        took = time.monotonic() - killed
        assert message["data"] == {"user_id": "alice", "role": "user"}
        # The figure (in the closing note and docs): its heartbeat expires after
        # 3 * HEARTBEAT, and the next sweep of a living worker (every HEARTBEAT) reaps it.
        print(f"presence_leave {took:.2f}s after SIGKILL (bound {4 * HEARTBEAT:g}s + load)")
        assert took < 4 * HEARTBEAT + 10  # generous: a loaded machine runs late
        await until_present(carol, {"carol": 1})
        await no_message(carol, 0.5)  # once


# ------------------------------------------------------------------ Redis goes away


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    yield server
    await server.close()


async def test_presence_comes_back_after_redis_lost_everything(
    serve: Any, own_redis: RedisServer
) -> None:
    """A Redis restart loses every key: each worker puts its share back at its next
    heartbeat, so the users it holds are present (and announced) again; a query
    while Redis is down is refused, not answered wrong."""
    realtime = Realtime(
        parse_config(
            {
                "backplane": own_redis.url,
                "redis": {"prefix": new_prefix()},
                "auth": {"mode": "jwt", "jwt_secret": SECRET},
                "channels": {"rooms.{room}": {"presence": {"leave_delay": "0s"}}},
            }
        )
    )
    server = await serve(realtime)
    headers = bearer(token("alice", "user"))
    async with server.connect("/ws/rooms.a", additional_headers=headers) as alice:
        await recv_json(alice)
        await until_present(alice, {"alice": 1})
        await own_redis.stop()
        await presence_refused(alice)
        with pytest.raises(ServerUnavailable):
            await realtime.presence("rooms.a")
        await own_redis.start()  # empty
        await until_present(alice, {"alice": 1}, timeout=20)
        assert (await realtime.presence("rooms.a")).count == 1


async def presence_refused(ws: Any) -> None:
    await ws.send(json.dumps({"type": "presence", "channel": "rooms.a", "ref": "down"}))
    while True:
        message = await recv_json(ws, 10)
        if message.get("ref") == "down":
            assert message["type"] == "error", message
            assert message["data"]["code"] == "backplane_unavailable"
            return
