"""A real browser (Debian's Chromium, driven by Playwright) authenticates the ways a web page
can: the token as the ``["bearer", token]`` subprotocol pair, and a ``?ticket=`` fetched with
``Authorization: Bearer``.

Only a browser proves the subprotocol form: Chrome fails a handshake whose 101 response
selects none of the offered subprotocols, while Python's ``websockets`` client accepts it.

Chromium is installed with apt-get when /usr/bin/chromium is missing (Playwright's own browser
download is not used). If it cannot be installed the tests skip, unless
``REALTIME_REQUIRE_BROWSER=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import pytest
from sanic import Request, Sanic
from sanic.response import HTTPResponse, html

from .conftest import LiveServer
from .tokens import jwt_realtime, token

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("REALTIME_REQUIRE_BROWSER") == "1"
#: Milliseconds any one browser-side wait may take before the test fails.
WAIT_MS = 5000

# The 120 s limit covers each test's body; installing Chromium (once, in a session fixture) is
# bounded by its own subprocess timeouts instead.
pytestmark = pytest.mark.timeout(120, func_only=True)


def unavailable(reason: str) -> NoReturn:
    if REQUIRE_BROWSER:
        pytest.fail(
            f"{reason} (REALTIME_REQUIRE_BROWSER=1 requires the browser tests)", pytrace=False
        )
    pytest.skip(reason)


def run(command: list[str]) -> str | None:
    """Run an apt-get command; None when it worked, else why not."""
    shown = " ".join(command)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`{shown}` failed: {e}"
    if done.returncode == 0:
        return None
    output = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return f"`{shown}` exited {done.returncode}: {' | '.join(output)}"


def install_chromium() -> str | None:
    """``apt-get install -y chromium``, after ``apt-get update`` if the first try fails.
    None when it worked, else why not."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    install = ["apt-get", "install", "-y", "chromium"]
    # Past pytest's capture: a minute of silence looks like a hang.
    print(
        f"\n[tests] {CHROMIUM} is missing: running `{' '.join(install)}` for the browser "
        "tests (Playwright's own browser download does not work here); this takes a minute...",
        file=sys.__stderr__,
        flush=True,
    )
    first = run(install)
    if first is not None:
        again = run(["apt-get", "update"]) or run(install)
        if again is not None:
            return f"{first}; then {again}"
    if not os.path.exists(CHROMIUM):
        return f"apt-get installed chromium, but {CHROMIUM} is missing"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium to launch; installed with apt-get if missing."""
    if importlib.util.find_spec("playwright") is None:
        unavailable("the playwright package is not installed: pip install -e '.[test]'")
    if not os.path.exists(CHROMIUM):
        problem = install_chromium()
        if problem is not None:
            unavailable(f"Chromium is not installed and could not be: {problem}")
    return CHROMIUM


class Tab:
    """A browser page on the test server's origin, with the WebSocket it opened."""

    def __init__(self, page: Page) -> None:
        self.page = page
        #: What Chrome reported for failed WebSocket connections (e.g. a refused handshake).
        self.socket_errors: list[str] = []
        page.on("websocket", lambda ws: ws.on("socketerror", self._socket_error))

    def _socket_error(self, error: str) -> None:
        self.socket_errors.append(error)

    async def socket_error(self) -> str:
        """Chrome's reason for the first failed WebSocket, once Playwright has reported it."""
        for _ in range(WAIT_MS // 20):
            if self.socket_errors:
                break
            await asyncio.sleep(0.02)
        assert self.socket_errors, "Chrome reported no WebSocket error"
        return self.socket_errors[0]

    async def goto(self, server: LiveServer) -> None:
        response = await self.page.goto(f"http://127.0.0.1:{server.port}/page")
        assert response is not None and response.ok

    async def connect(self, url: str, protocols: list[str]) -> dict[str, Any]:
        """``new WebSocket(url, protocols)``; waits for the first message, the close or
        ``WAIT_MS``. Returns the negotiated ``protocol``, the ``first`` message if one came,
        and the ``events`` seen (open, error, close <code>)."""
        result: dict[str, Any] = await self.page.evaluate(
            """async ([url, protocols, waitMs]) => {
                window.received = [];
                const ws = new WebSocket(url, protocols);
                window.socket = ws;
                const events = [];
                return await new Promise((resolve) => {
                    const done = (outcome) => {
                        clearTimeout(timer);
                        resolve({...outcome, protocol: ws.protocol, events});
                    };
                    const timer = setTimeout(() => done({timeout: true}), waitMs);
                    ws.onopen = () => events.push("open");
                    ws.onerror = () => events.push("error");
                    ws.onclose = (e) => { events.push("close " + e.code); done({}); };
                    ws.onmessage = (e) => {
                        const message = JSON.parse(e.data);
                        window.received.push(message);
                        if (window.received.length === 1) done({first: message});
                    };
                });
            }""",
            [url, protocols, WAIT_MS],
        )
        return result

    async def message(self, type: str) -> dict[str, Any]:
        """The first message of ``type`` the page's WebSocket received (waits for it)."""
        handle = await self.page.wait_for_function(
            "(type) => window.received.find((m) => m.type === type)", arg=type, timeout=WAIT_MS
        )
        message: dict[str, Any] = await handle.json_value()
        return message


@contextlib.asynccontextmanager
async def headless_page(chromium: str) -> AsyncIterator[Page]:
    """A page of a headless Chromium launched from ``chromium``, closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


@pytest.fixture
async def tab(chromium: str, serve: Any) -> AsyncIterator[Tab]:
    """A headless Chromium page; closed before the servers of ``serve`` stop."""
    async with headless_page(chromium) as page:
        yield Tab(page)


def with_page(app: Sanic) -> None:
    """Serve an empty page, so the browser's origin is the test server's."""

    async def page(request: Request) -> HTTPResponse:
        return html("<!doctype html><title>sanic-realtime browser test</title>")

    app.add_route(page, "/page")


async def receives_published_event(server: LiveServer, tab: Tab) -> None:
    result = await server.realtime.publish("logs", "log_update", {"level": "error"})
    assert result.recipients == 1
    event = await tab.message("log_update")
    assert (event["channel"], event["data"]) == ("logs", {"level": "error"})


async def test_browser_connects_with_the_bearer_subprotocol(serve: Any, tab: Tab) -> None:
    """``new WebSocket(url, ["bearer", token])``: the server selects "bearer" (Chrome would
    fail the connection otherwise), never echoes the token, and the user is the token's."""
    server = await serve(jwt_realtime(), with_page)
    await tab.goto(server)
    tok = token("alice", ["ops", "admin"])
    result = await tab.connect(server.ws_url("/ws/logs"), ["bearer", tok])
    assert result["protocol"] == "bearer", (result, tab.socket_errors)
    first = result["first"]
    assert first["type"] == "connection_established", first
    data = first["data"]
    assert (data["user_id"], data["role"], data["roles"]) == ("alice", "ops", ["ops", "admin"])
    await receives_published_event(server, tab)


async def test_browser_connects_with_a_ticket(serve: Any, tab: Tab) -> None:
    """The page fetches ``POST /ws/ticket`` with ``Authorization: Bearer`` and connects with
    ``?ticket=``; no subprotocol is involved."""
    server = await serve(jwt_realtime(), with_page)
    await tab.goto(server)
    tok = token("bob", "user")
    response = await tab.page.evaluate(
        """async (token) => {
            const r = await fetch("/ws/ticket", {
                method: "POST", headers: {Authorization: "Bearer " + token},
            });
            return {status: r.status, cache: r.headers.get("cache-control"), body: await r.json()};
        }""",
        tok,
    )
    assert (response["status"], response["cache"]) == (200, "no-store"), response
    ticket = response["body"]["ticket"]
    assert tok not in ticket
    result = await tab.connect(server.ws_url(f"/ws/logs?ticket={quote(ticket)}"), [])
    assert result["protocol"] == "", (result, tab.socket_errors)
    first = result["first"]
    assert first["type"] == "connection_established", first
    assert (first["data"]["user_id"], first["data"]["role"]) == ("bob", "user")
    await receives_published_event(server, tab)


async def test_browser_with_a_bad_bearer_token_is_refused(serve: Any, tab: Tab) -> None:
    """``["bearer", "not-a-jwt"]``: the server answers 401 before the upgrade, so the
    connection fails without opening."""
    server = await serve(jwt_realtime(), with_page)
    await tab.goto(server)
    result = await tab.connect(server.ws_url("/ws/logs"), ["bearer", "not-a-jwt"])
    assert "first" not in result and "timeout" not in result, result
    assert result["events"] == ["error", "close 1006"], result
    # Chrome's reason for the failure names the 401 ("HTTP Authentication failed; ...").
    error = await tab.socket_error()
    assert "Authentication" in error or "401" in error, error
    assert not server.realtime.hub.connections
