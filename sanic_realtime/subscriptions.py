"""From what a client asked (query string or ``subscribe`` message) to validated
subscription requests. Pure: no I/O.

Rules (docs/protocol.md): ``all`` means every configured channel; each filter
parameter applies to the listed channels that declare it, and one that none of them
declares is an error; ``since`` maps a listed channel to the id of the last event the
client has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from .config import RealtimeConfig
from .events import EventId
from .exceptions import BadMessage, BadSince, UnknownChannel
from .filters import Filter, FilterParam, compile_filter, split_filter_params

__all__ = ["ALL", "SubRequest", "plan_subscription", "resolve_channels"]

ALL = "all"


class SubRequest(NamedTuple):
    """One channel of a subscription, validated: its compiled filter and resume point."""

    channel: str
    filter: Filter | None
    since: EventId | None = None


def resolve_channels(config: RealtimeConfig, names: Iterable[str]) -> list[str]:
    """Expand ``all``, drop duplicates (keeping order), refuse unknown names."""
    out: dict[str, None] = {}
    for name in names:
        if name == ALL:
            out.update(dict.fromkeys(config.channels))
        elif name in config.channels:
            out[name] = None
        else:
            raise UnknownChannel(name, list(config.channels))
    return list(out)


def plan_subscription(
    config: RealtimeConfig,
    channels: Sequence[str],
    params: Mapping[str, FilterParam],
    since: Mapping[str, str],
    *,
    since_names: Mapping[str, str] | None = None,
) -> list[SubRequest]:
    """Validate and compile. ``since_names`` maps a channel to the name the client used
    for its ``since`` (for error messages), e.g. ``since.logs`` in a query string."""
    names = resolve_channels(config, channels)
    if not names:
        raise BadMessage("no channels to subscribe to", code="invalid_message")
    per_channel = split_filter_params({n: config.channels[n] for n in names}, params)
    resume: dict[str, EventId] = {}
    for channel, text in since.items():
        param = (since_names or {}).get(channel, f"since.{channel}")
        if channel not in names:
            raise BadSince(
                param, f"{param} names channel {channel!r}, which is not subscribed here"
            )
        try:
            resume[channel] = EventId.parse(text)
        except ValueError as e:
            raise BadSince(param, f"{param}: {e}") from None
    return [
        SubRequest(
            name,
            compile_filter(name, config.channels[name].filters, per_channel[name]),
            resume.get(name),
        )
        for name in names
    ]
