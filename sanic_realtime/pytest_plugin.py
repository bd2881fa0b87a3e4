"""A pytest plugin with one fixture, `realtime_server`, on top of :mod:`sanic_realtime.testing`.

Opt in from your top-level ``conftest.py`` (or with ``pytest -p sanic_realtime.pytest_plugin``):

    pytest_plugins = ["sanic_realtime.pytest_plugin"]

    async def test_ingest(realtime_server):
        server = await realtime_server(app)
        client = await server.client("logs")

It is not registered as a ``pytest11`` entry point on purpose: that would load it (and
import Sanic, and set ``Sanic.test_mode``) in every pytest run of every project where
sanic-realtime is installed, whether it tests a realtime app or not. It needs
pytest-asyncio and works in its ``auto`` and ``strict`` modes; the servers run in the
test's event loop (function scope).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest_asyncio
from sanic import Sanic

from .testing import LiveApp, serve_app

if TYPE_CHECKING:
    from .extension import Realtime

__all__ = ["ServeRealtime", "realtime_server"]

# As sanic-testing does on import: an app factory may make a second app with the same
# name (a new one per test), and an app may be served again (see serve_app).
Sanic.test_mode = True


class ServeRealtime:
    """The `realtime_server` fixture's value: `await realtime_server(app)` serves `app`
    (see `serve_app` for the arguments) until the test ends, and returns the `LiveApp`."""

    def __init__(self) -> None:
        self.servers: list[LiveApp] = []

    async def __call__(
        self,
        app: Sanic[Any, Any],
        realtime: Realtime | None = None,
        *,
        host: str = "127.0.0.1",
        access_log: bool | None = None,
    ) -> LiveApp:
        server = await serve_app(app, realtime, host=host, access_log=access_log).start()
        self.servers.append(server)
        return server

    async def stop(self) -> None:
        """Stop every server started, newest first."""
        servers, self.servers = self.servers, []
        for server in reversed(servers):
            await server.stop()


@pytest_asyncio.fixture
async def realtime_server() -> AsyncIterator[ServeRealtime]:
    """`server = await realtime_server(app)`: `app` served on 127.0.0.1 and a free
    port in the test's event loop, with its realtime blueprint, until the test ends
    (its clients are closed, then the server stops)."""
    serve = ServeRealtime()
    try:
        yield serve
    finally:
        await serve.stop()
