"""hub/liveness.py without a hub: heartbeats and timeouts driven by a fake clock, token
expiry with a fake wall clock (the live behaviour is in tests/test_liveness.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from sanic_realtime.auth import Identity
from sanic_realtime.config import parse_config
from sanic_realtime.hub.connection import Connection
from sanic_realtime.hub.liveness import Liveness, expiry_delay, ping_payload, tick_interval

from .conftest import BASE
from .fakes import FakeSocket


class Rig:
    """A Liveness over a plain dict of connections; abort and close are recorded."""

    def __init__(self, **overrides: Any) -> None:
        self.now = 0.0
        self.wall = 1_000_000.0
        self.conns: dict[str, Connection] = {}
        self.aborted: list[tuple[str, int, str]] = []
        self.closed: list[tuple[str, int, str]] = []
        self.closed_one = asyncio.Event()
        self.config = parse_config({**BASE, **overrides})
        self.liveness = Liveness(
            self.config,
            self.conns,
            clock=lambda: self.wall,
            monotonic=lambda: self.now,
            abort=self.abort,
            close=self.close,
            spawn=self.spawn,
        )

    def add(self, name: str, identity: Identity | None = None) -> tuple[Connection, FakeSocket]:
        socket = FakeSocket()
        conn = self.conns[name] = Connection(name, socket, identity, self.now)
        return conn, socket

    def abort(self, conn: Connection, code: int, reason: str) -> None:
        self.aborted.append((conn.id, code, reason))
        conn.begin_closing(code, reason)

    async def close(self, conn: Connection, code: int, reason: str) -> None:
        self.closed.append((conn.id, code, reason))
        self.closed_one.set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        asyncio.get_running_loop().create_task(coro)


def test_pure_parts() -> None:
    assert tick_interval(10.0, 25.0) == 2.5
    assert tick_interval(0.1, 25.0) == 0.05  # at least 50 ms
    assert tick_interval(60.0, 120.0) == 5.0  # at most 5 s
    payloads = {ping_payload(n) for n in range(1, 1000)}
    assert len(payloads) == 999 and all(len(p) == 8 for p in payloads)
    assert expiry_delay(None, 5.0, 100.0) is None
    assert expiry_delay(Identity(user_id="a"), 5.0, 100.0) is None
    assert expiry_delay(Identity(user_id="a", expires_at=110.0), 5.0, 100.0) == 15.0
    assert expiry_delay(Identity(user_id="a", expires_at=90.0), 5.0, 100.0) == 0.0


def test_pings_are_due_per_connection_and_share_one_frame() -> None:
    rig = Rig(heartbeat_interval="10s", client_timeout="25s")
    a, sa = rig.add("a")
    _, sc = rig.add("c")
    rig.now = 4.0
    b, sb = rig.add("b")  # joined later: pinged later
    rig.now = 10.0
    rig.liveness.tick()
    assert (len(sa.pings), len(sb.pings), len(sc.pings)) == (1, 0, 1)
    assert sa.ping_frames[0] == sc.ping_frames[0]  # one frame for all in a tick
    rig.now = 14.0
    rig.liveness.tick()
    assert (len(sa.pings), len(sb.pings)) == (1, 1)
    assert sb.ping_frames[0] != sa.ping_frames[0]  # a new payload each tick
    rig.now = 20.0
    rig.liveness.tick()
    assert len(sa.pings) == 2 and len(sb.pings) == 1
    assert a.last_ping == 20.0 and b.last_ping == 14.0


def test_a_pong_or_any_frame_is_traffic_and_silence_times_out() -> None:
    rig = Rig(heartbeat_interval="10s", client_timeout="25s")
    quiet, _ = rig.add("quiet")
    lively, socket = rig.add("lively")
    rig.now = 10.0
    rig.liveness.tick()
    socket.pings[0]()  # the pong
    assert lively.last_seen == 10.0
    rig.now = 20.0
    rig.liveness.touch(quiet)  # a message
    rig.now = 40.0
    rig.liveness.tick()
    assert rig.aborted == [("lively", 1011, "client timeout: nothing received for 25s")]
    rig.now = 46.0
    rig.liveness.tick()
    assert [a[0] for a in rig.aborted] == ["lively", "quiet"]


def test_blocked_and_closing_connections_are_not_pinged() -> None:
    rig = Rig(heartbeat_interval="10s", client_timeout="25s")
    blocked, bs = rig.add("blocked")
    closing, cs = rig.add("closing")
    blocked.blocked = True  # its transport is full: a ping would queue behind events
    closing.begin_closing()
    rig.now = 30.0
    rig.liveness.tick()
    assert bs.pings == [] and cs.pings == []
    assert [a[0] for a in rig.aborted] == ["blocked"]  # silent too long, blocked or not


async def test_token_expiry_closes_1008_at_exp_plus_leeway() -> None:
    rig = Rig(auth={"leeway": "50ms"})
    conn, _ = rig.add("c", Identity(user_id="a", expires_at=rig.wall + 0.05))
    rig.liveness.schedule_expiry(conn)
    assert conn.expiry is not None
    assert 0.09 < conn.expiry.when() - asyncio.get_running_loop().time() <= 0.1
    await asyncio.wait_for(rig.closed_one.wait(), 5)
    assert rig.closed == [("c", 1008, "token expired")]
    assert conn.expiry is None


async def test_rescheduling_or_closing_cancels_the_expiry() -> None:
    rig = Rig()
    conn, _ = rig.add("c", Identity(user_id="a", expires_at=rig.wall + 0.05))
    rig.liveness.schedule_expiry(conn)
    first = conn.expiry
    conn.set_identity(Identity(user_id="a"))  # refreshed, no exp any more
    rig.liveness.schedule_expiry(conn)
    assert first is not None and first.cancelled() and conn.expiry is None
    gone, _ = rig.add("gone", Identity(user_id="b", expires_at=rig.wall))
    rig.liveness.schedule_expiry(gone)
    gone.begin_closing()  # closed for another reason before the timer fired
    await asyncio.sleep(0.02)
    assert rig.closed == []
