"""Shared fixtures: a real Sanic server on a free port, real clients."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sanic import Sanic
from websockets.asyncio.client import ClientConnection, connect

from sanic_realtime import Realtime
from sanic_realtime.config import parse_config
from sanic_realtime.testing import LiveApp

Sanic.test_mode = True
_names = itertools.count()

#: A config with the channels of DESIGN.md's example, used by most tests.
BASE: dict[str, Any] = {
    "channels": {
        "logs": {
            "filters": {
                "level": {"op": "min", "order": ["debug", "info", "warn", "error", "critical"]},
                "component": {},
                "provider_id": {},
            }
        },
        "stats": {"initial": "last", "history": {"size": 100, "ttl": "1m"}},
        "alerts": {
            "filters": {"severity": {"op": "min", "order": ["low", "medium", "high", "critical"]}},
            "roles": ["admin"],
        },
        "requests": {
            "filters": {
                "provider_id": {},
                "model_id": {},
                "only_errors": {"op": "flag", "field": "success", "equals": False},
            }
        },
    }
}


def make_realtime(**overrides: Any) -> Realtime:
    """A Realtime with BASE's channels and ``overrides`` on top."""
    data = {**BASE, **overrides}
    return Realtime(parse_config(data))


class LiveServer(LiveApp):
    """A Sanic app served on 127.0.0.1:<free port> inside the test's event loop
    (``sanic_realtime.testing``'s ``LiveApp``: ``client()``, ``url``, ``ws_url()``),
    with an httpx client (``http``) and raw websockets connections (``connect()``)."""

    def __init__(self, app: Sanic, realtime: Realtime, *, access_log: bool = False) -> None:
        super().__init__(app, realtime, access_log=access_log)
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> LiveServer:
        await super().start()
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10)
        return self

    async def stop(self) -> None:
        http, self.http = self.http, None
        if http is not None:
            await http.aclose()
        await super().stop()

    def connect(self, path: str, **kwargs: Any) -> Any:
        """``async with server.connect("/ws/logs") as ws``: a real websockets client."""
        kwargs.setdefault("open_timeout", 5)
        return connect(self.ws_url(path), **kwargs)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """``server = await serve(realtime)``: start an app with the realtime blueprint."""
    started: list[LiveServer] = []

    async def start(
        realtime: Realtime,
        setup: Callable[[Sanic], None] | None = None,
        *,
        auto_extend: bool = False,
        access_log: bool = False,
    ) -> LiveServer:
        app = Sanic(f"rt_test_{next(_names)}")
        # Off by default for speed; the sanic-ext test turns it on as users have it.
        app.config.AUTO_EXTEND = auto_extend
        app.blueprint(realtime.blueprint)
        if setup is not None:
            setup(app)
        server = await LiveServer(app, realtime, access_log=access_log).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()
    Sanic._app_registry.clear()


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    """The next message, decoded; fails the test after ``timeout``."""
    raw = await asyncio.wait_for(ws.recv(), timeout)
    message = json.loads(raw)
    assert isinstance(message, dict)
    return message


async def recv_until(ws: ClientConnection, type: str, timeout: float = 5.0) -> dict[str, Any]:
    """Skip messages until one of ``type`` arrives."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv_json(ws, timeout)
            if message["type"] == type:
                return message


async def no_message(ws: ClientConnection, wait: float = 0.3) -> None:
    """Assert that nothing arrives within ``wait`` seconds."""
    try:
        raw = await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {raw!r}")
