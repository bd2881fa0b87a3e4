"""How an event reads in a terminal, for ``sanic-realtime tail`` and ``top``: one line
with its time, channel, type, level and a summary of its data (rich Text, no I/O)."""

from __future__ import annotations

from typing import Any

import msgspec
from rich.text import Text

from .client import Event

__all__ = ["LEVEL_STYLES", "event_line", "note_of", "summary"]

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
    """``12:00:01.250  logs       log_update       ERROR    db down  {...}  #1:5``"""
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
    if level is not None:
        line.append(f"{str(level).upper():<8}", LEVEL_STYLES.get(str(level).lower(), ""))
        line.append(" ")
    line.append(summary(event.data))
    if event.id is not None:
        line.append(f"  #{event.id}", "dim")
    return line
