"""The ops console: one Sanic app running four real-time scenarios live, with a dashboard.

    python -m example_app        # then open http://127.0.0.1:8000/

1. log analysis (logs.py): ``logs``, ``anomalies``, ``log_stats``, ``alerts``;
2. an API gateway (gateway.py): ``providers``, ``requests``, ``stats`` (per window, throttled);
3. monitoring (monitoring.py): ``system``, ``tasks``, ``alerts``;
4. user management (users.py): ``users``, targeted per user and role, and each user's
   private inbox ``users.<id>`` (a template with an authorize hook);
5. chat rooms (rooms.py): ``rooms.<room>``, with presence (who's here) and messages the
   browsers publish themselves (typing, chat), checked by handlers.

The dashboard (static/) uses the package's browser client, served at ``/ws/client.js``.
Every channel and route is described in docs/demo.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
from pathlib import Path
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, file, json

from sanic_realtime import Realtime
from sanic_realtime.config import load_yaml

from .common import Emitter, Pace
from .gateway import WINDOWS, Gateway
from .logs import COMPONENTS, LEVELS, LogAnalysis
from .monitoring import Monitoring
from .rooms import ROOMS, build_rooms
from .users import Refused, UserStore, build_users, json_body, refusal

HERE = Path(__file__).parent
STATIC = HERE / "static"


def create_app(
    name: str = "ops_console",
    *,
    config: str | Path = HERE / "realtime.yaml",
    speed: float | None = None,
    secret: str | None = None,
    backplane: str | None = None,
    database: str | None = None,
    simulate: bool | None = None,
    seed: int | None = None,
) -> Sanic:
    """Build the app. Unset arguments come from the environment that ``python -m
    example_app`` prepares for every worker (DEMO_SPEED, DEMO_JWT_SECRET,
    REALTIME_BACKPLANE, DEMO_DB, DEMO_SIMULATE), else from demo defaults."""
    env = os.environ
    speed = speed if speed is not None else float(env.get("DEMO_SPEED", "1"))
    secret = secret or env.get("DEMO_JWT_SECRET") or secrets.token_urlsafe(48)
    environ = {**env, "DEMO_JWT_SECRET": secret}
    if backplane is not None:
        environ["REALTIME_BACKPLANE"] = backplane
    realtime = Realtime(load_yaml(config, environ))
    store = UserStore(database or env.get("DEMO_DB", ":memory:"))
    if simulate is None:
        # With several workers only the first one simulates (the others would publish
        # the same scenarios again); every worker serves clients and the HTTP routes.
        worker = env.get("SANIC_WORKER_NAME", "")
        simulate = env.get("DEMO_SIMULATE", "1") == "1" and (not worker or worker.endswith("-0-0"))

    app = Sanic(name)
    app.ctx.realtime = realtime
    app.ctx.users = store
    app.blueprint(realtime.blueprint)
    app.blueprint(build_users(realtime, store, secret))
    app.ctx.rooms = build_rooms(realtime, store)
    app.static("/static", STATIC, name="demo_static")

    pace = Pace(speed)
    rng = random.Random(seed)
    emit = Emitter(realtime)
    logs = LogAnalysis(emit, pace, rng)
    gateway = Gateway(emit, pace, rng)
    monitoring = Monitoring(emit, pace, rng, gateway)
    app.ctx.logs, app.ctx.gateway, app.ctx.monitoring = logs, gateway, monitoring

    @realtime.initial_state("providers")
    async def providers_now(request: Request) -> Any:
        return gateway.snapshot()

    @realtime.initial_state("system")
    async def system_now(request: Request) -> Any:
        return monitoring.snapshot()

    @realtime.initial_state("tasks")
    async def tasks_now(request: Request) -> Any:
        return {"tasks": list(monitoring.tasks.tasks.values())}

    @realtime.initial_state("tasks.{task_id}")
    async def task_now(request: Request, task_id: str) -> Any:
        """tasks.task-3: the task as it is now (None: an unknown or forgotten task)."""
        return {"task": monitoring.tasks.tasks.get(task_id)}

    @app.exception(Refused)
    async def refused(request: Request, e: Refused) -> HTTPResponse:
        return refusal(e)

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return await file(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/config")
    async def demo_config(request: Request) -> HTTPResponse:
        cfg = realtime.config
        return json(
            {
                "ws": cfg.url_prefix,
                "broadcast_path": cfg.admin.broadcast_path,
                "stats_path": cfg.admin.stats_path,
                "channels": [c for c in cfg.channels if "{" not in c],
                "templates": [c for c in cfg.channels if "{" in c],
                "levels": LEVELS,
                "components": COMPONENTS,
                "providers": [{"id": p.id, "name": p.name} for p in gateway.providers.values()],
                "models": {p.id: p.models for p in gateway.providers.values()},
                "windows": list(WINDOWS),
                "severities": ["low", "medium", "high", "critical"],
                "simulating": simulate,
                "rooms": list(ROOMS),
            }
        )

    @app.post("/api/tasks")
    async def start_task(request: Request) -> HTTPResponse:
        body = json_body(request) or {}
        if not isinstance(body, dict):
            return refusal(Refused(400, "invalid_body", "expected a JSON object"))
        total = body.get("total")
        if total is not None and (not isinstance(total, int) or not 1 <= total <= 10_000):
            return refusal(Refused(400, "invalid_body", "'total' is an integer from 1 to 10000"))
        name = body.get("name")
        task = monitoring.tasks.start(str(name)[:80] if name else None, total)
        return json({"task": task}, 201)

    @app.post("/logs")
    async def ingest(request: Request) -> HTTPResponse:
        """Publish a log posted by a service (what a real app's ingest route does); the
        anomaly detector sees it too."""
        body = json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("level"), str):
            return refusal(Refused(400, "invalid_body", "expected a JSON object with a 'level'"))
        if body["level"] not in LEVELS:
            return refusal(
                Refused(400, "invalid_level", f"'level' must be one of {', '.join(LEVELS)}")
            )
        result = await realtime.publish("logs", "log_update", body)
        await logs.observe(body)
        return json({"id": result.id, "recipients": result.recipients})

    @app.after_server_start
    async def start_scenarios(app: Sanic, _: Any = None) -> None:
        app.ctx.jobs = []
        if simulate:
            for scenario in (logs, gateway, monitoring):
                app.ctx.jobs.append(asyncio.create_task(scenario.run()))

    @app.before_server_stop
    async def stop_scenarios(app: Sanic, _: Any = None) -> None:
        for job in app.ctx.jobs:
            job.cancel()
        for job in app.ctx.jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await monitoring.tasks.stop()

    return app
