"""What the demo's simulators share: a publisher that never lets one failed publish stop a
simulation, timestamps, and the demo's pace."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sanic_realtime import Realtime
from sanic_realtime.exceptions import ServerUnavailable

logger = logging.getLogger("example_app")


def iso(ts: float | None = None) -> str:
    """``2026-11-22T10:00:00.123Z``."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Pace:
    """``speed`` divides every period of the simulation (tests run it faster)."""

    speed: float = 1.0

    def __call__(self, seconds: float) -> float:
        return seconds / self.speed


class Emitter:
    """``await emit(channel, type, data, user_id=..., role=...)``: publish, and log instead
    of raising when the backplane is unavailable (a simulation keeps going while Redis is
    away; the events of that moment are not published, which the log says)."""

    def __init__(self, realtime: Realtime) -> None:
        self.realtime = realtime
        self.failures = 0

    async def __call__(
        self,
        channel: str,
        type: str,
        data: Any,
        *,
        user_id: str | int | None = None,
        role: str | None = None,
    ) -> str | None:
        try:
            result = await self.realtime.publish(channel, type, data, user_id=user_id, role=role)
        except ServerUnavailable as e:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                logger.warning(
                    "not published (%d so far): %s %s: %s", self.failures, channel, type, e
                )
            return None
        return result.id
