"""The Sanic blueprint: the routes (:mod:`sanic_realtime.routes`) and the listeners
that start and stop the hub. Built from the parts of a ``Realtime``, not the facade."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint

from . import redact
from .apidocs.routes import register_api_docs
from .exceptions import ConfigError
from .routes.admin import add_admin_routes, add_public_routes
from .routes.parts import Parts
from .routes.websocket import add_websocket_routes

__all__ = ["Parts", "build_blueprint"]


def build_blueprint(parts: Parts) -> Blueprint:
    config, hub, metrics = parts.config, parts.hub, parts.metrics
    bp = Blueprint("sanic_realtime")
    redact.install()  # tokens in URLs must not reach Sanic's access log
    add_websocket_routes(bp, parts)
    add_public_routes(bp, parts)
    add_admin_routes(bp, parts)

    @bp.main_process_start
    async def refuse_several_workers(app: Any) -> None:
        workers = getattr(app.state, "workers", 1)
        if config.backplane == "memory" and workers > 1:
            raise ConfigError(
                f"cannot run {workers} workers on the memory backplane: each worker would "
                "reach only its own clients. Set a Redis URL (backplane: "
                "redis://127.0.0.1:6379/0, with pip install 'sanic-realtime[redis]') or run "
                "one worker",
                "realtime.backplane",
            )

    @bp.main_process_start
    async def share_metrics(app: Any) -> None:
        # Several workers: each writes its metrics to files that a scrape sums. Set before
        # the workers start, which import prometheus_client with it (metrics.py).
        if metrics is not None and getattr(app.state, "workers", 1) > 1:
            from .metrics import make_multiprocess_dir

            app.ctx.realtime_metrics_dir = make_multiprocess_dir()

    @bp.main_process_stop
    async def unshare_metrics(app: Any) -> None:
        path = getattr(app.ctx, "realtime_metrics_dir", None)
        if path is not None:
            from .metrics import remove_multiprocess_dir

            remove_multiprocess_dir(path)

    @bp.before_server_start
    async def start_hub(app: Any) -> None:
        await hub.start()
        if metrics is not None:
            metrics.start()

    @bp.before_server_stop
    async def stop_hub(app: Any) -> None:
        await hub.shutdown()
        if metrics is not None:
            await metrics.stop()

    # GET {prefix}/asyncapi.json; OpenAPI descriptions
    register_api_docs(bp, config, parts.initial_state_hooks)
    return bp
