"""What ``sanic-realtime top`` shows, without the screen: per-channel rates and counts, the
recent lines, the filter and the pause, the connection's story. Pure: every method takes
the time it is called at, so tests need no clock and no event loop.

Everything a server can make it hold is bounded: ``recent`` lines (``recent_size``), the
lines waiting for the screen (the same bound), one rate bucket per second of the window
per channel, and the channel rows (``max_channels``; events of further channels are
counted under ``other``).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from rich.text import Text

from ..client import ConnectionStatus, Event
from ..console import event_line, note_of, summary

__all__ = ["ChannelRow", "Line", "TopModel", "parse_filter"]

#: The row under which events of channels past ``max_channels`` are counted.
OTHER = "other"
#: A line of the list, and the latest event in the table, are cut to this many characters
#: (no screen shows more; a 16 MiB event must not be kept 1000 times).
LINE_CHARS = 500
LATEST_CHARS = 200
#: The data fields a ``name=value`` term can match: the first FIELDS, each cut.
FIELDS = 50
FIELD_CHARS = 200


@dataclass(frozen=True)
class Line:
    """One line of the recent list: an event, a warning, or a connection change."""

    text: Text
    #: what the filter matches against (lower case)
    plain: str
    #: the event's data fields as strings, for ``name=value`` terms
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ChannelRow:
    channel: str
    rate: float
    total: int
    latest: str


def parse_filter(text: str) -> list[tuple[str | None, str]]:
    """``"level=error db"`` -> ``[("level", "error"), (None, "db")]``: every term must
    match; ``name=value`` compares a data field, a bare word is a substring of the line."""
    terms: list[tuple[str | None, str]] = []
    for word in text.split():
        name, sep, value = word.partition("=")
        if sep and name:
            terms.append((name, value.lower()))
        else:
            terms.append((None, word.lower()))
    return terms


def _matches(line: Line, terms: list[tuple[str | None, str]]) -> bool:
    fields = dict(line.fields)
    for name, value in terms:
        if name is None:
            if value not in line.plain:
                return False
        elif fields.get(name) != value:
            return False
    return True


class _Channel:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        #: (second, events in it), newest last; at most `window` of them
        self.buckets: deque[tuple[int, int]] = deque()
        self.total = 0


class TopModel:
    """The state of one ``top`` view."""

    def __init__(
        self, *, recent_size: int = 1000, rate_window: int = 5, max_channels: int = 50
    ) -> None:
        if recent_size < 1 or rate_window < 1 or max_channels < 1:
            raise ValueError("recent_size, rate_window and max_channels must be >= 1")
        self.recent_size = recent_size
        self.rate_window = rate_window
        self.max_channels = max_channels
        self.recent: deque[Line] = deque(maxlen=recent_size)
        #: lines received since the screen last took them (see :meth:`take_new`)
        self._new: deque[Line] = deque(maxlen=recent_size)
        self._channels: dict[str, _Channel] = {}
        self._latest: dict[str, str] = {}
        self.paused = False
        #: lines that arrived while paused
        self.held = 0
        self.filter_text = ""
        self._terms: list[tuple[str | None, str]] = []
        self.status: ConnectionStatus | None = None
        self._status_at = 0.0
        self.connected_since: float | None = None
        self.reconnects = 0
        self._was_connected = False

    # ------------------------------------------------------------ input

    def on_status(self, status: ConnectionStatus, now: float) -> None:
        """A connection change: counted (reconnects) and shown as a line."""
        previous = self.status.state if self.status is not None else None
        self.status, self._status_at = status, now
        if status.state == previous:
            return
        if status.state == "connected":
            if self._was_connected:
                self.reconnects += 1
            self._was_connected = True
            self.connected_since = now
            who = f", user {status.user_id}" if status.user_id else ""
            self._add(Line(Text(f"* connected ({status.client_id}{who})", "bold green"), ""))
        elif previous == "connected" or status.state in ("failed", "disconnected"):
            self.connected_since = None
            why = status.last_error or "connection lost"
            self._add(Line(Text(f"o {status.state}: {why}", "yellow"), ""))

    def on_event(self, event: Event, now: float) -> None:
        note = note_of(event)
        if note is not None:
            self._add(Line(Text(note, "bold yellow"), note.lower()))
            return
        if event.channel is not None and (event.is_event or event.type == "initial_state"):
            self._count(event, int(now))
        text = event_line(event)
        text.truncate(LINE_CHARS)
        data = event.data if isinstance(event.data, dict) else {}
        fields = tuple(
            (str(k)[:FIELD_CHARS], str(v)[:FIELD_CHARS].lower())
            for k, v in itertools.islice(data.items(), FIELDS)
            if isinstance(v, (str, int, bool))
        )
        self._add(Line(text, text.plain.lower(), fields))

    def _count(self, event: Event, second: int) -> None:
        name = event.channel or OTHER
        if name not in self._channels and len(self._channels) >= self.max_channels:
            name = OTHER
        channel = self._channels.setdefault(name, _Channel())
        clock = (event.timestamp or "")[11:19]
        self._latest[name] = f"{clock}  {event.type}  {summary(event.data)}".strip()[:LATEST_CHARS]
        if not event.is_event:
            return
        channel.total += 1
        buckets = channel.buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1] = (second, buckets[-1][1] + 1)
        else:
            buckets.append((second, 1))
            while len(buckets) > self.rate_window + 1:
                buckets.popleft()

    def _add(self, line: Line) -> None:
        self.recent.append(line)
        if self.paused:
            self.held += 1
        elif _matches(line, self._terms):
            self._new.append(line)

    # ------------------------------------------------------------ keys

    def toggle_pause(self) -> bool:
        """Pause or resume the list; True when the screen must be redrawn (resumed)."""
        self.paused = not self.paused
        if self.paused:
            return False
        self.held = 0
        self._new.clear()
        return True

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._terms = parse_filter(self.filter_text)
        self._new.clear()

    def clear(self) -> None:
        self.recent.clear()
        self._new.clear()
        self.held = 0

    # ------------------------------------------------------------ output

    def visible(self) -> list[Line]:
        """The recent lines the filter lets through, oldest first (a full redraw)."""
        return [line for line in self.recent if _matches(line, self._terms)]

    def take_new(self) -> list[Line]:
        """Lines to append to the screen since the last call (none while paused)."""
        if self.paused:
            return []
        new = list(self._new)
        self._new.clear()
        return new

    def rate(self, channel: str, now: float) -> float:
        """Events per second over the last ``rate_window`` whole seconds."""
        stats = self._channels.get(channel)
        if stats is None:
            return 0.0
        current = int(now)
        counted = sum(
            n for second, n in stats.buckets if current - self.rate_window <= second < current
        )
        return counted / self.rate_window

    def rows(self, channels: list[str], now: float) -> list[ChannelRow]:
        """One row per channel subscribed or seen (subscribed ones first)."""
        names = list(dict.fromkeys([*channels[: self.max_channels], *self._channels]))
        rows = []
        for name in names:
            stats = self._channels.get(name)
            latest = self._latest.get(name, "")
            rows.append(ChannelRow(name, self.rate(name, now), stats.total if stats else 0, latest))
        return rows

    def headline(self, url: str, now: float) -> Text:
        """The connection line: state, ids, reconnects, how long up or until the retry."""
        status = self.status
        state = status.state if status is not None else "connecting"
        style = {"connected": "bold green", "reconnecting": "bold yellow", "failed": "bold red"}
        text = Text.assemble(("● " if state == "connected" else "○ ", style.get(state, "")))
        text.append(state, style.get(state, "bold"))
        text.append(f"  {url}")
        if status is not None and state == "connected":
            if status.client_id:
                text.append(f"  {status.client_id}", "dim")
            if status.user_id:
                text.append(f"  user {status.user_id}")
            if self.connected_since is not None:
                up = int(now - self.connected_since)
                text.append(f"  up {up // 60:02d}:{up % 60:02d}", "dim")
        elif status is not None and state == "reconnecting":
            wait = max((status.next_retry_in or 0.0) - (now - self._status_at), 0.0)
            text.append(f"  attempt {status.attempt}, next in {wait:.1f}s", "yellow")
            if status.last_error:
                text.append(f"  ({status.last_error})", "dim")
        elif status is not None and status.last_error:
            text.append(f"  {status.last_error}", "red")
        text.append(f"  reconnects {self.reconnects}")
        if self.paused:
            text.append(f"  PAUSED ({self.held} new)", "bold reverse")
        if self.filter_text:
            text.append(f"  filter: {self.filter_text}", "bold cyan")
        return text
