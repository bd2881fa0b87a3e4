"""Scenario 1, log analysis: a synthetic log stream, an anomaly detector over it, periodic
statistics and system alerts.

Channels: ``logs`` (``log_update``), ``anomalies`` (``new_anomaly``), ``log_stats``
(``stats_update``) and ``alerts`` (``system_alert``).

Every so often one component has an incident: its share of errors rises for a while. The
detector watches each component's last logs and reports an anomaly when errors pass a
threshold, with likely root causes and recommendations for that component.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter, deque
from typing import Any

from .common import Emitter, Pace, iso

LEVELS = ["debug", "info", "warn", "error", "critical"]
NORMAL_WEIGHTS = [25, 55, 14, 5, 1]
INCIDENT_WEIGHTS = [5, 25, 25, 35, 10]
COMPONENTS = ["api", "db", "cache", "auth", "worker"]
HOSTS = ["server-01", "server-02", "server-03"]
MESSAGES = {
    "api": {
        "debug": "route matched",
        "info": "request served",
        "warn": "slow response (1.8 s)",
        "error": "upstream timeout",
        "critical": "all upstreams unreachable",
    },
    "db": {
        "debug": "query plan cached",
        "info": "query ok",
        "warn": "slow query (2.3 s)",
        "error": "deadlock detected",
        "critical": "primary unreachable",
    },
    "cache": {
        "debug": "cache hit",
        "info": "key refreshed",
        "warn": "eviction rate high",
        "error": "connection reset",
        "critical": "cluster down",
    },
    "auth": {
        "debug": "token parsed",
        "info": "login ok",
        "warn": "password retry",
        "error": "token verification failed",
        "critical": "key store unavailable",
    },
    "worker": {
        "debug": "job picked",
        "info": "job done",
        "warn": "job retried",
        "error": "job failed",
        "critical": "queue unreachable",
    },
}
ROOT_CAUSES = {
    "api": ["Upstream service latency", "Connection pool exhaustion", "Traffic spike"],
    "db": [
        "Lock contention on hot rows",
        "Missing index on a frequent query",
        "Disk I/O saturation",
    ],
    "cache": ["Memory pressure causing evictions", "Network partition to cache nodes"],
    "auth": ["Clock skew between services", "Key rotation not propagated"],
    "worker": ["Poison message retried in a loop", "Downstream API rate limits"],
}
RECOMMENDATIONS = {
    "api": ["Check upstream health dashboards", "Raise the connection pool size"],
    "db": ["Inspect pg_stat_activity for blocked queries", "Add the missing index"],
    "cache": ["Scale the cache cluster", "Check network between app and cache"],
    "auth": ["Sync clocks (NTP)", "Re-deploy the current signing keys"],
    "worker": ["Move the message to the dead-letter queue", "Lower the worker concurrency"],
}
#: Errors (error or critical) among a component's last WINDOW logs that make an anomaly.
WINDOW = 12
THRESHOLD = 0.3


def severity_of(score: float) -> str:
    if score >= 0.85:
        return "critical"
    if score >= 0.7:
        return "high"
    if score >= 0.5:
        return "medium"
    return "low"


class LogAnalysis:
    def __init__(self, emit: Emitter, pace: Pace, rng: random.Random) -> None:
        self.emit = emit
        self.pace = pace
        self.rng = rng
        self.total = 0
        self.anomalies = 0
        self.by_level: Counter[str] = Counter()
        #: component -> its last WINDOW logs (level, id)
        self.recent: dict[str, deque[tuple[str, str]]] = {
            c: deque(maxlen=WINDOW) for c in COMPONENTS
        }
        self.last_seen: dict[str, float] = {}
        self.quiet_until: dict[str, float] = {}
        self.incident: tuple[str, float] | None = None
        self.next_incident = time.monotonic() + pace(8)
        self.rate: deque[float] = deque()

    def log_event(self) -> dict[str, Any]:
        now = time.monotonic()
        if self.incident is not None and now > self.incident[1]:
            self.incident = None
        if self.incident is None and now > self.next_incident:
            self.incident = (self.rng.choice(COMPONENTS), now + self.pace(10))
            self.next_incident = now + self.pace(self.rng.uniform(20, 35))
        component = self.rng.choice(COMPONENTS)
        if self.incident is not None and self.rng.random() < 0.5:
            component = self.incident[0]
        weights = (
            INCIDENT_WEIGHTS if self.incident and component == self.incident[0] else NORMAL_WEIGHTS
        )
        level = self.rng.choices(LEVELS, weights)[0]
        host = self.rng.choice(HOSTS)
        return {
            "id": f"log-{uuid.uuid4().hex[:10]}",
            "timestamp": iso(),
            "level": level,
            "message": f"{component}: {MESSAGES[component][level]}",
            "source": f"{component}-service",
            "component": component,
            "metadata": {
                "host": host,
                "request_id": uuid.uuid4().hex[:12],
                "duration_ms": round(self.rng.lognormvariate(4, 0.6), 1),
            },
        }

    async def ingest(self, log: dict[str, Any]) -> None:
        """Publish one log, count it, and run the detector on it."""
        await self.emit("logs", "log_update", log)
        await self.observe(log)

    async def observe(self, log: dict[str, Any]) -> None:
        """Count a published log and run the detector on it."""
        now = time.monotonic()
        self.total += 1
        self.rate.append(now)
        self.by_level[log["level"]] += 1
        component = str(log.get("component", "unknown"))
        self.last_seen[component] = now
        recent = self.recent.setdefault(component, deque(maxlen=WINDOW))
        recent.append((str(log["level"]), str(log.get("id", ""))))
        await self.detect(component, recent, now)

    async def detect(self, component: str, recent: deque[tuple[str, str]], now: float) -> None:
        if len(recent) < WINDOW // 2 or now < self.quiet_until.get(component, 0):
            return
        bad = [(level, i) for level, i in recent if level in ("error", "critical")]
        ratio = len(bad) / len(recent)
        if ratio < THRESHOLD:
            return
        critical = sum(1 for level, _ in bad if level == "critical")
        score = round(min(1.0, 0.35 + ratio + 0.1 * critical), 2)
        severity = severity_of(score)
        self.anomalies += 1
        self.quiet_until[component] = now + self.pace(6)
        causes = ROOT_CAUSES.get(component, ["Unknown"])
        anomaly = {
            "id": f"anom-{uuid.uuid4().hex[:8]}",
            "timestamp": iso(),
            "component": component,
            "severity": severity,
            "anomalyScore": score,
            "message": f"{len(bad)} of the last {len(recent)} {component} logs are errors",
            "rootCauses": self.rng.sample(causes, k=min(2, len(causes))),
            "recommendations": RECOMMENDATIONS.get(component, ["Check the service's logs"]),
            "logIds": [i for _, i in bad],
        }
        await self.emit("anomalies", "new_anomaly", anomaly)
        if severity in ("high", "critical"):
            await self.emit(
                "alerts",
                "system_alert",
                {
                    "alertType": "anomaly",
                    "message": f"{component}: anomaly score {score}",
                    "severity": severity,
                    "component": component,
                },
            )

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        while self.rate and self.rate[0] < now - 10:
            self.rate.popleft()
        active = [c for c, t in self.last_seen.items() if now - t < 30]
        return {
            "totalLogs": self.total,
            "anomalyCount": self.anomalies,
            "anomalyRate": round(self.anomalies / self.total, 4) if self.total else 0.0,
            "activeServices": len(active),
            "logsPerSecond": round(len(self.rate) / 10, 2),
            "byLevel": {level: self.by_level[level] for level in LEVELS},
            "timestamp": iso(),
        }

    async def run(self) -> None:
        """A log every 0.5 s (sometimes two), stats every second."""
        next_stats = time.monotonic()
        while True:
            for _ in range(2 if self.rng.random() < 0.25 else 1):
                await self.ingest(self.log_event())
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + self.pace(1)
                await self.emit("log_stats", "stats_update", self.stats())
            await asyncio.sleep(self.pace(0.5))
