"""Test your app's publishers against a real server: no pytest needed.

    async with serve_app(app) as server:            # 127.0.0.1, a free port
        client = await server.client("logs", level="error")
        ...                                          # call your route at server.url
        event = await client.next_event("log_update")
        await client.assert_no_event()

:func:`serve_app` starts the app (which registered ``realtime.blueprint``) inside the
running event loop, as ``sanic`` would in a worker, and stops it on exit; the same app
can be served again, in the same loop or a new one (one test after another). The pytest
fixture built on it is in :mod:`sanic_realtime.pytest_plugin`. See docs/how-to/testing.md.

HTTP calls are left to the client your tests already use (httpx, aiohttp, ...):
``server.url`` and ``server.http_url(path)`` say where to send them. The package depends
on no HTTP client, and a test's requests need its own headers, cookies and assertions.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .client import Event, RealtimeClient

if TYPE_CHECKING:
    from sanic import Sanic

    from .extension import Realtime

__all__ = ["LiveApp", "LiveClient", "find_realtime", "serve_app"]


def find_realtime(app: Sanic[Any, Any]) -> Realtime:
    """The `Realtime` whose blueprint `app` registered
    (`app.blueprint(realtime.blueprint)`).

    Raises `ValueError` when the app registered none, or more than one (then pass the
    one you mean to `serve_app(app, realtime)`).
    """
    found = [r for bp in app.blueprints.values() if (r := _realtime_of(bp)) is not None]
    if not found:
        raise ValueError(
            f"the Sanic app {app.name!r} has no sanic-realtime blueprint: register it "
            "with app.blueprint(realtime.blueprint) before serving the app"
        )
    if len(found) > 1:
        raise ValueError(
            f"the Sanic app {app.name!r} registered {len(found)} sanic-realtime "
            "blueprints: pass the one to use, serve_app(app, realtime)"
        )
    return found[0]


def _realtime_of(blueprint: Any) -> Realtime | None:
    ref = getattr(getattr(blueprint, "ctx", None), "realtime", None)
    return ref() if callable(ref) else None  # a weakref set by Realtime.blueprint


def serve_app(
    app: Sanic[Any, Any],
    realtime: Realtime | None = None,
    *,
    host: str = "127.0.0.1",
    access_log: bool | None = None,
) -> LiveApp:
    """Serve `app` on `host` and a free port, in the running event loop:
    `async with serve_app(app) as server: ...` (or `await serve_app(app).start()` and
    later `await server.stop()`).

    `app` must have registered `realtime.blueprint`; `realtime` is found from the app
    unless given (it must be the one registered). `access_log`: `None` keeps the app's
    `ACCESS_LOG` setting. Raises `ValueError` at once for an app without the blueprint.

    Serving sets `Sanic.test_mode = True` (as sanic-testing does on import): Sanic's
    switch for running apps repeatedly in one process. It lets the app start again after
    a stop, and an app factory make a second app with the same name.
    """
    return LiveApp(app, realtime, host=host, access_log=access_log)


class LiveApp:
    """A Sanic app served in the running event loop; made by :func:`serve_app`.

    `app`, `realtime`, `host` and `port` (0 until started) say what runs where.
    """

    def __init__(
        self,
        app: Sanic[Any, Any],
        realtime: Realtime | None = None,
        *,
        host: str = "127.0.0.1",
        access_log: bool | None = None,
    ) -> None:
        found = find_realtime(app) if realtime is None else realtime
        if realtime is not None and not any(
            _realtime_of(bp) is realtime for bp in app.blueprints.values()
        ):
            raise ValueError(
                f"the Sanic app {app.name!r} did not register this Realtime's blueprint: "
                "call app.blueprint(realtime.blueprint) before serving the app"
            )
        self.app = app
        self.realtime = found
        self.host = host
        self.port = 0
        self.access_log = access_log
        self._server: Any = None
        self._clients: list[LiveClient] = []

    # ------------------------------------------------------------ where

    @property
    def url(self) -> str:
        """The server's base URL, `http://127.0.0.1:<port>`: give it to your HTTP
        client (`httpx.AsyncClient(base_url=server.url)`)."""
        self._check_started()
        return f"http://{self.host}:{self.port}"

    def http_url(self, path: str = "/") -> str:
        """The full URL of one of the app's HTTP routes: `server.http_url("/logs")`."""
        return self.url + _slash(path)

    def ws_url(self, path: str | None = None) -> str:
        """The WebSocket URL of `path`; by default the general route (`url_prefix`,
        `/ws`), the one `RealtimeClient` connects to."""
        self._check_started()
        path = self.realtime.config.url_prefix if path is None else path
        return f"ws://{self.host}:{self.port}{_slash(path)}"

    def _check_started(self) -> None:
        if self._server is None:
            raise RuntimeError("the app is not being served: use `async with serve_app(app)`")

    # ------------------------------------------------------------ clients

    async def client(
        self,
        *channels: str,
        token: str | None = None,
        filters: Mapping[str, Any] | None = None,
        **filter_values: Any,
    ) -> LiveClient:
        """A connected :class:`LiveClient` subscribed to `channels` with the filters
        given as keywords (`level="error"`) or as `filters={...}` (for names that are not
        Python identifiers); closed when the server stops.

        Returns once the server confirmed the subscription: from then on every event
        published on these channels and matching the filters reaches it. The client does
        not reconnect: a lost connection fails its next `next_event`. Raises what
        `RealtimeClient.connect` raises: `RequestFailed` (code `unknown_channel`,
        `unknown_filter`, `bad_filter_value`, `forbidden`) when the server refuses the
        subscription, `Refused` (`status`, `code`) when it refuses the handshake (e.g.
        401 without a valid `token` when `auth.mode` is `jwt`).
        """
        self._check_started()
        values = {**(filters or {}), **filter_values}
        client = LiveClient(
            self.ws_url(),
            channels=list(channels) or None,
            filters=values or None,
            token=token,
            reconnect=False,
            connect_timeout=5.0,
        )
        try:
            await client.connect()
        except BaseException:
            await client.close()
            raise
        self._clients.append(client)
        return client

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> LiveApp:
        """Start serving (in the running event loop); returns `self`."""
        from sanic import Sanic

        if self._server is not None:
            raise RuntimeError(f"the app {self.app.name!r} is already being served")
        app: Any = self.app  # Sanic's routers and AsyncioServer are untyped
        # Sanic's own switch for serving an app repeatedly in one process: without it a
        # second start fails (router finalized; TouchUp re-compiling its own output).
        Sanic.test_mode = True
        # Routes and signals are compiled again for this start, and the signal router
        # records the running loop (as sanic-testing does before each request).
        if app.router.finalized:
            app.router.reset()
        if app.signal_router.finalized:
            app.signal_router.reset()
        sock = socket.socket()
        try:
            sock.bind((self.host, 0))
            server: Any = await app.create_server(
                sock=sock, access_log=self.access_log, return_asyncio_server=True
            )
        except BaseException:
            sock.close()
            raise
        if server is None:  # pragma: no cover - only without return_asyncio_server
            sock.close()
            raise RuntimeError("Sanic did not return a server")
        self.port = sock.getsockname()[1]
        self._server = server
        try:
            await server.startup()
            await server.before_start()
            await server.after_start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Close the clients, then stop the server as Sanic does: `before_server_stop`
        (WebSocket clients are closed with 1001), idle HTTP connections closed, the app's
        tasks cancelled, `after_server_stop`. Does nothing if not started."""
        server, self._server = self._server, None
        if server is None:
            return
        clients, self._clients = self._clients, []
        for client in clients:
            await client.close()
        app = self.app
        try:
            await server.before_stop()
        finally:
            closing = server.close()
            if closing is not None:
                await closing
            connections = server.connections
            for conn in list(connections):
                conn.close_if_idle()
            graceful = float(app.config.GRACEFUL_SHUTDOWN_TIMEOUT)
            for _ in range(int(graceful / 0.02)):  # as Sanic's own shutdown: poll, then force
                if not connections:
                    break
                await asyncio.sleep(0.02)
            for conn in list(connections):
                ws = getattr(conn, "websocket", None)
                if ws is not None:
                    ws.fail_connection(code=1001)
                else:
                    conn.abort()
            tasks = [t for t in app.tasks if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=graceful)
            app.purge_tasks()
            await server.after_stop()

    async def __aenter__(self) -> LiveApp:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class LiveClient(RealtimeClient):
    """A `RealtimeClient` (every method of docs/clients.md works) with two helpers for
    tests: :meth:`next_event` and :meth:`assert_no_event`. Made by
    :meth:`LiveApp.client`."""

    async def next_event(
        self, type: str | None = None, *, channel: str | None = None, timeout: float = 5.0
    ) -> Event:
        """The next message the client hands over (published events, and the control
        messages `async for` gives: `initial_state`, `messages_dropped`, ...), waiting at
        most `timeout` seconds.

        With `type` and/or `channel`, messages of other types or channels are skipped
        (and consumed). Raises `AssertionError` after `timeout`, naming what it waited
        for and what it skipped; raises the client's error if its connection failed.
        """
        wanted = _describe_wanted(type, channel)
        skipped: list[Event] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                event = await asyncio.wait_for(self._next(), max(left, 0))
            except asyncio.TimeoutError:  # not the built-in TimeoutError on Python 3.10
                raise AssertionError(
                    f"no {wanted} arrived within {timeout:g}s "
                    f"(subscribed to {self._subscriptions()}; {_describe_skipped(skipped)})"
                ) from None
            if event is None:
                raise AssertionError(
                    f"the client was closed while waiting for {wanted} "
                    f"({_describe_skipped(skipped)})"
                )
            if (type is None or event.type == type) and (
                channel is None or event.channel == channel
            ):
                return event
            skipped.append(event)

    async def assert_no_event(self, within: float = 0.3) -> None:
        """Wait `within` seconds and raise `AssertionError` if any message arrives
        (it is consumed); a quiet period proves only that nothing came in it."""
        try:
            event = await asyncio.wait_for(self._next(), within)
        except asyncio.TimeoutError:  # not the built-in TimeoutError on Python 3.10
            return
        if event is None:
            return  # closed: nothing can arrive any more
        raise AssertionError(f"expected no event within {within:g}s, got {_show(event)}")

    async def _next(self) -> Event | None:
        """The next message; None when the client was closed (its error if it failed)."""
        messages = aiter(self)
        try:
            return await anext(messages)
        except StopAsyncIteration:
            return None
        finally:
            if isinstance(messages, AsyncGenerator):
                await messages.aclose()  # the loop ends: the next call starts another

    def _subscriptions(self) -> str:
        parts = []
        for channel, flt in self._subs.items():
            shown = ", ".join(f"{k}={v}" for k, v in (flt or {}).items())
            parts.append(f"{channel} ({shown})" if shown else channel)
        return f"{', '.join(parts) or 'no channel'} on {self.url}"


def _slash(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _describe_wanted(type: str | None, channel: str | None) -> str:
    what = f"event of type {type!r}" if type is not None else "event"
    return what + (f" on channel {channel!r}" if channel is not None else "")


def _show(event: Event) -> str:
    where = f" on {event.channel!r}" if event.channel is not None else ""
    return f"{event.type!r}{where} {event.data!r}"[:200]


def _describe_skipped(skipped: list[Event]) -> str:
    if not skipped:
        return "nothing else arrived"
    shown = "; ".join(_show(e) for e in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return f"skipped {len(skipped)} other message(s): {shown}{more}"
