"""Recovery: a subscription being set up ("warming"), and what it gets once it is.

While a subscription is set up (history read from the backplane, initial state
computed), the live events of its channel are held in its :class:`Warming` entry
instead of being queued; when set-up is done, the hub sends, in one synchronous step,
the reply, the initial state, the replayed events and the held ones. The pure rules of
that step are here: :func:`merge_replay` (replay, then the held events the replay does
not already hold: no gap, no duplicate), :func:`initial_is_current` and :func:`hold`
(the held events' bound, with the slow-client policy).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ..events import Event, EventId
from ..filters import Filter
from .connection import OPEN, Connection
from .outbox import Outbox

__all__ = [
    "Held",
    "Recovery",
    "Warming",
    "hold",
    "initial_is_current",
    "merge_replay",
]


class Warming:
    """A subscription being set up: live events are held here until history and
    initial state have been sent, so there is no gap and no duplicate."""

    __slots__ = ("conn", "filter", "pending")

    def __init__(self, conn: Connection, filter: Filter | None) -> None:
        self.conn = conn
        self.filter = filter
        self.pending: list[Event] = []

    def match(self, event: Event) -> bool:
        f = self.filter
        return (f is None or f.matches(event.type, event.data)) and self.conn.accepts(event)


class Held(enum.Enum):
    """What :func:`hold` did with an event."""

    HELD = "held"
    #: Held, and the oldest held event was dropped to make room (drop_oldest).
    DROPPED_OLDEST = "dropped_oldest"
    #: Not held: the held events are at the bound (disconnect).
    REFUSED = "refused"


def hold(pending: list[Event], event: Event, limit: int, drop_oldest: bool) -> Held:
    """Append ``event`` to ``pending``, which holds at most ``limit`` events: when it is
    full, ``drop_oldest`` drops the oldest to make room, else ``event`` is refused.
    Pure (changes ``pending`` only)."""
    if len(pending) >= limit:
        if not drop_oldest:
            return Held.REFUSED
        pending.pop(0)
        pending.append(event)
        return Held.DROPPED_OLDEST
    pending.append(event)
    return Held.HELD


def merge_replay(
    replay: Sequence[Event] | None, pending: Sequence[Event], since: EventId | None
) -> list[Event]:
    """The events a subscription gets once set up, oldest first: the replay of what it
    missed after ``since`` (None: none was asked, or it could not be recovered), then
    the live events held during set-up (``pending``, in arrival order) that the replay
    does not already hold. Held events of the replay's epoch at or before the replay's
    end (or ``since``, for an empty replay) are the replay's; those of another epoch (a
    new history) are kept. Pure."""
    if replay is None:
        return list(pending)
    cut = replay[-1].id if replay else since
    if cut is None:
        raise ValueError("a replay needs the position it resumes from")
    return [*replay, *(e for e in pending if e.id.epoch != cut.epoch or e.offset > cut.offset)]


def initial_is_current(initial: Event, pending: Sequence[Event]) -> bool:
    """Whether the last event (``initial: last``) is still the initial state: not when an
    event held during set-up is at least as new (that one is delivered instead)."""
    return not pending or initial.offset < pending[0].offset


class Recovery:
    """The subscriptions being set up in one hub, by channel, and their held events'
    bound (``buffer_size``, with the slow_client policy, through the outbox)."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        #: channel -> connection -> its set-up (the hub reads it in every fan-out).
        self.table: dict[str, dict[Connection, Warming]] = {}

    def start(self, conn: Connection, channel: str, filter: Filter | None) -> Warming:
        """From now on, events of ``channel`` for ``conn`` are held (replacing any set-up
        of it in progress)."""
        self.stop(conn, channel)
        w = Warming(conn, filter)
        self.table.setdefault(channel, {})[conn] = w
        return w

    def stop(self, conn: Connection, channel: str) -> Warming | None:
        """Stop holding events of ``channel`` for ``conn``; returns its set-up, if any."""
        table = self.table.get(channel)
        if not table:
            return None
        w = table.pop(conn, None)
        if not table:
            del self.table[channel]
        return w

    def discard(self, conn: Connection, channel: str) -> None:
        """Stop setting up ``channel`` for ``conn``; the events held for it are lost."""
        warming = self.stop(conn, channel)
        if warming is not None:
            self._outbox.messages_dropped += len(warming.pending)

    def hold(self, warming: dict[Connection, Warming], event: Event) -> int:
        """Hold ``event`` for each set-up of its channel (``warming``) it matches;
        returns how many hold it."""
        outbox = self._outbox
        limit, drop_oldest = outbox.buffer_size, outbox.drop_oldest
        count = 0
        for w in warming.values():
            if w.conn.state is not OPEN or not w.match(event):
                continue
            held = hold(w.pending, event, limit, drop_oldest)
            if held is Held.REFUSED:
                outbox.messages_dropped += 1  # this event
                outbox.overflow(w.conn)
                continue
            if held is Held.DROPPED_OLDEST:
                outbox.count_drop(w.conn, event.channel)
            count += 1
        return count
