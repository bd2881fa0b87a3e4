"""The connection's status as callers see it, and the reconnect backoff."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = ["ConnectionStatus", "State", "StatusHandler", "backoff"]

State: TypeAlias = Literal["disconnected", "connecting", "connected", "reconnecting", "failed"]


@dataclass(frozen=True)
class ConnectionStatus:
    """A snapshot of the client's connection, given to ``on_connection_change`` callbacks."""

    state: State
    #: The retry being waited for or made: 1 for the first after a failed attempt or a lost
    #: connection; 0 when connected.
    attempt: int = 0
    #: This connection's id (``connection_established``); None when not connected.
    client_id: str | None = None
    user_id: str | None = None
    roles: tuple[str, ...] = ()
    #: Why the last connection or attempt ended, for people.
    last_error: str | None = None
    close_code: int | None = None
    close_reason: str | None = None
    #: Seconds until the next attempt, while ``reconnecting``.
    next_retry_in: float | None = None
    #: The last event id seen per channel: where a reconnect resumes.
    last_ids: Mapping[str, str] = field(default_factory=dict)
    #: Per channel resumed on the current connection, whether the server filled the gap.
    recovered: Mapping[str, bool] = field(default_factory=dict)


StatusHandler: TypeAlias = Callable[[ConnectionStatus], Any]


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in ``[0, min(cap, base * 2**(n-1))]``."""
    return random.uniform(0, min(cap, base * 2 ** max(attempt - 1, 0)))
