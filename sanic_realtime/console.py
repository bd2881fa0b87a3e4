"""How an event reads in a terminal, for ``sanic-realtime tail`` and ``top``: one line
with its time, channel, type, level, a summary of its data and, for a client message, its
sender; a presence join or leave as ``+ user (role)`` / ``- user (role)`` (rich Text, no
I/O)."""

from __future__ import annotations

from typing import Any

import msgspec
from rich.text import Text

from .client import Event, PresenceData

__all__ = [
    "LEVEL_STYLES",
    "PRESENCE_SIGNS",
    "event_line",
    "note_of",
    "presence_change",
    "presence_lines",
    "sender_of",
    "summary",
]

#: styles of the values of ``level`` / ``severity`` fields
LEVEL_STYLES = {
    "debug": "dim",
    "info": "green",
    "low": "green",
    "warn": "yellow",
    "warning": "yellow",
    "medium": "yellow",
    "error": "red",
    "high": "red",
    "critical": "bold white on red",
}
#: how a presence change reads: its sign and style
PRESENCE_SIGNS = {"presence_join": ("+", "green"), "presence_leave": ("-", "yellow")}
_encoder = msgspec.json.Encoder()


def summary(data: Any) -> str:
    """One line for an event's data: its ``message`` if it has one, then the other
    fields as compact JSON."""
    if isinstance(data, dict):
        rest = {k: v for k, v in data.items() if k not in ("message", "level", "severity")}
        message = data.get("message")
        parts = [str(message)] if message is not None else []
        if rest:
            parts.append(_encoder.encode(rest).decode())
        return "  ".join(parts)
    return _encoder.encode(data).decode()


def presence_change(event: Event) -> str | None:
    """``+ alice (member)`` for a ``presence_join``, ``- alice (member)`` for a
    ``presence_leave``; None for any other message."""
    sign = PRESENCE_SIGNS.get(event.type)
    if sign is None:
        return None
    data = event.data if isinstance(event.data, dict) else {}
    role = data.get("role")
    return f"{sign[0]} {data.get('user_id')}" + (f" ({role})" if role else "")


def sender_of(event: Event) -> str | None:
    """Who sent a client message: its user, else its connection; None for the server's."""
    sender = event.sender
    if sender is None:
        return None
    return sender.user_id if sender.user_id is not None else sender.client_id


def note_of(event: Event) -> str | None:
    """What a client-side warning message (``resume_failed``, ``messages_dropped``) says,
    for people; None for any other message."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.type == "resume_failed":
        return (
            f"! could not resume {event.channel} from {data.get('since')}: events published "
            "while disconnected may be missing"
        )
    if event.type == "messages_dropped":
        reason = f" ({data['reason']})" if data.get("reason") else ""
        return f"! {data.get('channel')}: {data.get('count', '?')} events dropped{reason}"
    return None


def event_line(event: Event, *, channel_width: int = 10, type_width: int = 16) -> Text:
    """``12:00:01.250  logs       log_update       ERROR    db down  {...}  #1:5``; a
    client message ends with ``from <user>``, a presence change reads
    ``12:00:01.250  rooms.a    presence_join    + alice (member)``."""
    data = event.data if isinstance(event.data, dict) else {}
    clock = (event.timestamp or "")[11:23]
    level = data.get("level") or data.get("severity")
    line = Text.assemble(
        (clock, "dim"),
        "  ",
        (f"{event.channel or '-':<{channel_width}}", "cyan"),
        " ",
        (f"{event.type:<{type_width}}", "bold" if event.is_event else "magenta"),
        " ",
    )
    change = presence_change(event)
    if change is not None:
        line.append(change, PRESENCE_SIGNS[event.type][1])
        return line
    if level is not None:
        line.append(f"{str(level).upper():<8}", LEVEL_STYLES.get(str(level).lower(), ""))
        line.append(" ")
    line.append(summary(event.data))
    sender = sender_of(event)
    if sender is not None:
        line.append(f"  from {sender}", "blue")
    if event.id is not None:
        line.append(f"  #{event.id}", "dim")
    return line


def presence_lines(info: PresenceData) -> list[str]:
    """``sanic-realtime presence``'s output: a line per user (``user_id``, role,
    connections, since), aligned, then ``N users, K anonymous``."""
    users = info.users or []
    rows = [
        (
            u.user_id,
            u.role or "-",
            f"{u.connections} connection{'' if u.connections == 1 else 's'}",
            f"since {u.since}",
        )
        for u in users
    ]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(3)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[3]])
        for row in rows
    ]
    if info.users is None:
        lines.append("(this channel lists no users: counts only)")
    elif info.truncated is True:
        lines.append(f"(the first {len(users)} of {info.count} users)")
    lines.append(f"{info.count} users, {info.anonymous} anonymous")
    return lines
