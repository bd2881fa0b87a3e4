"""The demo: an "ops console" Sanic app pushing logs, stats, alerts and requests live.

python -m example_app            # then: python -m websockets ws://127.0.0.1:8000/ws/logs?level=warn
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, json

from sanic_realtime import Realtime

from . import publisher

HERE = Path(__file__).parent


def create_app(
    name: str = "ops_console", *, config: str | Path = HERE / "realtime.yaml", speed: float = 1.0
) -> Sanic:
    realtime = Realtime.from_yaml(config)
    app = Sanic(name)
    app.config.AUTO_EXTEND = False
    app.ctx.realtime = realtime
    app.blueprint(realtime.blueprint)

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        base = f"ws://{request.host}{realtime.config.url_prefix}"
        return json(
            {
                "app": "sanic-realtime demo",
                "try": [
                    f"{base}/logs?level=warn",
                    f"{base}/requests?only_errors=true",
                    f"{base}/stats",
                    f"{base}?channels=alerts,stats",
                ],
                "stats": f"http://{request.host}{realtime.config.admin.stats_path}",
            }
        )

    @app.post("/logs")
    async def ingest(request: Request) -> HTTPResponse:
        """Publish a log posted by a service (what a real app's ingest route does)."""
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("level"), str):
            return json(
                {
                    "error": {
                        "code": "invalid_body",
                        "message": "expected a JSON object with a 'level'",
                    }
                },
                400,
            )
        result = await realtime.publish("logs", "log_update", body)
        return json({"id": result.id, "recipients": result.recipients})

    @app.after_server_start
    async def start_publisher(app: Sanic, _: Any = None) -> None:
        app.ctx.publisher = asyncio.create_task(publisher.run(realtime, speed=speed))

    @app.before_server_stop
    async def stop_publisher(app: Sanic, _: Any = None) -> None:
        app.ctx.publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app.ctx.publisher

    return app
