"""Synthetic events for the demo: logs, stats, alerts and API requests."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sanic_realtime import Realtime

LEVELS = ["debug", "info", "warn", "error", "critical"]
LEVEL_WEIGHTS = [30, 50, 12, 6, 2]
COMPONENTS = ["api", "db", "cache", "auth", "worker"]
PROVIDERS = ["openai", "anthropic", "mistral"]
MODELS = {"openai": ["gpt-x"], "anthropic": ["claude-y"], "mistral": ["large", "small"]}
MESSAGES = {
    "debug": "cache lookup",
    "info": "request served",
    "warn": "slow query",
    "error": "upstream timeout",
    "critical": "database unreachable",
}


@dataclass
class Totals:
    logs: int = 0
    anomalies: int = 0


def log_event(rng: random.Random) -> dict[str, Any]:
    level = rng.choices(LEVELS, LEVEL_WEIGHTS)[0]
    component = rng.choice(COMPONENTS)
    return {
        "id": f"log-{uuid.uuid4().hex[:8]}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "level": level,
        "message": f"{component}: {MESSAGES[level]}",
        "source": f"{component}-service",
        "component": component,
        "provider_id": rng.choice(PROVIDERS),
        "metadata": {"host": f"server-{rng.randint(1, 3):02d}"},
    }


def request_event(rng: random.Random) -> dict[str, Any]:
    provider = rng.choice(PROVIDERS)
    success = rng.random() > 0.1
    return {
        "provider_id": provider,
        "model_id": rng.choice(MODELS[provider]),
        "endpoint": "/v1/chat/completions",
        "status_code": 200 if success else rng.choice([429, 500, 502]),
        "latency_ms": round(rng.lognormvariate(5.5, 0.5), 1),
        "tokens": rng.randint(20, 2000),
        "success": success,
    }


async def run(realtime: Realtime, *, speed: float = 1.0, seed: int | None = None) -> None:
    """Publish forever: a log every 0.5 s, a request every 0.3 s, stats every 2 s, and
    an alert when an error or critical log shows up (``speed`` divides every period)."""
    rng = random.Random(seed)
    totals = Totals()
    tick = 0.1 / speed
    n = 0
    while True:
        n += 1
        if n % 5 == 0:
            log = log_event(rng)
            totals.logs += 1
            await realtime.publish("logs", "log_update", log)
            if log["level"] in ("error", "critical"):
                totals.anomalies += 1
                severity = "critical" if log["level"] == "critical" else "high"
                await realtime.publish(
                    "alerts",
                    "system_alert",
                    {
                        "alertType": log["component"],
                        "message": log["message"],
                        "severity": severity,
                    },
                )
        if n % 3 == 0:
            await realtime.publish("requests", "request", request_event(rng))
        if n % 20 == 0:
            await realtime.publish(
                "stats",
                "stats_update",
                {
                    "totalLogs": totals.logs,
                    "anomalyCount": totals.anomalies,
                    "anomalyRate": round(totals.anomalies / max(totals.logs, 1), 4),
                    "activeServices": len(COMPONENTS),
                },
            )
        await asyncio.sleep(tick)
