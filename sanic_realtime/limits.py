"""Rate limits. Pure: time is passed in."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows bursts of ``capacity`` and a sustained ``capacity / per`` per second."""

    __slots__ = ("_stamp", "_tokens", "capacity", "rate")

    def __init__(self, capacity: int, per: float, now: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / per
        self._tokens = float(capacity)
        self._stamp = now

    def allow(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = now - self._stamp
        self._stamp = now
        tokens = min(self.capacity, self._tokens + elapsed * self.rate)
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
