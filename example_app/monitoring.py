"""Scenario 3, monitoring: the machine's real CPU, memory, disk and network (psutil), bulk
tasks with progress, and alert rules.

Channels: ``system`` (``system_status`` and ``metrics_update`` every 5 s; a new
subscriber first gets an ``initial_state`` snapshot), ``tasks`` (``task_update``), each
task's own ``tasks.<id>`` (the template ``tasks.{task_id}``: the same ``task_update``,
for a page that follows one task) and ``alerts`` (``alert``: rule, value, threshold,
severity, firing or resolved).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from .common import Emitter, Pace, iso
from .gateway import Gateway

TASK_NAMES = [
    "Bulk clone GitHub repositories",
    "Re-index search documents",
    "Export audit logs to S3",
    "Recompute user quotas",
    "Thumbnail generation",
]


def duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@dataclass
class Rule:
    id: str
    name: str
    read: Callable[[dict[str, Any]], float]
    threshold: float
    severity: str
    unit: str = "%"
    firing_since: str | None = None


class Tasks:
    """Simulated bulk tasks: each advances in steps and publishes ``task_update`` to
    ``tasks`` and to its own ``tasks.<id>``."""

    def __init__(self, emit: Emitter, pace: Pace, rng: random.Random) -> None:
        self.emit = emit
        self.pace = pace
        self.rng = rng
        self.tasks: dict[str, dict[str, Any]] = {}
        self.ids = itertools.count(1)
        self.running: set[asyncio.Task[None]] = set()
        self.failed_at: list[float] = []

    def recent_failures(self) -> int:
        """Tasks failed in the last two minutes (of the demo's pace)."""
        since = time.monotonic() - self.pace(120)
        self.failed_at = [t for t in self.failed_at if t >= since]
        return len(self.failed_at)

    def active(self) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t["status"] in ("queued", "running")]

    def start(self, name: str | None = None, total: int | None = None) -> dict[str, Any]:
        task = {
            "id": f"task-{next(self.ids)}",
            "name": name or self.rng.choice(TASK_NAMES),
            "status": "queued",
            "progress": 0,
            "start_time": iso(),
            "details": {"processed": 0, "total": total or self.rng.randint(40, 200), "errors": 0},
        }
        self.tasks[task["id"]] = task
        # Finished tasks are kept for the snapshot, the newest 20 of them.
        done = [t for t in self.tasks.values() if t["status"] in ("completed", "failed")]
        for old in done[:-20]:
            del self.tasks[old["id"]]
        job = asyncio.get_running_loop().create_task(self._work(task))
        self.running.add(job)
        job.add_done_callback(self.running.discard)
        return task

    async def publish(self, task: dict[str, Any]) -> None:
        await self.emit("tasks", "task_update", task)
        await self.emit(f"tasks.{task['id']}", "task_update", task)

    async def _work(self, task: dict[str, Any]) -> None:
        await self.publish(task)
        await asyncio.sleep(self.pace(0.5))
        task["status"] = "running"
        details = task["details"]
        doomed = self.rng.random() < 0.15
        while details["processed"] < details["total"]:
            step = min(self.rng.randint(2, 9), details["total"] - details["processed"])
            details["processed"] += step
            if self.rng.random() < 0.1:
                details["errors"] += 1
            task["progress"] = round(100 * details["processed"] / details["total"])
            if doomed and task["progress"] >= 60:
                task["status"] = "failed"
                task["error"] = "too many upstream errors; retry later"
                self.failed_at.append(time.monotonic())
                break
            await self.publish(task)
            await asyncio.sleep(self.pace(0.5))
        else:
            task["status"] = "completed"
        task["end_time"] = iso()
        await self.publish(task)

    async def stop(self) -> None:
        for job in list(self.running):
            job.cancel()
        for job in list(self.running):
            with contextlib.suppress(asyncio.CancelledError):
                await job


class Monitoring:
    def __init__(self, emit: Emitter, pace: Pace, rng: random.Random, gateway: Gateway) -> None:
        self.emit = emit
        self.pace = pace
        self.gateway = gateway
        self.tasks = Tasks(emit, pace, rng)
        self.started = time.time()
        self.hostname = socket.gethostname()
        self.net = psutil.net_io_counters()
        self.net_at = time.monotonic()
        psutil.cpu_percent(None)  # the first reading starts the measurement
        self.last: dict[str, Any] | None = None
        self.alerts_total = 0
        self.rules = [
            Rule("cpu-high", "High CPU usage", lambda m: m["cpu_usage"], 85.0, "high"),
            Rule(
                "memory-high", "High memory usage", lambda m: m["memory_percent"], 90.0, "critical"
            ),
            Rule("disk-high", "Disk almost full", lambda m: m["disk_usage"], 90.0, "high"),
            Rule(
                "gateway-errors",
                "Gateway error rate",
                lambda m: m["error_rate"],
                15.0,
                "high",
            ),
            Rule(
                "task-failures",
                "Failed bulk tasks (2 min)",
                lambda m: float(self.tasks.recent_failures()),
                0.0,
                "medium",
                unit="",
            ),
        ]

    def read(self) -> dict[str, Any]:
        """The machine's figures now (psutil), and the gateway's."""
        now = time.monotonic()
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage("/")
        net = psutil.net_io_counters()
        elapsed = max(now - self.net_at, 1e-3)
        net_in = (net.bytes_recv - self.net.bytes_recv) / elapsed
        net_out = (net.bytes_sent - self.net.bytes_sent) / elapsed
        self.net, self.net_at = net, now
        uptime = time.time() - self.started
        return {
            "cpu_usage": round(psutil.cpu_percent(None), 1),
            "memory_usage": memory.used,
            "memory_usage_mb": round(memory.used / 2**20, 1),
            "memory_percent": round(memory.percent, 1),
            "disk_usage": round(disk.percent, 1),
            "network_io": {"bytes_in": net.bytes_recv, "bytes_out": net.bytes_sent},
            "net_in_per_s": round(net_in, 1),
            "net_out_per_s": round(net_out, 1),
            "uptime_s": round(uptime, 1),
            "uptime": duration(uptime),
            "active_tasks": len(self.tasks.active()),
            "total_requests": self.gateway.total_requests,
            "error_rate": round(100 * self.gateway.error_rate_1m(), 2),
            "avg_response_time_ms": round(self.gateway.avg_latency_1m(), 1),
        }

    def system_status(self, m: dict[str, Any]) -> dict[str, Any]:
        firing = [r for r in self.rules if r.firing_since is not None]
        status = "healthy"
        if any(r.severity == "critical" for r in firing):
            status = "critical"
        elif firing:
            status = "degraded"
        return {
            "status": status,
            "hostname": self.hostname,
            "uptime": m["uptime"],
            "uptime_s": m["uptime_s"],
            "cpu_usage": m["cpu_usage"],
            "memory_usage": m["memory_usage"],
            "memory_percent": m["memory_percent"],
            "disk_usage": m["disk_usage"],
            "network_io": m["network_io"],
            "active_tasks": m["active_tasks"],
            "total_requests": m["total_requests"],
            "timestamp": iso(),
        }

    @staticmethod
    def metrics_update(m: dict[str, Any]) -> dict[str, Any]:
        keys = (
            "cpu_usage",
            "memory_usage_mb",
            "memory_percent",
            "disk_usage",
            "net_in_per_s",
            "net_out_per_s",
            "active_tasks",
            "total_requests",
            "error_rate",
            "avg_response_time_ms",
            "uptime",
        )
        return {**{k: m[k] for k in keys}, "timestamp": iso()}

    async def evaluate(self, m: dict[str, Any]) -> None:
        """Publish an ``alert`` when a rule starts or stops firing."""
        for rule in self.rules:
            value = round(rule.read(m), 2)
            firing = value > rule.threshold
            if firing == (rule.firing_since is not None):
                continue
            rule.firing_since = iso() if firing else None
            self.alerts_total += 1 if firing else 0
            verb = "above" if firing else "back under"
            unit = rule.unit
            await self.emit(
                "alerts",
                "alert",
                {
                    "id": f"alert-{rule.id}-{int(time.time())}",
                    "rule": rule.id,
                    "rule_name": rule.name,
                    "status": "firing" if firing else "resolved",
                    "severity": rule.severity,
                    "value": value,
                    "threshold": rule.threshold,
                    "message": f"{rule.name}: {value}{unit} {verb} {rule.threshold}{unit}",
                    "starts_at": rule.firing_since or iso(),
                },
            )

    def snapshot(self) -> dict[str, Any]:
        """The ``system`` channel's initial state."""
        m = self.last or self.read()
        firing = [r.id for r in self.rules if r.firing_since is not None]
        return {
            "system_status": self.system_status(m),
            "metrics_summary": self.metrics_update(m),
            "active_tasks": self.tasks.active(),
            "alert_stats": {"firing": firing, "total": self.alerts_total},
        }

    async def run(self) -> None:
        """Figures every 5 s; a new bulk task whenever fewer than two run."""
        while True:
            if len(self.tasks.active()) < 2:
                self.tasks.start()
            m = self.last = self.read()
            await self.evaluate(m)
            await self.emit("system", "system_status", self.system_status(m))
            await self.emit("system", "metrics_update", self.metrics_update(m))
            await asyncio.sleep(self.pace(5))
