"""The app the scale-out tests run with the real `sanic` command line, one per process:

    RT_BACKPLANE=redis://... RT_PREFIX=rt-test-x python -m sanic tests.scale_app:create_app \\
        --factory --single-process --port 8001

``RT_METRICS=1`` turns the Prometheus metrics on (at /metrics); ``RT_CLIENT_RATE=N`` sets
``client_rate_limit`` to N frames per second; ``RT_LEAVE_DELAY`` the presence channel's
``leave_delay`` (500ms).

BASE's channels (see conftest.py), JWT auth on the test secret, a static admin token, and
a ``POST /kick?user_id=`` route that calls ``realtime.disconnect``, and an empty page at
``/page`` (a browser test's origin).
"""

from __future__ import annotations

import os

from sanic import Request, Sanic
from sanic.response import HTTPResponse, html, json

from sanic_realtime import Realtime
from sanic_realtime.config import parse_config

from .conftest import BASE
from .tokens import SECRET

ADMIN_TOKEN = "scale-admin-token-" + "y" * 20


def create_app() -> Sanic:
    config = parse_config(
        {
            **BASE,
            # BASE's channels and one template (tests/test_scale_out.py, per-instance keys).
            "channels": {
                **BASE["channels"],
                "orders.{order_id}": {"history": {"size": 50, "ttl": "10m"}},
                # Presence and client messages (tests/test_presence_redis.py).
                "rooms.{room}": {
                    "presence": {"leave_delay": os.environ.get("RT_LEAVE_DELAY", "500ms")},
                    "client_messages": {"types": ["typing", "chat"], "history": ["chat"]},
                },
            },
            "backplane": os.environ.get("RT_BACKPLANE", "memory"),
            "redis": {"prefix": os.environ.get("RT_PREFIX", "realtime")},
            "auth": {"mode": "jwt", "jwt_secret": SECRET},
            "admin": {"token": ADMIN_TOKEN},
            "heartbeat_interval": "5s",
            "metrics": {"enabled": os.environ.get("RT_METRICS") == "1"},
            "client_rate_limit": {"messages": int(os.environ.get("RT_CLIENT_RATE", "50"))},
        }
    )
    realtime = Realtime(config)
    app = Sanic("scale_app")
    app.config.AUTO_EXTEND = False
    app.blueprint(realtime.blueprint)

    @app.post("/kick")
    async def kick(request: Request) -> HTTPResponse:
        closed = await realtime.disconnect(user_id=request.args.get("user_id"))
        return json({"closed_here": closed})

    @app.get("/page")
    async def page(request: Request) -> HTTPResponse:
        return html("<!doctype html><title>sanic-realtime browser test</title>")

    return app
