"""The browser client (``sanic_realtime/static/realtime.js``, served at ``/ws/client.js``) in
a real Chromium, driven by Playwright, against real servers: in-process Sanic servers, and
``sanic`` processes sharing Redis for restarts. Nothing is mocked.

The page is the server's own (``/page``), so ``import("/ws/client.js")`` is same-origin. An
init script records, without changing what they do, every ``WebSocket`` the page opens
(when, with which subprotocols, how it closed, and the client's status just after) and the
timers still pending, so tests can check the backoff and that ``disconnect()`` leaves
nothing behind.

Chromium comes from tests/test_browser.py's ``chromium`` fixture (Debian's package).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from sanic import Request, Sanic
from sanic.response import HTTPResponse, html

from . import proxy
from .conftest import make_realtime
from .processes import Cluster, SanicProcess
from .redis_support import free_port, new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .test_browser import WAIT_MS, chromium, headless_page, with_page
from .tokens import bearer, jwt_realtime, token

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["chromium"]  # the fixture, imported so that pytest finds it here

pytestmark = pytest.mark.timeout(60, func_only=True)

#: Recorded in every page before its scripts run: sockets, closes, live timers.
HARNESS = """
(() => {
  const rt = (window.rt = { events: [], states: [], sockets: [], closes: [], tokenCalls: 0 });
  rt.err = (e) => e && {
    name: e.name, code: e.code ?? null, message: e.message,
    closeCode: e.closeCode ?? null, closeReason: e.closeReason ?? null,
  };
  rt.plain = (s) => s && { ...s, lastError: rt.err(s.lastError) };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      const entry = { at: performance.now(), url: String(url), offered: protocols ?? null,
                      protocol: null };
      rt.sockets.push(entry);
      this.addEventListener("open", () => { entry.protocol = this.protocol; });
      this.addEventListener("close", (e) => {
        // Runs before the client's onclose: read its status once that has run.
        const at = performance.now();
        setTimeout(() => rt.closes.push({
          at, code: e.code, reason: e.reason,
          status: rt.plain(window.client && window.client.getConnectionStatus()),
        }), 0);
      });
    }
  };
  const live = new Set();
  const [st, ct, si, ci] = [setTimeout, clearTimeout, setInterval, clearInterval];
  window.setTimeout = (fn, ms, ...args) => {
    const id = st(() => { live.delete(id); fn(...args); }, ms);
    live.add(id);
    return id;
  };
  window.clearTimeout = (id) => { live.delete(id); ct(id); };
  window.setInterval = (fn, ms, ...args) => {
    const id = si(fn, ms, ...args);
    live.add(id);
    return id;
  };
  window.clearInterval = (id) => { live.delete(id); ci(id); };
  rt.liveTimers = () => live.size;
})();
"""

#: Creates ``window.client`` from the served module (not connected yet).
CREATE = """
async ([url, options, tokenValue]) => {
  const { RealtimeClient } = await import("/ws/client.js");
  const rt = window.rt;
  if (tokenValue !== null) {
    // A token, or a list: the n-th call gets the n-th (the last one from then on).
    const tokens = [].concat(tokenValue);
    options.token = async () => tokens[Math.min(rt.tokenCalls++, tokens.length - 1)];
  }
  const client = (window.client = new RealtimeClient(url, options));
  client.on("*", (m) => rt.events.push(m));
  client.onConnectionChange((s) => rt.states.push(rt.plain(s)));
  return client.url;
}
"""

#: ``client.connect()``: {ok: status} or {error: RealtimeError's fields}.
CONNECT = """
async () => {
  try { return { ok: window.rt.plain(await window.client.connect()) }; }
  catch (e) { return { error: window.rt.err(e) }; }
}
"""

BROADCAST = "/admin/ws/broadcast"


class ClientPage:
    """A Chromium page on a server's origin, holding one ``RealtimeClient``."""

    def __init__(self, page: Page) -> None:
        self.page = page
        #: (type, text) of every console message: the client's warnings and errors.
        self.console: list[tuple[str, str]] = []
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        #: URLs of the WebSockets the page opened, as Chrome reports them.
        self.socket_urls: list[str] = []
        page.on("websocket", lambda ws: self.socket_urls.append(ws.url))

    async def open(self, origin: str, path: str = "/page") -> None:
        response = await self.page.goto(origin + path)
        assert response is not None and response.ok

    async def create(
        self, url: str, *, token_fn: str | list[str] | None = None, **options: Any
    ) -> str:
        """``window.client = new RealtimeClient(url, options)``; ``token_fn``: the token an
        async function returns (a list: one per call, the last one repeated; calls counted
        in ``rt.tokenCalls``). Returns ``client.url``."""
        resolved: str = await self.page.evaluate(CREATE, [url, options, token_fn])
        return resolved

    async def connect(self, timeout: float = 10) -> dict[str, Any]:
        result: dict[str, Any] = await asyncio.wait_for(self.page.evaluate(CONNECT), timeout)
        return result

    async def run(self, script: str, arg: Any = None) -> Any:
        """Evaluate an async function of ``(client, arg)``; a rejection comes back as
        ``{"error": {...}}``."""
        return await self.page.evaluate(
            """async ([script, arg]) => {
                const fn = eval(script);
                try { return { ok: await fn(window.client, arg) }; }
                catch (e) { return { error: window.rt.err(e) }; }
            }""",
            [script, arg],
        )

    async def value(self, expression: str) -> Any:
        return await self.page.evaluate(f"() => {expression}")

    async def wait(self, predicate: str, arg: Any = None, timeout: float = WAIT_MS) -> None:
        """Wait until ``predicate`` (an expression of ``arg``) is true in the page."""
        await self.page.wait_for_function(f"(arg) => {predicate}", arg=arg, timeout=timeout)

    async def events(self, type: str | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = await self.value("window.rt.events")
        return [e for e in events if type is None or e["type"] == type]

    async def wait_events(
        self, type: str, count: int, timeout: float = WAIT_MS
    ) -> list[dict[str, Any]]:
        """The ``type`` messages seen by ``on("*")``, once there are ``count`` of them."""
        await self.wait(
            "window.rt.events.filter((e) => e.type === arg[0]).length >= arg[1]",
            [type, count],
            timeout,
        )
        return await self.events(type)

    async def wait_connected(self, times: int, timeout: float = WAIT_MS) -> list[dict[str, Any]]:
        """The statuses ``onConnectionChange`` got, once ``times`` were "connected"."""
        await self.wait(
            "window.rt.states.filter((s) => s.state === 'connected').length >= arg",
            times,
            timeout,
        )
        states: list[dict[str, Any]] = await self.value("window.rt.states")
        return states

    async def states(self) -> list[str]:
        return [s["state"] for s in await self.value("window.rt.states")]

    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = await self.value(
            "window.rt.plain(window.client.getConnectionStatus())"
        )
        return status


@pytest.fixture
async def browser(chromium: str, serve: Any) -> AsyncIterator[ClientPage]:
    """A headless Chromium page with the harness; closed before ``serve``'s servers stop."""
    async with headless_page(chromium) as page:
        await page.add_init_script(HARNESS)
        yield ClientPage(page)


def compact(statuses: list[dict[str, Any]], min_delay: int, max_delay: int) -> list[str]:
    """The states reported, each run of "reconnecting" (one status per retry) shown once.
    Checks each run: ``attempt`` goes up by one per retry, and the k-th retry's delay is
    within full jitter's bound, ``min(max_delay, min_delay * 2**(k-1))``."""
    states: list[str] = []
    run: list[dict[str, Any]] = []
    for status in [*statuses, {"state": "end"}]:
        if status["state"] == "reconnecting":
            run.append(status)
            continue
        if run:
            attempts = [s["attempt"] for s in run]
            assert attempts == list(range(attempts[0], attempts[0] + len(run))), attempts
            for k, s in enumerate(run, 1):
                bound = min(max_delay, min_delay * 2 ** (k - 1))
                assert 0 <= s["nextRetryMs"] <= bound, (k, s)
            states.append("reconnecting")
            run = []
        states.append(status["state"])
    return states[:-1]


def numbers(events: list[dict[str, Any]]) -> list[int]:
    return [e["data"]["n"] for e in events]


async def broadcast(server: SanicProcess, n: int) -> None:
    """Publish log ``n`` through a server process's admin route."""
    response = await server.http.post(
        BROADCAST,
        json={"channel": "logs", "type": "log_update", "data": {"n": n}},
        headers=bearer(ADMIN_TOKEN),
    )
    assert response.status_code == 200, response.text


class Proxy(proxy.Proxy):
    """tests/proxy.py's proxy (``blackhole()`` silences the server on the open
    connections), also counting connections and able to inject bytes."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.accepted = 0
        self._clients: list[asyncio.StreamWriter] = []

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._clients.append(writer)
        try:
            await super()._accept(reader, writer)
        finally:
            self._clients.remove(writer)

    def inject(self, data: bytes) -> None:
        """Write ``data`` to the page on every open connection, as if from the server."""
        for writer in self._clients:
            if not writer.is_closing():
                writer.write(data)


# ------------------------------------------------------------------ the files


async def test_client_files_are_served_with_cache_headers(serve: Any) -> None:
    """``/ws/client.js`` is JavaScript with a strong ETag, cacheable for ten minutes and
    revalidated with a 304; ``/ws/client.d.ts`` is TypeScript."""
    server = await serve(make_realtime())
    assert server.http is not None
    js = await server.http.get("/ws/client.js")
    assert js.status_code == 200
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.headers["cache-control"] == "public, max-age=600"
    assert js.headers["access-control-allow-origin"] == "*"
    assert js.headers["x-content-type-options"] == "nosniff"
    etag = js.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert "export class RealtimeClient" in js.text
    assert "export class RealtimeError" in js.text
    again = await server.http.get("/ws/client.js", headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    types = await server.http.get("/ws/client.d.ts")
    assert types.status_code == 200
    assert types.headers["content-type"] == "application/typescript; charset=utf-8"
    assert "export declare class RealtimeClient" in types.text
    assert types.headers["etag"] != etag


# ------------------------------------------------------------------ one page, one server

LIVE_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>Live logs</title>
<link rel="icon" href="data:,">
<p>Connection: <span id="state">disconnected</span></p>
<ul id="events"></ul>
<script type="module">
  import { RealtimeClient } from "/ws/client.js";

  const client = new RealtimeClient("/ws", { channels: ["logs"], filter: { level: "warn" } });
  client.onConnectionChange((status) => {
    document.querySelector("#state").textContent = status.state;
  });
  client.on("log_update", (event) => {
    const item = document.createElement("li");
    item.textContent = `${event.data.level}: ${event.data.message}`;
    document.querySelector("#events").append(item);
  });
  client.connect().catch((error) => {
    document.querySelector("#state").textContent = `failed: ${error.message}`;
  });
</script>
"""


def with_live_page(app: Sanic) -> None:
    async def live(request: Request) -> HTTPResponse:
        return html(LIVE_PAGE)

    app.add_route(live, "/live")


async def test_one_module_script_gets_live_events(serve: Any, browser: ClientPage) -> None:
    """The issue's done criterion: a page with one ``<script type="module">`` that imports
    ``/ws/client.js`` shows live events (those its filter lets through)."""
    server = await serve(make_realtime(), with_live_page)
    await browser.open(f"http://127.0.0.1:{server.port}", "/live")
    await browser.page.wait_for_function(
        "() => document.querySelector('#state').textContent === 'connected'", timeout=WAIT_MS
    )
    realtime = server.realtime
    await realtime.publish("logs", "log_update", {"level": "info", "message": "noise"})
    await realtime.publish("logs", "log_update", {"level": "error", "message": "db down"})
    await browser.page.wait_for_function(
        "() => document.querySelectorAll('#events li').length >= 1", timeout=WAIT_MS
    )
    items = await browser.page.locator("#events li").all_text_contents()
    assert items == ["error: db down"]
    assert not [text for kind, text in browser.console if kind in ("error", "warning")]


async def test_subscribe_filters_and_refusals(serve: Any, browser: ClientPage) -> None:
    """connect() with channels and a filter; initial_state through ``on("*")``; filtered
    events do not arrive; subscribe()/unsubscribe() at run time; the server's refusals
    reject with its code and message; a throwing handler breaks nothing; ``off()``."""
    server = await serve(make_realtime(), with_page)
    realtime = server.realtime
    await realtime.publish("stats", "stats_update", {"cpu": 0.5})  # initial: last
    await browser.open(f"http://127.0.0.1:{server.port}")
    url = await browser.create(
        f"http://127.0.0.1:{server.port}/ws", channels=["logs", "stats"], filter={"level": "error"}
    )
    assert url == f"ws://127.0.0.1:{server.port}/ws"  # http: became ws:
    await browser.run(
        """async (client) => {
            window.rt.logs = [];
            window.rt.offLogs = client.on("log_update", (e) => window.rt.logs.push(e.data.n));
            client.on("log_update", () => { throw new Error("a broken handler"); });
        }"""
    )
    connected = await browser.connect()
    status = connected["ok"]
    assert status["state"] == "connected" and status["attempt"] == 0
    assert status["clientId"].startswith("c_")
    assert (status["userId"], status["roles"], status["lastError"]) == (None, [], None)
    # lastIds holds the resume points: the positions of the subscription, until events come.
    assert set(status["lastIds"]) == {"logs", "stats"}

    (initial,) = await browser.wait_events("initial_state", 1)
    assert (initial["channel"], initial["data"]) == ("stats", {"cpu": 0.5})
    assert (await browser.value("window.client.latest('stats')"))["data"] == {"cpu": 0.5}

    for n, level in enumerate(["info", "error", "warn", "critical"]):
        await realtime.publish("logs", "log_update", {"level": level, "n": n})
    logs = await browser.wait_events("log_update", 2)
    assert numbers(logs) == [1, 3]
    assert await browser.value("window.rt.logs") == [1, 3]
    assert (await browser.status())["lastIds"]["logs"] == logs[-1]["id"]
    assert (await browser.value("window.client.latest('logs')"))["id"] == logs[-1]["id"]
    broken = [t for kind, t in browser.console if kind == "error" and "a broken handler" in t]
    assert len(broken) == 2, browser.console

    # Subscribing at run time, with a filter.
    reply = await browser.run("(client) => client.subscribe(['alerts'], {severity: 'high'})")
    assert reply["ok"]["channels"] == ["alerts"]
    await realtime.publish("alerts", "alert", {"severity": "medium", "n": 10})
    await realtime.publish("alerts", "alert", {"severity": "critical", "n": 11})
    alerts = await browser.wait_events("alert", 1)
    assert numbers(alerts) == [11]

    # Unsubscribing: nothing more from alerts (logs, published after, is the witness).
    reply = await browser.run("(client) => client.unsubscribe('alerts')")
    assert reply == {"ok": {"channels": ["alerts"]}}
    assert "alerts" not in (await browser.status())["lastIds"]
    await realtime.publish("alerts", "alert", {"severity": "critical", "n": 12})
    await browser.run("async () => window.rt.offLogs()")
    await realtime.publish("logs", "log_update", {"level": "error", "n": 13})
    await browser.wait_events("log_update", 3)
    assert numbers(await browser.events("alert")) == [11]
    assert await browser.value("window.rt.logs") == [1, 3]  # removed by off()

    # Refusals: the server's code and message; nothing changes.
    refused = await browser.run("(client) => client.subscribe(['nope'])")
    assert refused["error"]["name"] == "RealtimeError"
    assert refused["error"]["code"] == "unknown_channel"
    assert refused["error"]["message"] == (
        "unknown channel 'nope'; known channels: logs, stats, alerts, requests"
    )
    refused = await browser.run("(client) => client.subscribe('logs', {severity: 'high'})")
    assert refused["error"]["code"] == "unknown_filter"
    known = "component, level, provider_id, types"
    assert refused["error"]["message"] == (
        f"unknown filter 'severity' for channels logs (known: {known})"
    )
    refused = await browser.run("(client) => client.subscribe('logs', {level: 'loud'})")
    assert refused["error"]["code"] == "bad_filter_value"
    # The logs subscription still has its filter: warn is filtered out, error arrives.
    await realtime.publish("logs", "log_update", {"level": "warn", "n": 14})
    await realtime.publish("logs", "log_update", {"level": "error", "n": 15})
    logs = await browser.wait_events("log_update", 4)
    assert numbers(logs) == [1, 3, 13, 15]
    assert await browser.states() == ["connecting", "connected"]
    assert not [t for kind, t in browser.console if kind == "warning"], browser.console


async def test_a_channel_url_means_that_channel_and_its_filters(
    serve: Any, browser: ClientPage
) -> None:
    """new RealtimeClient("ws://host/ws/logs?level=error"): that channel, that filter, on
    the general route (client.url shows it); with channels of its own, a channel URL (or
    ``?channels=``) fails at once with advice naming the general route."""
    server = await serve(make_realtime(), with_page)
    realtime = server.realtime
    await browser.open(f"http://127.0.0.1:{server.port}")
    await browser.create(server.ws_url("/ws/logs?level=error"))
    await browser.connect()
    assert await browser.page.evaluate("window.client.url") == server.ws_url("/ws")
    await realtime.publish("logs", "log_update", {"level": "info", "n": 1})
    await realtime.publish("logs", "log_update", {"level": "error", "n": 2})
    logs = await browser.wait_events("log_update", 1)
    assert numbers(logs) == [2]
    await browser.create(server.ws_url("/ws/logs"), channels=["stats"])
    result = await browser.connect()
    error = result["error"]
    assert error["code"] == "not_general_route"
    advice = f'new RealtimeClient("ws://127.0.0.1:{server.port}/ws", {{channels: ["logs"]}})'
    assert advice in error["message"]
    status = await browser.status()
    assert (status["state"], status["lastError"]["code"]) == ("failed", "not_general_route")
    await browser.create("/ws?channels=logs,stats", channels=["alerts"])
    error = (await browser.connect())["error"]
    assert error["code"] == "not_general_route"
    assert "?channels=" in error["message"]


# ------------------------------------------------------------------ tokens


async def test_token_is_sent_as_the_bearer_subprotocol(serve: Any, browser: ClientPage) -> None:
    """The token goes in ``["bearer", token]``, never in the URL; the connection is the
    token's user. A function token is asked again on reconnection, so a 1008 close (access
    revoked, token expired) reconnects; with a fixed token the client stops and says why."""
    server = await serve(jwt_realtime(), with_page)
    await browser.open(f"http://127.0.0.1:{server.port}")
    alice = token("alice", ["ops", "admin"])
    await browser.create("/ws", token_fn=alice, channels=["alerts"], minReconnectDelay=50)
    status = (await browser.connect())["ok"]
    assert status["clientId"].startswith("c_")
    assert (status["userId"], status["roles"]) == ("alice", ["ops", "admin"])
    assert status["expiresAt"].endswith("Z")
    (socket,) = await browser.value("window.rt.sockets")
    assert (socket["offered"], socket["protocol"]) == (["bearer", alice], "bearer")
    assert browser.socket_urls and all(alice not in url for url in browser.socket_urls)
    await server.realtime.publish("alerts", "alert", {"severity": "high", "n": 0})
    await browser.wait_events("alert", 1)

    # Revoked (1008): the function gives a token again, and the client reconnects.
    assert await server.realtime.disconnect(user_id="alice") == 1
    states = await browser.wait_connected(2)
    assert compact(states, 50, 20_000) == ["connecting", "connected", "reconnecting", "connected"]
    assert (states[2]["closeCode"], states[2]["closeReason"]) == (1008, "access revoked")
    assert await browser.value("window.rt.tokenCalls") == len(states) - 2  # one per attempt
    assert states[-1]["recovered"] == {"alerts": True}

    # A fixed token: 1008 is final.
    bob = token("bob", "admin")
    await browser.run(
        """async (client, bob) => {
            client.disconnect();
            const { RealtimeClient } = await import("/ws/client.js");
            window.fixed = new RealtimeClient("/ws", { token: bob, channels: ["logs"] });
            window.fixedStates = [];
            window.fixed.onConnectionChange((s) => window.fixedStates.push(window.rt.plain(s)));
            await window.fixed.connect();
        }""",
        bob,
    )
    assert await server.realtime.disconnect(user_id="bob") == 1
    await browser.wait("window.fixedStates.length >= 3")
    states = await browser.value("window.fixedStates")
    assert [s["state"] for s in states] == ["connecting", "connected", "failed"]
    error = states[2]["lastError"]
    assert (error["code"], error["closeCode"]) == ("closed_1008", 1008)
    assert "access revoked" in error["message"]
    assert "pass token as a function" in error["message"]


async def test_a_subscription_refused_on_reconnect_is_reported(
    serve: Any, browser: ClientPage
) -> None:
    """The token given on reconnection lost the role ``alerts`` needs: that subscription
    is refused in-band, reported to ``on("error")`` with its channels and dropped; the
    other subscription carries on and the client is connected."""
    server = await serve(jwt_realtime(), with_page)
    await browser.open(f"http://127.0.0.1:{server.port}")
    tokens = [token("carol", "admin"), token("carol", "user")]
    await browser.create("/ws", token_fn=tokens, channels=["alerts"], minReconnectDelay=50)
    await browser.connect()
    reply = await browser.run("(client) => client.subscribe('logs', {level: 'error'})")
    assert reply["ok"]["channels"] == ["logs"]
    await server.realtime.disconnect(user_id="carol")  # 1008: reconnect with the next token
    states = await browser.wait_connected(2)
    assert compact(states, 50, 20_000) == ["connecting", "connected", "reconnecting", "connected"]
    assert states[-1]["roles"] == ["user"]
    assert states[-1]["lastError"]["code"] == "forbidden"
    (error,) = await browser.events("error")
    assert error["data"] == {
        "code": "forbidden",
        "message": "channel 'alerts' needs one of the roles: admin",
        "channels": ["alerts"],
    }
    await server.realtime.publish("logs", "log_update", {"level": "error", "n": 1})
    assert numbers(await browser.wait_events("log_update", 1)) == [1]
    assert list((await browser.status())["lastIds"]) == ["logs"]
    # Dropped: a later reconnection does not ask for it again.
    await server.realtime.disconnect(user_id="carol")
    states = await browser.wait_connected(3)
    assert compact(states, 50, 20_000)[4:] == ["reconnecting", "connected"]
    assert len(await browser.events("error")) == 1


async def test_unsolicited_messages_are_dispatched_not_taken_as_replies(
    serve: Any, browser: ClientPage
) -> None:
    """An ``initial_state_failed`` error follows a ``subscribed`` without being a reply:
    it goes to ``on("error")``, and the next request still gets its own reply."""
    realtime = make_realtime()

    @realtime.initial_state("stats")
    async def broken(request: Any) -> None:
        raise RuntimeError("db unreachable")

    server = await serve(realtime, with_page)
    await browser.open(f"http://127.0.0.1:{server.port}")
    await browser.create("/ws", channels=["stats"])
    assert (await browser.connect())["ok"]["state"] == "connected"
    (error,) = await browser.wait_events("error", 1)
    assert error["data"] == {
        "code": "initial_state_failed",
        "message": "the initial state of 'stats' could not be computed "
        "(RuntimeError: db unreachable)",
    }
    reply = await browser.run("(client) => client.subscribe(['stats', 'logs'])")
    assert reply["ok"]["channels"] == ["stats", "logs"]
    assert len(await browser.wait_events("error", 2)) == 2  # the hook failed again
    reply = await browser.run("(client) => client.unsubscribe(['stats'])")
    assert reply == {"ok": {"channels": ["stats"]}}
    assert not [t for kind, t in browser.console if kind == "warning"], browser.console


# ------------------------------------------------------------------ presence, client messages

#: A presence channel that takes client messages: typing is ephemeral, chat kept in history.
ROOMS: dict[str, Any] = {
    "logs": {},
    "rooms.{room}": {
        "presence": {"leave_delay": "300ms"},
        "client_messages": {"types": ["typing", "chat"], "history": ["chat"]},
    },
}

#: ``window[name]``: a second client in the page, connected with a fixed token; what its
#: ``on("*")`` gets goes to ``rt[name]``. Returns its client id.
SECOND = """
async (_client, [name, tokenValue, channels]) => {
  const { RealtimeClient } = await import("/ws/client.js");
  const rt = window.rt;
  rt[name] = [];
  const client = (window[name] = new RealtimeClient("/ws", { token: tokenValue, channels }));
  client.on("*", (m) => rt[name].push(m));
  await client.connect();
  return client.getConnectionStatus().clientId;
}
"""

#: Requests of ``window.client`` whose outcomes go to ``rt.settled`` ({ok} or {error}).
SETTLED = """
(client, [kind, count, ...args]) => {
  const rt = window.rt;
  rt.settled = rt.settled ?? [];
  for (let i = 0; i < count; i++) {
    client[kind](...args).then(
      (ok) => rt.settled.push({ ok }),
      (e) => rt.settled.push({ error: rt.err(e) }),
    );
  }
}
"""


def change(kind: str, user: str) -> str:
    """A predicate: ``rt.events`` has a ``kind`` (presence_join, presence_leave) of ``user``."""
    return f"window.rt.events.some((m) => m.type === '{kind}' && m.data.user_id === '{user}')"


async def test_presence_and_client_messages_between_two_clients(
    serve: Any, browser: ClientPage
) -> None:
    """Alice and Bob (two clients of one page) on a presence channel that takes client
    messages: presence_join reaches Alice; presence() lists both; publish() of an
    ephemeral type reaches Bob with ``from`` and ``id: null`` (no resume point) and
    resolves ``{id: null}``, of a history type resolves its id (Bob's resume point), one
    the handler drops resolves ``{id: null, dropped: true}``; replies that come out of
    order (a chat waits for its handler) each settle their own request (by ref);
    refusals reject with the server's code; presence_leave follows Bob's disconnect."""
    realtime = jwt_realtime(channels=ROOMS)
    release = asyncio.Event()

    @realtime.on_message("rooms.{room}", "chat")
    async def chat_handler(conn: Any, channel: str, params: dict[str, str], data: Any) -> Any:
        if data.get("wait"):
            await release.wait()
        return None if data.get("drop") else data

    server = await serve(realtime, with_page)
    await browser.open(f"http://127.0.0.1:{server.port}")
    refused = await browser.run(
        """async () => {
            const { RealtimeClient } = await import("/ws/client.js");
            return new RealtimeClient("/ws").presence("rooms.a");
        }"""
    )
    assert refused["error"]["code"] == "not_connected"
    await browser.create("/ws", token_fn=token("alice", "member"), channels=["rooms.a"])
    alice = (await browser.connect())["ok"]["clientId"]
    bob = await browser.run(SECOND, ["bob", token("bob", "guest"), ["rooms.a"]])
    bob_id = bob["ok"]
    await browser.wait(change("presence_join", "bob"))
    (join,) = [m for m in await browser.events("presence_join") if m["data"]["user_id"] == "bob"]
    assert join == {
        "type": "presence_join",
        "channel": "rooms.a",
        "timestamp": join["timestamp"],
        "data": {"user_id": "bob", "role": "guest"},
    }

    who = await browser.run("(client) => client.presence('rooms.a')")
    present = who["ok"]
    users = sorted(present.pop("users"), key=lambda u: u["user_id"])
    assert present == {"count": 2, "anonymous": 0}
    assert [(u["user_id"], u["role"], u["connections"]) for u in users] == [
        ("alice", "member", 1),
        ("bob", "guest", 1),
    ]
    assert all(u["since"].endswith("Z") for u in users)

    # An ephemeral type: id null, not a resume point.
    position = (await browser.value("window.bob.getConnectionStatus()"))["lastIds"]["rooms.a"]
    sent = await browser.run("(client) => client.publish('rooms.a', 'typing', {on: true})")
    assert sent == {"ok": {"id": None}}
    await browser.wait("window.rt.bob.some((m) => m.type === 'typing')")
    (typing,) = [m for m in await browser.value("window.rt.bob") if m["type"] == "typing"]
    assert typing == {
        "type": "typing",
        "channel": "rooms.a",
        "id": None,
        "timestamp": typing["timestamp"],
        "data": {"on": True},
        "from": {"user_id": "alice", "client_id": alice},
    }
    status = await browser.value("window.bob.getConnectionStatus()")
    assert status["lastIds"]["rooms.a"] == position
    assert await browser.value("window.bob.latest('rooms.a')") is None

    # A history type: its id, which becomes Bob's resume point.
    sent = await browser.run("(client) => client.publish('rooms.a', 'chat', {text: 'hi'})")
    chat_id = sent["ok"]["id"]
    assert sent == {"ok": {"id": chat_id}} and chat_id.endswith(":1")
    await browser.wait("window.rt.bob.some((m) => m.type === 'chat')")
    (chat,) = [m for m in await browser.value("window.rt.bob") if m["type"] == "chat"]
    assert (chat["id"], chat["data"], chat["from"]) == (
        chat_id,
        {"text": "hi"},
        {"user_id": "alice", "client_id": alice},
    )
    status = await browser.value("window.bob.getConnectionStatus()")
    assert status["lastIds"]["rooms.a"] == chat_id
    assert (await browser.value("window.bob.latest('rooms.a')"))["id"] == chat_id

    # Out of order: the chat's reply waits for its handler, the two requests sent after it
    # are answered first; each promise gets its own reply.
    await browser.run(
        """(client) => {
            const rt = window.rt;
            rt.order = [];
            const note = (name) => (value) => rt.order.push([name, value]);
            const fail = (name) => (e) => rt.order.push([name, rt.err(e)]);
            client.publish('rooms.a', 'chat', {wait: true}).then(note('chat'), fail('chat'));
            client.presence('rooms.a').then((p) => p.count).then(note('presence'));
            client.publish('rooms.a', 'typing', {on: false}).then(note('typing'));
        }"""
    )
    await browser.wait("window.rt.order.length >= 2")
    assert await browser.value("window.rt.order") == [["presence", 2], ["typing", {"id": None}]]
    release.set()
    await browser.wait("window.rt.order.length >= 3")
    name, result = (await browser.value("window.rt.order"))[2]
    assert name == "chat" and result["id"].endswith(":2"), result

    # Dropped by the handler: nobody gets it (Bob's typing after it is the witness).
    dropped = await browser.run("() => window.bob.publish('rooms.a', 'chat', {drop: true})")
    assert dropped == {"ok": {"id": None, "dropped": True}}
    sent = await browser.run("() => window.bob.publish('rooms.a', 'typing', {on: true})")
    assert sent == {"ok": {"id": None}}
    await browser.wait("window.rt.events.some((m) => m.type === 'typing')")
    (from_bob,) = [m for m in await browser.events() if m["type"] in ("chat", "typing")]
    assert (from_bob["type"], from_bob["id"], from_bob["from"]) == (
        "typing",
        None,
        {"user_id": "bob", "client_id": bob_id},
    )

    # Refusals: the server's code and message.
    refused = await browser.run("(client) => window.bob.publish('rooms.a', 'shout', {})")
    assert refused["error"]["name"] == "RealtimeError"
    assert refused["error"]["code"] == "unknown_type"
    assert refused["error"]["message"] == (
        "channel 'rooms.a' takes no 'shout' messages (it takes: typing, chat)"
    )
    refused = await browser.run("(client) => client.presence('rooms.b')")
    assert refused["error"]["code"] == "forbidden"
    assert refused["error"]["message"] == "subscribe to 'rooms.b' to see who is on it"
    refused = await browser.run("(client) => client.publish('rooms.b', 'typing', {})")
    assert refused["error"]["code"] == "forbidden"
    await browser.run("(client) => client.subscribe('logs')")
    refused = await browser.run("(client) => client.presence('logs')")
    assert refused["error"]["code"] == "no_presence"
    refused = await browser.run("(client) => client.presence('nope')")
    assert refused["error"]["code"] == "unknown_channel"

    # Bob leaves: presence_leave, leave_delay later; presence() follows.
    await browser.run("async () => window.bob.disconnect()")
    await browser.wait(change("presence_leave", "bob"))
    who = await browser.run("(client) => client.presence('rooms.a')")
    assert [u["user_id"] for u in who["ok"]["users"]] == ["alice"]
    assert await browser.states() == ["connecting", "connected"]
    assert not [t for kind, t in browser.console if kind == "warning"], browser.console


async def test_requests_time_out_are_bounded_and_end_with_the_connection(
    serve: Any, browser: ClientPage
) -> None:
    """presence() and publish() whose replies do not come (the proxy swallows the
    server's bytes) reject after ``requestTimeout`` (request_timeout); past 1024 awaiting,
    a new one is refused at once (too_many_requests); those awaiting when the connection
    is lost reject with connection_lost, after disconnect() with disconnected, and no
    timer is left behind."""
    config = jwt_realtime(channels=ROOMS, client_rate_limit={"messages": 5000, "per": "1s"})
    server = await serve(config, with_page)
    async with Proxy(server.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/ws"
        await browser.open(f"http://127.0.0.1:{server.port}")
        alice = token("alice", "member")
        await browser.create(
            url, token_fn=alice, channels=["rooms.a"], pingInterval=0, requestTimeout=400
        )
        await browser.connect()
        assert (await browser.run("(client) => client.presence('rooms.a')"))["ok"]["count"] == 1
        proxy.blackhole()
        late = await browser.run("(client) => client.presence('rooms.a')")
        assert late["error"]["code"] == "request_timeout"
        assert late["error"]["message"] == (
            "presence('rooms.a'): no reply within 400 ms (requestTimeout)"
        )
        late = await browser.run("(client) => client.publish('rooms.a', 'typing', {})")
        assert late["error"]["code"] == "request_timeout"
        assert late["error"]["message"].endswith("; whether it was sent is unknown")
        await browser.run("async (client) => { client.disconnect(); window.rt.states = []; }")

        # No time limit; a heartbeat that notices the silence.
        await browser.create(
            url,
            token_fn=alice,
            channels=["rooms.a"],
            requestTimeout=0,
            pingInterval=250,
            pongTimeout=500,
            minReconnectDelay=50,
            maxReconnectDelay=100,
        )
        await browser.connect()
        proxy.blackhole()
        await browser.run(SETTLED, ["presence", 1024, "rooms.a"])
        refused = await browser.run("(client) => client.presence('rooms.a')")
        assert refused["error"]["code"] == "too_many_requests"
        assert refused["error"]["message"] == (
            "presence('rooms.a'): 1024 requests already await their reply (at most 1024)"
        )
        await browser.wait("window.rt.settled.length >= 1024")
        settled = await browser.value("window.rt.settled")
        assert {s["error"]["code"] for s in settled} == {"connection_lost"}
        assert settled[0]["error"]["message"] == (
            "presence('rooms.a'): the connection ended before its reply"
        )
        states = await browser.wait_connected(2)
        assert states[2]["lastError"]["code"] == "heartbeat_timeout"
        again = await browser.run("(client) => client.presence('rooms.a')")
        assert again["ok"]["count"] == 1

        proxy.blackhole()
        await browser.run("(client) => { window.rt.settled = []; }")
        await browser.run(SETTLED, ["publish", 3, "rooms.a", "chat", {"text": "lost?"}])
        await browser.run("async (client) => client.disconnect()")
        await browser.wait("window.rt.settled.length >= 3")
        settled = await browser.value("window.rt.settled")
        assert [s["error"]["code"] for s in settled] == ["disconnected"] * 3
        assert settled[0]["error"]["message"] == (
            "publish('chat' to 'rooms.a'): disconnect() was called before its reply; "
            "whether it was sent is unknown"
        )
        assert await browser.value("window.rt.liveTimers()") == 0


# ------------------------------------------------------------------ restarts


async def test_server_restart_mid_stream_loses_nothing(browser: ClientPage) -> None:
    """Server A (Redis backplane) is restarted while B keeps publishing: the page on A
    reconnects, resumes with ``since`` from Redis's history, and ends with every event
    exactly once, in order. Every state change was reported."""
    cluster = Cluster(redis_url(), new_prefix())
    try:
        a, b = await asyncio.gather(cluster.start(), cluster.start())
        await browser.open(f"http://127.0.0.1:{a.port}")
        await browser.create(
            "/ws",
            token_fn=token("alice", "ops"),
            channels=["logs"],
            minReconnectDelay=100,
            maxReconnectDelay=500,
        )
        assert (await browser.connect())["ok"]["state"] == "connected"

        published = 0
        restarted = asyncio.Event()

        async def stream() -> None:
            """Publish through B every 20 ms, until 10 more after A is back."""
            nonlocal published
            after = 0
            while after < 10:
                await broadcast(b, published)
                published += 1
                after += restarted.is_set()
                await asyncio.sleep(0.02)

        publishing = asyncio.create_task(stream())
        await browser.wait_events("log_update", 10)
        await a.stop()  # what cluster.restart(a) does, in two steps to count what is missed
        down_from = published
        a = await cluster.start(port=a.port)
        down_to = published
        restarted.set()
        await publishing
        assert down_to > down_from, "no event was published while A was down"
        logs = await browser.wait_events("log_update", published, timeout=20_000)
        assert numbers(logs) == list(range(published))

        # Every status reported: one per state change, and one per retry while A was down.
        states = await browser.value("window.rt.states")
        assert compact(states, 100, 500) == ["connecting", "connected", "reconnecting", "connected"]
        lost, back = states[2], states[-1]
        assert (lost["closeCode"], lost["closeReason"]) == (1001, "server shutting down")
        assert lost["attempt"] == 1  # the first retry is pending
        for retry in states[3:-1]:  # the attempts made while A was down failed
            assert retry["lastError"]["code"] == "connection_failed", retry
        assert back["recovered"] == {"logs": True}
        assert back["clientId"] != states[1]["clientId"]
        assert (back["attempt"], back["nextRetryMs"]) == (0, None)
        status = await browser.status()
        assert status["lastIds"] == {"logs": logs[-1]["id"]}
        assert await browser.value("window.rt.tokenCalls") == len(states) - 2
        assert not await browser.events("resume_failed")
    finally:
        await cluster.close()


async def test_restart_without_history_reports_resume_failed(browser: ClientPage) -> None:
    """The memory backplane forgets everything on restart: each reconnection that cannot
    resume says so (``resume_failed``, ``recovered: false``), then the client goes on from
    the new run's position."""
    env = {"RT_BACKPLANE": "memory"}
    server = await SanicProcess("tests.scale_app:create_app", env).start()
    try:
        await browser.open(f"http://127.0.0.1:{server.port}")
        await browser.create(
            "/ws", token_fn=token("bob", "user"), channels=["logs"], minReconnectDelay=100
        )
        await browser.connect()
        await broadcast(server, 0)
        await broadcast(server, 1)
        logs = await browser.wait_events("log_update", 2)
        since = [logs[-1]["id"]]
        for restart in (1, 2):
            await server.stop()
            server = await SanicProcess("tests.scale_app:create_app", env, port=server.port).start()
            states = await browser.wait_connected(1 + restart, timeout=15_000)
            assert states[-1]["state"] == "connected"
            assert states[-1]["recovered"] == {"logs": False}
            # The new run's position replaces the id that could not be resumed.
            position = states[-1]["lastIds"]["logs"]
            assert position.endswith(":0") and position != since[-1]
            since.append(position)
        notices = await browser.events("resume_failed")
        assert notices == [
            {"type": "resume_failed", "channel": "logs", "data": {"channel": "logs", "since": s}}
            for s in since[:2]
        ]
        assert compact(await browser.value("window.rt.states"), 100, 20_000) == [
            "connecting",
            "connected",
            "reconnecting",
            "connected",
            "reconnecting",
            "connected",
        ]
        await broadcast(server, 2)
        logs = await browser.wait_events("log_update", 3)
        assert numbers(logs) == [0, 1, 2]
    finally:
        await server.stop()


# ------------------------------------------------------------------ failures, disconnect


async def test_gives_up_after_max_attempts_with_jittered_backoff(
    serve: Any, browser: ClientPage
) -> None:
    """The server stops for good: the client retries with full-jitter backoff (the k-th
    retry waits a random time up to min(max, min * 2**(k-1))), gives up after
    ``maxReconnectAttempts`` retries and says why; each retry was reported."""
    server = await serve(make_realtime(), with_page)
    await browser.open(f"http://127.0.0.1:{server.port}")
    await browser.create(
        server.ws_url("/ws"),
        channels=["logs"],
        maxReconnectAttempts=4,
        minReconnectDelay=100,
        maxReconnectDelay=300,
    )
    await browser.connect()
    await server.stop()  # closes with 1001, then nothing listens on the port
    await browser.wait("window.client.getConnectionStatus().state === 'failed'")
    await asyncio.sleep(0.3)  # any further attempt would show up

    sockets = await browser.value("window.rt.sockets")
    closes = await browser.value("window.rt.closes")
    assert len(sockets) == 5 and len(closes) == 5  # the connection, then 4 retries
    assert [c["code"] for c in closes] == [1001, 1006, 1006, 1006, 1006]
    # The status after each close: the retry now pending, then (gave up) the last one made.
    assert [c["status"]["attempt"] for c in closes] == [1, 2, 3, 4, 4]
    delays = [c["status"]["nextRetryMs"] for c in closes[:4]]
    for k, (delay, cap) in enumerate(zip(delays, [100, 200, 300, 300], strict=True), 1):
        assert 0 <= delay <= cap, (k, delays)
        waited = sockets[k]["at"] - closes[k - 1]["at"]
        assert delay - 5 <= waited <= delay + 250, (k, delay, waited)
    assert len(set(delays)) > 1, delays  # random, not a fixed schedule
    final = closes[4]["status"]
    assert (final["state"], final["nextRetryMs"]) == ("failed", None)
    error = final["lastError"]
    assert error["code"] == "gave_up"
    assert error["message"].startswith(
        "gave up after 4 failed reconnection attempts in a row (maxReconnectAttempts: 4); the "
        "last: could not connect to ws://"
    )
    assert "closed with 1006 before connection_established" in error["message"]
    assert "HTTP status" in error["message"]
    statuses = await browser.value("window.rt.states")
    assert [s["state"] for s in statuses] == [
        "connecting",
        "connected",
        *["reconnecting"] * 4,
        "failed",
    ]
    assert [(s["attempt"], s["nextRetryMs"]) for s in statuses[2:6]] == list(
        zip([1, 2, 3, 4], delays, strict=True)
    )
    assert statuses[6]["lastError"]["code"] == "gave_up"

    # connect() again: the first attempt and 4 retries fail, and connect() rejects.
    result = await browser.connect()
    assert result["error"]["code"] == "gave_up"
    assert result["error"]["message"].startswith(
        "gave up after 5 failed connection attempts in a row (maxReconnectAttempts: 4)"
    )
    assert len(await browser.value("window.rt.sockets")) == 10
    statuses = await browser.value("window.rt.states")
    assert compact(statuses[7:], 100, 300) == ["connecting", "reconnecting", "failed"]
    assert [s["attempt"] for s in statuses[8:12]] == [1, 2, 3, 4]


async def test_heartbeat_detects_a_silent_connection(serve: Any, browser: ClientPage) -> None:
    """The server's bytes stop arriving but the socket stays open: no answer to a ping
    within ``pongTimeout`` closes it (4000, "heartbeat timeout"); the client reconnects
    and resumes without loss."""
    server = await serve(make_realtime(), with_page)
    realtime = server.realtime
    async with Proxy(server.port) as proxy:
        await browser.open(f"http://127.0.0.1:{server.port}")
        await browser.create(
            f"ws://127.0.0.1:{proxy.port}/ws",
            channels=["logs"],
            pingInterval=250,
            pongTimeout=500,
            minReconnectDelay=50,
            maxReconnectDelay=200,
        )
        await browser.connect()
        for n in range(5):
            await realtime.publish("logs", "log_update", {"n": n})
        await browser.wait_events("log_update", 5)
        proxy.blackhole()
        for n in range(5, 10):
            await realtime.publish("logs", "log_update", {"n": n})
        states = await browser.wait_connected(2)
        assert compact(states, 50, 200) == ["connecting", "connected", "reconnecting", "connected"]
        lost = states[2]
        assert (lost["closeCode"], lost["closeReason"]) == (4000, "heartbeat timeout")
        assert lost["lastError"]["code"] == "heartbeat_timeout"
        assert states[-1]["recovered"] == {"logs": True}
        for n in range(10, 15):
            await realtime.publish("logs", "log_update", {"n": n})
        logs = await browser.wait_events("log_update", 15)
        assert numbers(logs) == list(range(15))
        assert proxy.accepted == 2
        await browser.run("async (client) => client.disconnect()")


async def test_a_message_that_is_not_json_is_ignored(serve: Any, browser: ClientPage) -> None:
    """A text frame that is not JSON (here injected by the proxy) is skipped with a
    console warning; the connection and the handlers carry on."""
    server = await serve(make_realtime(), with_page)
    async with Proxy(server.port) as proxy:
        await browser.open(f"http://127.0.0.1:{server.port}")
        await browser.create(f"ws://127.0.0.1:{proxy.port}/ws", channels=["logs"])
        await browser.connect()
        await server.realtime.publish("logs", "log_update", {"n": 0})
        await browser.wait_events("log_update", 1)
        payload = b"not json"
        proxy.inject(bytes([0x81, len(payload)]) + payload)  # FIN + text, unmasked
        await server.realtime.publish("logs", "log_update", {"n": 1})
        logs = await browser.wait_events("log_update", 2)
        assert numbers(logs) == [0, 1]
        warnings = [t for kind, t in browser.console if kind == "warning"]
        assert any("not JSON" in t and "not json" in t for t in warnings), browser.console
        assert await browser.states() == ["connecting", "connected"]
        await browser.run("async (client) => client.disconnect()")


async def test_disconnect_stops_everything(serve: Any, browser: ClientPage) -> None:
    """disconnect(): closed with 1000, state "disconnected", no reconnection and no timer
    left; a connect() still under way rejects."""
    server = await serve(make_realtime(), with_page)
    assert server.http is not None
    await browser.open(f"http://127.0.0.1:{server.port}")
    await browser.create(server.ws_url("/ws"), channels=["logs"], pingInterval=100)
    await browser.connect()
    assert len(server.realtime.hub.connections) == 1
    assert await browser.value("window.rt.liveTimers()") >= 1  # the ping timer
    await browser.run("async (client) => client.disconnect()")
    status = await browser.status()
    assert (status["state"], status["closeCode"], status["nextRetryMs"]) == (
        "disconnected",
        1000,
        None,
    )
    await asyncio.sleep(1.0)
    assert await browser.states() == ["connecting", "connected", "disconnected"]
    assert len(await browser.value("window.rt.sockets")) == 1
    assert await browser.value("window.rt.liveTimers()") == 0
    assert not server.realtime.hub.connections
    health = (await server.http.get("/ws/health")).json()
    assert health["clients"] == 0

    # disconnect() while a connect() is retrying: it rejects, and nothing goes on.
    await browser.create(f"ws://127.0.0.1:{free_port()}/ws", minReconnectDelay=200)
    pending = asyncio.create_task(browser.connect())
    await browser.wait("window.client.getConnectionStatus().state === 'reconnecting'")
    await browser.run("async (client) => client.disconnect()")
    result = await pending
    assert result["error"]["code"] == "disconnected"
    sockets = len(await browser.value("window.rt.sockets"))
    await asyncio.sleep(0.6)
    assert len(await browser.value("window.rt.sockets")) == sockets
    assert await browser.value("window.rt.liveTimers()") == 0
    assert (await browser.status())["state"] == "disconnected"
