"""Scenario 2, an LLM API gateway: provider health, a live feed of requests, and request
statistics over sliding windows.

Channels: ``providers`` (``provider_status``), ``requests`` (``request``) and ``stats``
(``stats_update``, one per window: 1m, 5m, 1h). Subscribers pick a window with
``?window=5m`` and how often they want it with ``?interval=5s`` (the package's
per-subscription throttling: at most one update per window per interval, the latest).

Providers have incidents: one is degraded (slow, failing often) or down for a while.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .common import Emitter, Pace, iso

WINDOWS = {"1m": 60.0, "5m": 300.0, "1h": 3600.0}


@dataclass
class Provider:
    id: str
    name: str
    models: list[str]
    latency_ms: float
    status: str = "healthy"  # healthy | degraded | down
    until: float = 0.0
    #: (monotonic time, success, latency) of its requests in the last minute
    recent: deque[tuple[float, bool, float]] = field(default_factory=deque)

    def error_rate(self) -> float:
        return {"healthy": 0.03, "degraded": 0.35, "down": 1.0}[self.status]


def default_providers() -> list[Provider]:
    return [
        Provider("openai", "OpenAI", ["gpt-4o", "gpt-4o-mini"], 420),
        Provider("anthropic", "Anthropic", ["claude-sonnet", "claude-haiku"], 380),
        Provider("mistral", "Mistral", ["mistral-large", "mistral-small"], 300),
        Provider("local", "Local vLLM", ["llama-3-8b"], 150),
    ]


@dataclass
class Sample:
    at: float
    provider_id: str
    success: bool
    latency_ms: float
    tokens: int


class Gateway:
    def __init__(self, emit: Emitter, pace: Pace, rng: random.Random) -> None:
        self.emit = emit
        self.pace = pace
        self.rng = rng
        self.providers = {p.id: p for p in default_providers()}
        self.samples: deque[Sample] = deque()
        self.total_requests = 0
        self.total_errors = 0
        self.next_incident = time.monotonic() + pace(15)
        #: When the gateway began (rates over a window count only the time since).
        self.started = time.monotonic()

    # ------------------------------------------------------------------ requests

    def request_event(self) -> dict[str, Any]:
        provider = self.rng.choice(list(self.providers.values()))
        model = self.rng.choice(provider.models)
        success = self.rng.random() >= provider.error_rate()
        if provider.status == "down":
            status_code, latency = 503, round(self.rng.uniform(5, 40), 1)
        else:
            factor = 3.0 if provider.status == "degraded" else 1.0
            latency = round(self.rng.lognormvariate(0, 0.35) * provider.latency_ms * factor, 1)
            status_code = 200 if success else self.rng.choice([429, 500, 502, 504])
        input_tokens = self.rng.randint(20, 1500)
        output_tokens = self.rng.randint(10, 800) if success else 0
        return {
            "request_id": uuid.uuid4().hex[:16],
            "provider_id": provider.id,
            "provider": provider.name,
            "model_id": model,
            "method": "POST",
            "endpoint": "/v1/chat/completions",
            "status_code": status_code,
            "latency_ms": latency,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "tokens": input_tokens + output_tokens,
            "success": success,
            "timestamp": iso(),
        }

    def record(self, request: dict[str, Any]) -> None:
        now = time.monotonic()
        sample = Sample(
            now,
            request["provider_id"],
            request["success"],
            request["latency_ms"],
            request["tokens"],
        )
        self.samples.append(sample)
        self.total_requests += 1
        self.total_errors += 0 if sample.success else 1
        provider = self.providers[sample.provider_id]
        provider.recent.append((now, sample.success, sample.latency_ms))

    # ------------------------------------------------------------------ providers

    def incidents(self) -> list[Provider]:
        """Start or end incidents; returns the providers whose status changed."""
        now = time.monotonic()
        changed = []
        for provider in self.providers.values():
            if provider.status != "healthy" and now > provider.until:
                provider.status = "healthy"
                changed.append(provider)
        if now > self.next_incident:
            healthy = [p for p in self.providers.values() if p.status == "healthy"]
            if healthy:
                victim = self.rng.choice(healthy)
                victim.status = "down" if self.rng.random() < 0.3 else "degraded"
                victim.until = now + self.pace(self.rng.uniform(10, 20))
                changed.append(victim)
            self.next_incident = now + self.pace(self.rng.uniform(25, 40))
        return changed

    def provider_status(self, provider: Provider) -> dict[str, Any]:
        now = time.monotonic()
        while provider.recent and provider.recent[0][0] < now - 60:
            provider.recent.popleft()
        recent = provider.recent
        ok = [latency for _, success, latency in recent if success]
        messages = {
            "healthy": "",
            "degraded": "elevated latency and error rate",
            "down": "provider unreachable",
        }
        return {
            "provider_id": provider.id,
            "name": provider.name,
            "status": provider.status,
            "available": provider.status != "down",
            "latency_ms": round(sum(ok) / len(ok), 1) if ok else None,
            "success_rate": round(len(ok) / len(recent), 3) if recent else None,
            "requests_1m": len(recent),
            "message": messages[provider.status],
            "timestamp": iso(),
        }

    def snapshot(self) -> dict[str, Any]:
        """The providers channel's initial state: every provider's status."""
        return {"providers": [self.provider_status(p) for p in self.providers.values()]}

    # ------------------------------------------------------------------ statistics

    def window_stats(self, window: str) -> dict[str, Any]:
        now = time.monotonic()
        span = WINDOWS[window]
        samples = [s for s in self.samples if s.at >= now - span]
        ok = [s for s in samples if s.success]
        per_provider = []
        for provider in self.providers.values():
            mine = [s for s in samples if s.provider_id == provider.id]
            mine_ok = [s for s in mine if s.success]
            per_provider.append(
                {
                    "provider_id": provider.id,
                    "requests": len(mine),
                    "success_rate": round(len(mine_ok) / len(mine), 3) if mine else None,
                    "avg_latency_ms": (
                        round(sum(s.latency_ms for s in mine_ok) / len(mine_ok), 1)
                        if mine_ok
                        else None
                    ),
                }
            )
        # Over the part of the window the gateway has existed for, so the first minutes
        # of a 1h window do not read as a low rate.
        elapsed = min(span, max(now - self.started, 1.0))
        return {
            "window": window,
            "total_requests": len(samples),
            "total_tokens": sum(s.tokens for s in samples),
            "success_rate": round(len(ok) / len(samples), 4) if samples else None,
            "avg_latency_ms": (round(sum(s.latency_ms for s in ok) / len(ok), 1) if ok else None),
            "requests_per_min": round(len(samples) * 60 / elapsed, 1),
            "provider_stats": per_provider,
            "calculated_at": iso(),
            "time_window": window,
        }

    def error_rate_1m(self) -> float:
        now = time.monotonic()
        recent = [s for s in self.samples if s.at >= now - 60]
        return sum(1 for s in recent if not s.success) / len(recent) if recent else 0.0

    def avg_latency_1m(self) -> float:
        now = time.monotonic()
        recent = [s.latency_ms for s in self.samples if s.at >= now - 60 and s.success]
        return sum(recent) / len(recent) if recent else 0.0

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        """About three requests a second, provider status every 2 s (and at once on a
        change), statistics of every window every second."""
        self.started = time.monotonic()
        next_status = next_stats = self.started
        while True:
            now = time.monotonic()
            while self.samples and self.samples[0].at < now - WINDOWS["1h"]:
                self.samples.popleft()
            request = self.request_event()
            self.record(request)
            await self.emit("requests", "request", request)
            changed = self.incidents()
            if now >= next_status:
                next_status = now + self.pace(2)
                changed = list(self.providers.values())
            for provider in changed:
                await self.emit("providers", "provider_status", self.provider_status(provider))
            if now >= next_stats:
                next_stats = now + self.pace(1)
                for window in WINDOWS:
                    await self.emit("stats", "stats_update", self.window_stats(window))
            await asyncio.sleep(self.pace(self.rng.uniform(0.15, 0.5)))
