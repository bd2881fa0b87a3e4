"""hub/recovery.py: the replay merge (pure), the held events' bound, and the set-ups
in progress (their held events are dropped and counted when a set-up is abandoned)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sanic_realtime.auth import Identity
from sanic_realtime.config import parse_config
from sanic_realtime.events import Event, EventId
from sanic_realtime.filters import compile_filter
from sanic_realtime.hub.connection import CLOSING, OPEN, Connection
from sanic_realtime.hub.outbox import Outbox
from sanic_realtime.hub.recovery import (
    Held,
    Recovery,
    Warming,
    hold,
    initial_is_current,
    merge_replay,
)

from .conftest import BASE
from .fakes import FakeSocket


def ev(offset: int, epoch: str = "ep", channel: str = "logs", **data: Any) -> Event:
    return Event(channel, "log", EventId(epoch, offset), 0.0, data or {"n": offset})


def offsets(events: list[Event]) -> list[int]:
    return [e.offset for e in events]


# --------------------------------------------------------------------------- merge_replay


def test_no_replay_gives_the_held_events_in_arrival_order() -> None:
    pending = [ev(7), ev(8), ev(9)]
    merged = merge_replay(None, pending, None)
    assert merged == pending and merged is not pending


def test_replay_then_live_without_the_overlap() -> None:
    """Events held during set-up that the replay already holds are not sent twice."""
    replay = [ev(3), ev(4), ev(5), ev(6)]
    pending = [ev(5), ev(6), ev(7), ev(8)]  # live events that arrived while reading it
    merged = merge_replay(replay, pending, EventId("ep", 2))
    assert offsets(merged) == [3, 4, 5, 6, 7, 8]
    assert merged[:4] == replay and merged[4:] == pending[2:]  # the replay's own objects


#: (since, replay's end, first held offset): every way a replay and the held events meet
#: (the first held event is never newer than the replay's end + 1: the subscription was
#: warming before the replay was read).
SWITCHES = [
    (since, end, start)
    for since in (0, 2, 5)
    for end in (since, since + 1, since + 4, 9)
    for start in (1, since + 1, end, end + 1)
    if start <= end + 1
]


@pytest.mark.parametrize(("since", "replay_end", "live_start"), sorted(set(SWITCHES)))
def test_switch_from_replay_to_live_has_no_gap_and_no_duplicate(
    since: int, replay_end: int, live_start: int
) -> None:
    """Wherever the replay ends and the held events start, the client gets since+1 ..
    the newest, each once, ordered by offset."""
    replay = [ev(n) for n in range(since + 1, replay_end + 1)]
    pending = [ev(n) for n in range(max(live_start, 1), 12)]
    merged = merge_replay(replay, pending, EventId("ep", since))
    assert offsets(merged) == list(range(since + 1, 12))


def test_empty_replay_cuts_at_since() -> None:
    """Nothing missed: held events up to ``since`` are the client's already."""
    merged = merge_replay([], [ev(4), ev(5), ev(6)], EventId("ep", 5))
    assert offsets(merged) == [6]


def test_held_events_of_another_epoch_are_kept() -> None:
    """A new history (the epoch changed) is not the replay's: nothing of it is cut."""
    merged = merge_replay([ev(3), ev(4)], [ev(1, "new"), ev(2, "new")], EventId("ep", 2))
    assert [str(e.id) for e in merged] == ["ep:3", "ep:4", "new:1", "new:2"]


def test_a_replay_needs_its_position() -> None:
    with pytest.raises(ValueError):
        merge_replay([], [ev(1)], None)


def test_initial_last_gives_way_to_a_newer_held_event() -> None:
    assert initial_is_current(ev(5), [])
    assert initial_is_current(ev(5), [ev(6), ev(7)])
    assert not initial_is_current(ev(5), [ev(5)])
    assert not initial_is_current(ev(5), [ev(4)])


# --------------------------------------------------------------------------- hold


def test_hold_is_bounded_with_the_slow_client_policy() -> None:
    pending: list[Event] = []
    assert [hold(pending, ev(n), 2, False) for n in (1, 2)] == [Held.HELD, Held.HELD]
    assert hold(pending, ev(3), 2, False) is Held.REFUSED  # disconnect: not held
    assert offsets(pending) == [1, 2]
    assert hold(pending, ev(3), 2, True) is Held.DROPPED_OLDEST
    assert offsets(pending) == [2, 3]


def test_warming_matches_filter_and_target() -> None:
    config = parse_config(BASE)
    f = compile_filter("logs", config.channels["logs"].filters, {"level": "error"})
    conn = Connection("c", FakeSocket(), Identity(user_id="alice"), 0.0)
    w = Warming(conn, f)
    assert w.match(ev(1, level="error")) and not w.match(ev(2, level="info"))
    other = Event("logs", "log", EventId("ep", 3), 0.0, {"level": "error"}, user_id="bob")
    assert not w.match(other)
    assert Warming(conn, None).match(ev(4))


# --------------------------------------------------------------------------- Recovery


def make_recovery(**overrides: Any) -> tuple[Recovery, Outbox, list[tuple[Connection, int]]]:
    aborted: list[tuple[Connection, int]] = []
    outbox = Outbox(
        parse_config({**BASE, **overrides}),
        timestamp=lambda: "t",
        abort=lambda conn, code, reason: aborted.append((conn, code)),
        unregister=lambda conn: None,
        spawn=lambda coro: coro.close(),
        flush=lambda: None,
    )
    return Recovery(outbox), outbox, aborted


def test_discarding_a_set_up_counts_its_held_events() -> None:
    """As today: a set-up abandoned (client gone, backplane failed) loses what it held,
    counted in messages_dropped; one completed (stop) hands its events over uncounted."""
    recovery, outbox, _ = make_recovery()
    a, b = (Connection(name, FakeSocket(), None, 0.0) for name in "ab")
    recovery.start(a, "logs", None)
    recovery.start(b, "logs", None)
    assert recovery.hold(recovery.table["logs"], ev(1)) == 2
    assert recovery.hold(recovery.table["logs"], ev(2)) == 2
    recovery.discard(a, "logs")
    assert outbox.messages_dropped == 2
    done = recovery.stop(b, "logs")
    assert done is not None and offsets(done.pending) == [1, 2]
    assert outbox.messages_dropped == 2
    assert recovery.table == {}  # the channel's table goes with its last set-up
    recovery.discard(a, "logs")  # nothing left: idempotent
    assert outbox.messages_dropped == 2


def test_starting_again_replaces_a_set_up_in_progress() -> None:
    recovery, _, _ = make_recovery()
    conn = Connection("c", FakeSocket(), None, 0.0)
    first = recovery.start(conn, "logs", None)
    recovery.hold(recovery.table["logs"], ev(1))
    second = recovery.start(conn, "logs", None)
    assert recovery.table["logs"] == {conn: second} and second is not first
    assert second.pending == []


def test_a_closing_connection_holds_nothing() -> None:
    recovery, _, _ = make_recovery()
    conn = Connection("c", FakeSocket(), None, 0.0)
    recovery.start(conn, "logs", None)
    conn.begin_closing()
    assert recovery.hold(recovery.table["logs"], ev(1)) == 0


async def test_held_events_over_the_bound_disconnect_or_drop_the_oldest() -> None:
    """disconnect: the event that finds the set-up full is counted and the client is
    closed as slow (4008); drop_oldest: the oldest held goes, reported later."""
    recovery, outbox, aborted = make_recovery(buffer_size=2)
    conn = Connection("c", FakeSocket(), None, 0.0)
    recovery.start(conn, "logs", None)
    table = recovery.table["logs"]
    assert [recovery.hold(table, ev(n)) for n in (1, 2, 3)] == [1, 1, 0]
    assert (outbox.messages_dropped, outbox.slow_disconnects) == (1, 1)
    assert conn.state is CLOSING and conn.close_code == 4008
    await asyncio.sleep(0)
    assert aborted == [(conn, 4008)]

    recovery, outbox, aborted = make_recovery(buffer_size=2, slow_client="drop_oldest")
    conn = Connection("c", FakeSocket(), None, 0.0)
    w = recovery.start(conn, "logs", None)
    assert [recovery.hold(recovery.table["logs"], ev(n)) for n in (1, 2, 3)] == [1, 1, 1]
    assert offsets(w.pending) == [2, 3]
    assert conn.dropped == {"logs": 1} and outbox.messages_dropped == 1
    assert conn.state is OPEN and not aborted
