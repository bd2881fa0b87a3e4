"""hub/outbox.py and hub/connection.py without a hub: the queues, their bound and the
slow-client policy, the writes, and a connection's state (open, closing, closed)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from sanic_realtime.config import parse_config
from sanic_realtime.events import Event, EventId
from sanic_realtime.framing import text_frame
from sanic_realtime.hub.connection import CLOSED, CLOSING, OPEN, Connection
from sanic_realtime.hub.outbox import CONTROL_MARGIN, Outbox

from .conftest import BASE
from .fakes import FakeSocket


class Rig:
    def __init__(self, **overrides: Any) -> None:
        self.aborted: list[tuple[str, int, str]] = []
        self.unregistered: list[str] = []
        self.flushes = 0
        self.outbox = Outbox(
            parse_config({**BASE, **overrides}),
            timestamp=lambda: "2026-01-01T00:00:00.000Z",
            abort=lambda c, code, reason: self.aborted.append((c.id, code, reason)),
            unregister=lambda c: self.unregistered.append(c.id),
            spawn=self.spawn,
            flush=self.flush,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        asyncio.get_running_loop().create_task(coro)

    def flush(self) -> None:
        self.flushes += 1
        self.outbox.flush_scheduled = False
        self.outbox.write_dirty()

    def conn(self, name: str = "c", **socket: Any) -> tuple[Connection, FakeSocket]:
        s = FakeSocket(**socket)
        return Connection(name, s, None, 0.0), s


def frame(n: int) -> bytes:
    return text_frame(Event("logs", "log", EventId("ep", n), 0.0, {"n": n}).payload)


def event(n: int, **kw: Any) -> Event:
    return Event("logs", "log", EventId("ep", n), 0.0, {"n": n}, **kw)


# --------------------------------------------------------------------------- state


def test_a_connection_only_moves_forward_and_the_first_close_code_counts() -> None:
    conn, _ = Rig().conn()
    assert conn.state is OPEN and not conn.closing
    conn.begin_closing(4008, "slow")
    conn.begin_closing(1001, "shutdown")
    assert conn.state is CLOSING and conn.closing
    assert (conn.close_code, conn.close_reason) == (4008, "slow")
    assert conn.end_status() == (4008, "slow")
    conn.mark_closed()
    conn.begin_closing(1011, "late")
    assert conn.state is CLOSED and conn.closing


def test_end_status_falls_back_on_the_handshake_then_1006() -> None:
    conn, socket = Rig().conn()
    assert conn.end_status() == (1006, "no close frame")
    socket.closed_with = (1000, "bye")
    assert conn.end_status() == (1000, "bye")


# --------------------------------------------------------------------------- fan-out


async def test_fan_out_writes_directly_what_it_can_and_queues_the_rest() -> None:
    rig = Rig()
    idle, s_idle = rig.conn("idle")
    busy, s_busy = rig.conn("busy")
    full, s_full = rig.conn("full", writable=False)
    gone, _ = rig.conn("gone")
    gone.begin_closing()
    rig.outbox.enqueue(busy, "logs", frame(0))  # something queued: no direct write
    got, wrote = rig.outbox.fan_out(
        [idle, busy, full, gone], "logs", frame(1), event(1), False, True
    )
    assert (got, wrote) == (3, 1)
    assert s_idle.writes == 1 and not idle.queue
    assert len(busy.queue) == 2 and len(full.queue) == 1 and not gone.queue
    # Not direct (a flush is pending): everything is queued.
    assert rig.outbox.fan_out([idle], "logs", frame(2), event(2), False, False) == (1, 0)
    assert s_idle.writes == 1 and len(idle.queue) == 1
    await asyncio.sleep(0)  # the flush: one write per connection
    assert (s_idle.writes, s_busy.writes, s_full.writes) == (2, 1, 0)
    assert full.blocked  # waits for its transport


def test_targeted_events_go_only_to_their_connections() -> None:
    rig = Rig()
    conn, socket = rig.conn()
    assert rig.outbox.fan_out([conn], "logs", frame(1), event(1, user_id="x"), True, True) == (0, 0)
    assert socket.writes == 0 and not conn.queue


# --------------------------------------------------------------------------- bound, policy


async def test_full_queue_of_a_slow_client_disconnects_4008() -> None:
    rig = Rig(buffer_size=2)
    conn, _ = rig.conn(writable=False)
    assert [rig.outbox.enqueue(conn, "logs", frame(n)) for n in range(3)] == [True, True, False]
    assert conn.state is CLOSING and conn.close_code == 4008
    assert (rig.outbox.messages_dropped, rig.outbox.slow_disconnects) == (1, 1)
    assert not rig.outbox.enqueue(conn, None, frame(9))  # closing: nothing new
    await asyncio.sleep(0)
    assert rig.aborted == [("c", 4008, "slow consumer: buffer of 2 events full")]


async def test_full_queue_of_a_fast_client_is_written_not_dropped() -> None:
    rig = Rig(buffer_size=2)
    conn, socket = rig.conn()
    assert all(rig.outbox.enqueue(conn, "logs", frame(n)) for n in range(5))
    assert socket.writes == 2 and len(conn.queue) == 1  # written each time it was full
    assert rig.outbox.messages_dropped == 0


async def test_drop_oldest_reports_the_loss_before_the_next_event() -> None:
    rig = Rig(buffer_size=2, slow_client="drop_oldest")
    conn, socket = rig.conn(writable=False)
    rig.outbox.enqueue(conn, None, frame(100))  # a control message keeps its place
    for n in range(4):
        assert rig.outbox.enqueue(conn, "logs", frame(n))
    assert conn.dropped == {"logs": 2} and rig.outbox.messages_dropped == 2
    socket.set_writable(True)
    assert rig.outbox.write(conn)
    messages = socket.messages()
    assert [m.get("type") for m in messages] == ["log", "messages_dropped", "log", "log"]
    assert messages[1]["data"] == {"channel": "logs", "count": 2}
    assert [m["data"]["n"] for m in messages if m["type"] == "log"] == [100, 2, 3]
    assert socket.writes == 1 and not conn.dropped


async def test_unread_control_replies_are_bounded_too() -> None:
    rig = Rig(buffer_size=2)
    conn, _ = rig.conn(writable=False)
    results = [rig.outbox.enqueue(conn, None, frame(n)) for n in range(2 + CONTROL_MARGIN + 1)]
    assert results[-1] is False and all(results[:-1])
    assert conn.close_code == 4008 and "too many unread replies" in conn.close_reason


# --------------------------------------------------------------------------- writes


async def test_a_failed_write_closes_that_connection_1011() -> None:
    rig = Rig()
    conn, socket = rig.conn()
    rig.outbox.enqueue(conn, "logs", frame(1))
    rig.outbox.enqueue(conn, "logs", frame(2))
    socket.fail_writes = True
    assert not rig.outbox.write(conn)
    assert conn.state is CLOSING and rig.outbox.messages_dropped == 2
    await asyncio.sleep(0)
    assert rig.aborted == [("c", 1011, "write failed")]


async def test_a_closed_socket_is_unregistered_soon() -> None:
    rig = Rig()
    conn, socket = rig.conn()
    conn.dropped["logs"] = 1  # no single-frame shortcut
    rig.outbox.enqueue(conn, "logs", frame(1))
    socket.open = False
    assert not rig.outbox.write(conn)
    assert conn.state is CLOSING
    await asyncio.sleep(0)
    assert rig.unregistered == ["c"]


async def test_a_blocked_connection_is_written_when_it_drains() -> None:
    rig = Rig()
    conn, socket = rig.conn(writable=False)
    rig.outbox.enqueue(conn, "logs", frame(1))
    rig.outbox.enqueue(conn, "logs", frame(2))
    assert not rig.outbox.write(conn) and conn.blocked
    socket.set_writable(True)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not conn.blocked and not conn.queue and socket.writes == 1
    assert rig.outbox.messages_sent == 2


async def test_close_drains_everything_first_and_discard_counts_the_rest() -> None:
    rig = Rig()
    conn, socket = rig.conn(writable=False)
    for n in range(3):
        rig.outbox.enqueue(conn, "logs", frame(n))
    drain = asyncio.create_task(rig.outbox.drain_and_close(conn, 1001, "bye"))
    await asyncio.sleep(0)
    assert not drain.done()
    socket.set_writable(True)
    await drain
    assert [m["data"]["n"] for m in socket.messages()] == [0, 1, 2]
    assert socket.closed_with == (1001, "bye")  # after everything queued
    other, _ = rig.conn("other", writable=False)
    rig.outbox.enqueue(other, "logs", frame(1))
    rig.outbox.discard(other)
    assert not other.queue and other.events == 0 and rig.outbox.messages_dropped == 1
