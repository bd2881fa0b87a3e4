"""Rate limits. Pure: time is passed in."""

from __future__ import annotations

__all__ = ["KeyedRateLimiter", "TokenBucket"]


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


class KeyedRateLimiter:
    """One token bucket per key (a client IP), in bounded memory.

    Buckets that have refilled are forgotten when the table grows past ``max_keys``;
    if it is still too big, the oldest half goes (they refill to full anyway, so this
    can only ever be more lenient, never wrongly strict).
    """

    __slots__ = ("_buckets", "capacity", "max_keys", "rate")

    def __init__(self, capacity: int, per: float, max_keys: int = 100_000) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / per
        self.max_keys = max_keys
        #: key -> [tokens, stamp]
        self._buckets: dict[str, list[float]] = {}

    def hit(self, key: str, now: float) -> float:
        """Take a token for ``key``: 0.0 if allowed, else seconds until one is available."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = [self.capacity - 1.0, now]
            return 0.0
        tokens = min(self.capacity, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate
        bucket[0] = tokens - 1.0
        return 0.0

    def _prune(self, now: float) -> None:
        cap, rate = self.capacity, self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if b[0] + (now - b[1]) * rate < cap}
        if len(self._buckets) >= self.max_keys:
            keys = list(self._buckets)
            for k in keys[: len(keys) // 2 + 1]:
                del self._buckets[k]

    def __len__(self) -> int:
        return len(self._buckets)
