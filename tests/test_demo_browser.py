"""The demo's ops console (example_app/static) in a real Chromium, against the real demo app
(``example_app.app.create_app``) served in-process with its simulations running faster
(``speed``). Nothing is mocked: the page's one ``RealtimeClient`` talks to the app's
``/ws``, and the tests read what it shows and what it recorded in ``window.demo``.

``window.demo`` (example_app/static/app.js): ``received[channel]`` lists the event ids in
the order they arrived, ``events[channel]`` the same events with their data and a ``seq``
(1, 2, ... per channel), and ``marks[channel]`` the filter in force with the ``seq`` after
which events were delivered under it (set when the re-subscription is confirmed).

Chromium comes from tests/test_browser.py's ``chromium`` fixture (Debian's package). The
layout test measures, at 1280 and 1440 px, that no text is cut off and no toast covers a
figure. The screenshot test takes the README's picture; it writes docs/demo-console.png
only with ``REALTIME_UPDATE_SCREENSHOT=1`` (so that a test run leaves the tree as it was):

    REALTIME_UPDATE_SCREENSHOT=1 .venv/bin/pytest tests/test_demo_browser.py -k screenshot
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sanic import Sanic

from example_app.app import create_app

from .conftest import LiveServer
from .test_browser import WAIT_MS, chromium, headless_page

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["chromium"]  # the fixture, imported so that pytest finds it here

pytestmark = pytest.mark.timeout(120, func_only=True)

#: Divides every publishing period of the demo: logs ~10/s, stats every 0.2 s.
SPEED = 5.0
#: Milliseconds for waits on events the simulation makes at random (e.g. failed requests).
LONG_MS = 20000
LEVELS = ["debug", "info", "warn", "error", "critical"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "demo-console.png"


class Console:
    """The dashboard in a Chromium page, and the server behind it."""

    def __init__(self, page: Page, server: LiveServer) -> None:
        self.page = page
        self.server = server
        #: Uncaught exceptions of the page's scripts: there must be none.
        self.page_errors: list[str] = []
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    @property
    def http(self) -> Any:
        assert self.server.http is not None
        return self.server.http

    async def open(self) -> None:
        response = await self.page.goto(f"http://127.0.0.1:{self.server.port}/")
        assert response is not None and response.ok
        # demo.ready: the config is loaded and the first connect() resolved.
        await self.page.wait_for_function("() => window.demo && window.demo.ready", timeout=WAIT_MS)
        await self.page.evaluate("() => window.demo.ready.then(() => true)")
        await self.wait_connected()

    async def value(self, expression: str, arg: Any = None) -> Any:
        """The value of a JS expression of ``arg`` in the page."""
        return await self.page.evaluate(f"(arg) => {expression}", arg)

    async def wait(self, predicate: str, arg: Any = None, timeout: float = WAIT_MS) -> None:
        """Wait until the JS expression ``predicate`` (of ``arg``) is true in the page."""
        await self.page.wait_for_function(f"(arg) => {predicate}", arg=arg, timeout=timeout)

    async def text(self, testid: str) -> str:
        return await self.page.locator(f"[data-testid={testid}]").first.inner_text()

    async def wait_text(self, testid: str, pattern: str, timeout: float = WAIT_MS) -> str:
        """Wait until the element's text matches the regular expression ``pattern``."""
        await self.wait(
            "new RegExp(arg[1]).test(document.querySelector(`[data-testid=${arg[0]}]`)"
            "?.textContent ?? '')",
            [testid, pattern],
            timeout,
        )
        return await self.text(testid)

    async def wait_connected(self, user: str | None = None) -> dict[str, Any]:
        """Wait for the page's client to be connected (as ``user``'s page, if given)."""
        await self.wait(
            "window.demo.status()?.state === 'connected'"
            " && (arg === null || window.demo.user?.username === arg)",
            user,
        )
        status: dict[str, Any] = await self.value("window.demo.status()")
        return status

    async def events(self, channel: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = await self.value("window.demo.events[arg] ?? []", channel)
        return events

    async def received(self, channel: str) -> list[str]:
        ids: list[str] = await self.value("window.demo.received[arg] ?? []", channel)
        return ids

    async def wait_events(
        self, channel: str, count: int, *, after_mark: bool = False, timeout: float = WAIT_MS
    ) -> list[dict[str, Any]]:
        """The channel's events once there are ``count`` (after its filter's mark, if
        ``after_mark``)."""
        since = "(arg[2] ? window.demo.marks[arg[0]].seq : 0)"
        await self.wait(
            f"(window.demo.events[arg[0]] ?? []).filter((e) => e.seq > {since}).length >= arg[1]",
            [channel, count, after_mark],
            timeout,
        )
        events = await self.events(channel)
        if after_mark:
            mark = await self.value("window.demo.marks[arg].seq", channel)
            events = [e for e in events if e["seq"] > mark]
        return events

    async def wait_mark(self, channel: str, expected: dict[str, Any]) -> None:
        """Wait until the page's re-subscription of ``channel`` with ``expected`` (its filter)
        is confirmed by the server."""
        await self.wait(
            "JSON.stringify(Object.entries(window.demo.marks[arg[0]]?.filter ?? {}).sort())"
            " === JSON.stringify(Object.entries(arg[1]).sort())",
            [channel, expected],
        )

    async def shown(self, testid: str, channel: str) -> tuple[list[str], list[str]]:
        """The ids of the ``testid`` items shown (top first) and of the channel's events
        received, read at the same moment."""
        shown, ids = await self.value(
            "[[...document.querySelectorAll(`[data-testid=${arg[0]}]`)].map((r) => r.dataset.id),"
            " window.demo.received[arg[1]] ?? []]",
            [testid, channel],
        )
        return shown, ids

    async def wait_received(self, channel: str, event_id: str, timeout: float = WAIT_MS) -> None:
        await self.wait(
            "(window.demo.received[arg[0]] ?? []).includes(arg[1])", [channel, event_id], timeout
        )

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Sign in with the header's form; returns the new client's status."""
        await self.page.fill("[data-testid=login-username]", username)
        await self.page.fill("[data-testid=login-password]", password)
        await self.page.click("[data-testid=login-button]")
        status = await self.wait_connected(username)
        assert status["userId"] is not None, status
        return status

    async def toast(self, pattern: str, timeout: float = WAIT_MS) -> str:
        """The text of the first toast matching ``pattern`` (waits for it)."""
        toast = self.page.locator("[data-testid=toast]").filter(has_text=re.compile(pattern))
        await toast.first.wait_for(timeout=timeout)
        return await toast.first.inner_text()

    async def errors(self) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = await self.value("window.demo.errors")
        return errors


@contextlib.asynccontextmanager
async def ops_console(chromium: str, *, speed: float = SPEED) -> AsyncIterator[Console]:
    """The demo app on a free port and the dashboard open in Chromium (1400x900)."""
    app = create_app("demo_browser", speed=speed)
    server = await LiveServer(app, app.ctx.realtime).start()
    try:
        async with headless_page(chromium) as page:
            await page.set_viewport_size({"width": 1400, "height": 900})
            console = Console(page, server)
            await console.open()
            yield console
            assert not console.page_errors, console.page_errors
    finally:
        await server.stop()
        Sanic._app_registry.clear()


@pytest.fixture
async def ops(chromium: str) -> AsyncIterator[Console]:
    async with ops_console(chromium) as console:
        yield console


async def admin_token(console: Console) -> str:
    response = await console.http.post(
        "/api/login", json={"username": "admin", "password": "admin"}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def register(console: Console, prefix: str) -> dict[str, Any]:
    """Register a new user over HTTP; returns its ``{"token", "user"}``."""
    username = f"{prefix}_{uuid.uuid4().hex[:6]}"
    response = await console.http.post(
        "/api/register", json={"username": username, "password": "secret"}
    )
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def post_log(console: Console, level: str, component: str) -> str:
    """Publish a log through the app's ingest route; returns its event id."""
    response = await console.http.post(
        "/logs",
        json={
            "level": level,
            "component": component,
            "source": f"{component}-service",
            "message": f"{component}: test {level} {uuid.uuid4().hex[:6]}",
        },
    )
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


# ---------------------------------------------------------------------- panels update live


async def test_log_panels_update_live(ops: Console) -> None:
    """Log rows, stats counters that grow, chart points, and an anomaly card (made by the
    app's detector from error logs posted to /logs) with its toast."""
    await ops.wait("document.querySelectorAll('[data-testid=log-row]').length >= 5")
    rows = ops.page.locator("[data-testid=log-row]")
    # Newest on top: the first row is the last event received.
    shown, ids = await ops.shown("log-row", "logs")
    assert shown[0] == ids[-1] and shown[1] == ids[-2], (shown, ids)
    assert (await rows.first.locator(".level").inner_text()).lower() in LEVELS

    total = int((await ops.wait_text("stat-total", r"^[\d,]+$")).replace(",", ""))
    await ops.wait(
        "Number(document.querySelector('[data-testid=stat-total]').textContent"
        ".replaceAll(',', '')) > arg",
        total,
    )
    assert re.fullmatch(r"\d+\.\d\d %", await ops.text("stat-rate"))
    assert re.fullmatch(r"\d+", await ops.text("stat-services"))

    await ops.wait("window.demo.chart.points >= 5")
    assert await ops.page.locator("[data-testid=chart] canvas").count() == 1
    chart = await ops.value("window.demo.chart.data")
    assert all(isinstance(v, (int, float)) for v in chart[1]), chart  # logs/s

    # Six error logs of one component: the detector reports an anomaly (score 1.0).
    for _ in range(6):
        await post_log(ops, "error", "billing")
    card = ops.page.locator("[data-testid=anomaly-card]").filter(has_text="billing")
    await card.first.wait_for(timeout=WAIT_MS)
    text = await card.first.inner_text()
    assert "critical" in text and "6 of the last 6 billing logs are errors" in text, text
    assert "score 1.00" in text and "root causes" in text and "recommendations" in text
    width = await card.first.locator(".score > span").evaluate("(e) => e.style.width")
    assert width == "100%"
    # Its system_alert is critical: a toast.
    assert "billing: anomaly score 1.0" in await ops.toast("billing: anomaly score")
    assert not await ops.errors()


async def test_gateway_panels_update_live(ops: Console) -> None:
    """The provider table fills from initial_state and updates, requests stream in, and
    the gateway stats of the 1m window refresh."""
    config = (await ops.http.get("/api/config")).json()
    providers = len(config["providers"])
    await ops.wait(
        "document.querySelectorAll('[data-testid=provider-row]').length === arg", providers
    )
    statuses = await ops.page.locator("[data-testid=provider-status]").all_inner_texts()
    assert len(statuses) == providers and set(statuses) <= {"healthy", "degraded", "down"}
    updates = len(await ops.received("providers"))
    await ops.wait_events("providers", updates + providers)  # provider_status every 0.4 s

    await ops.wait("document.querySelectorAll('[data-testid=request-item]').length >= 5")
    shown, ids = await ops.shown("request-item", "requests")
    assert shown[:5] == ids[::-1][:5], (shown, ids)
    item = await ops.page.locator("[data-testid=request-item]").first.inner_text()
    assert re.search(r"\d{3} [✓✗]", item) and " ms" in item, item

    assert await ops.wait_text("gw-shown-window", "^1m$") == "1m"
    assert re.fullmatch(r"[\d,]+", await ops.wait_text("gw-total", r"^[\d,]+$"))
    assert re.fullmatch(r"\d+\.\d %", await ops.wait_text("gw-success", r"%$"))
    assert re.fullmatch(r"\d+\.\d", await ops.text("gw-rpm"))
    updated = await ops.wait_text("gw-updated", r"calculated")
    await ops.wait(
        "document.querySelector('[data-testid=gw-updated]').textContent !== arg", updated
    )
    events = await ops.events("stats")
    assert events and {e["data"]["window"] for e in events} == {"1m"}


async def test_monitoring_panels_update_live(ops: Console) -> None:
    """System figures (psutil, real numbers), a started task advancing to completion, and
    alerts: a critical one pops a toast, a low one only joins the list."""
    cpu = await ops.wait_text("sys-cpu", r"^\d+(\.\d)? %$")
    assert 0 <= float(cpu.split()[0]) <= 100
    assert await ops.text("sys-host") == socket.gethostname()
    assert re.match(r"\d+\.\d %", await ops.wait_text("sys-mem", "%"))
    assert re.fullmatch(r"\d+\.\d %", await ops.wait_text("sys-disk", "%"))
    assert await ops.wait_text("sys-status", "^(healthy|degraded|critical)$")
    await ops.wait_events("system", 2)  # system_status and metrics_update every second

    # A task may fail on purpose (the simulation dooms about 15 % of them): start another.
    for attempt in range(4):
        await ops.page.click("[data-testid=start-task]")
        await ops.wait("window.demo.startedTasks.length === arg", attempt + 1)
        task_id = await ops.value("window.demo.startedTasks[arg]", attempt)
        task = ops.page.locator(f"[data-testid=task][data-id='{task_id}']")
        await ops.wait(
            "['completed', 'failed'].includes(document.querySelector("
            "`[data-testid=task][data-id='${arg}']`)?.dataset.status)",
            task_id,
            LONG_MS,
        )
        progress = [
            e["data"]["progress"] for e in await ops.events("tasks") if e["data"]["id"] == task_id
        ]
        assert progress == sorted(progress) and len(set(progress)) >= 3, progress
        if await task.get_attribute("data-status") == "completed":
            break
    else:
        raise AssertionError("four bulk tasks failed in a row")
    assert progress[-1] == 100
    assert await task.locator("[data-testid=task-progress]").inner_text() == "100 %"
    width = await task.locator(".progress > span").evaluate("(e) => e.style.width")
    assert width == "100%"

    realtime = ops.server.realtime
    low = f"low alert {uuid.uuid4().hex[:6]}"
    critical = f"critical alert {uuid.uuid4().hex[:6]}"
    for severity, message in (("low", low), ("critical", critical)):
        await realtime.publish(
            "alerts",
            "alert",
            {
                "id": f"alert-test-{severity}",
                "rule": "test",
                "rule_name": "Test rule",
                "status": "firing",
                "severity": severity,
                "value": 99,
                "threshold": 90,
                "message": message,
            },
        )
    assert critical in await ops.toast(critical)
    alerts = await ops.page.locator("[data-testid=alert-item]").all_inner_texts()
    assert any(low in a for a in alerts) and any(critical in a for a in alerts), alerts
    toasts = await ops.page.locator("[data-testid=toast]").all_inner_texts()
    assert not any(low in t for t in toasts), toasts


# ---------------------------------------------------------------------- filters


async def test_log_filters_change_what_arrives(ops: Console) -> None:
    """level=error, then also component=db: the page re-subscribes, and from then on only
    matching logs arrive (a non-matching log published just before a matching one is never
    delivered)."""
    before = await ops.wait_events("logs", 5)
    assert {e["data"]["level"] for e in before} - {"error", "critical"}, "all logs were errors"

    await ops.page.select_option("[data-testid=log-level]", "error")
    await ops.wait_mark("logs", {"level": "error"})
    info = await post_log(ops, "info", "billing")
    error = await post_log(ops, "error", "billing")
    await ops.wait_received("logs", error)
    assert info not in await ops.received("logs")
    after = await ops.wait_events("logs", 1, after_mark=True)
    assert {e["data"]["level"] for e in after} <= {"error", "critical"}, after
    assert await ops.page.locator(f"[data-testid=log-row][data-id='{error}']").count() == 1

    await ops.page.check("[data-testid=log-component-db]")
    await ops.wait_mark("logs", {"level": "error", "component": "db"})
    cache = await post_log(ops, "critical", "cache")
    db_info = await post_log(ops, "info", "db")
    db = await post_log(ops, "critical", "db")
    await ops.wait_received("logs", db)
    received = await ops.received("logs")
    assert cache not in received and db_info not in received
    after = await ops.wait_events("logs", 1, after_mark=True)
    assert {
        (e["data"]["component"], e["data"]["level"] in ("error", "critical")) for e in after
    } == {("db", True)}, after
    # The table shows what arrived, newest first, the filtered logs above the filter's line.
    shown, ids = await ops.shown("log-row", "logs")
    assert shown == ids[::-1][: len(shown)]
    assert db in shown and cache not in shown and info not in shown


async def test_request_filters_change_what_arrives(ops: Console) -> None:
    """only_errors, then a provider and a model: each re-subscription narrows the feed."""
    config = (await ops.http.get("/api/config")).json()
    await ops.wait_events("requests", 5)

    await ops.page.check("[data-testid=req-only-errors]")
    await ops.wait_mark("requests", {"only_errors": True})
    errors = await ops.wait_events("requests", 3, after_mark=True, timeout=LONG_MS)
    assert all(e["data"]["success"] is False for e in errors), errors

    provider = config["providers"][0]["id"]
    model = config["models"][provider][0]
    await ops.page.uncheck("[data-testid=req-only-errors]")
    await ops.page.select_option("[data-testid=req-provider]", provider)
    await ops.wait_mark("requests", {"provider_id": provider})
    mine = await ops.wait_events("requests", 3, after_mark=True, timeout=LONG_MS)
    assert {e["data"]["provider_id"] for e in mine} == {provider}, mine

    await ops.page.select_option("[data-testid=req-model]", model)
    await ops.wait_mark("requests", {"provider_id": provider, "model_id": model})
    mine = await ops.wait_events("requests", 2, after_mark=True, timeout=LONG_MS)
    assert {(e["data"]["provider_id"], e["data"]["model_id"]) for e in mine} == {(provider, model)}


async def test_stats_window_and_interval(ops: Console) -> None:
    """window=5m: only 5m statistics arrive; interval=5s: at most one every 5 s (instead of
    one a second)."""
    await ops.page.select_option("[data-testid=gw-window]", "5m")
    await ops.wait_mark("stats", {"window": "5m", "interval": "1s"})
    fast = await ops.wait_events("stats", 3, after_mark=True)
    assert {e["data"]["window"] for e in fast} == {"5m"}, fast
    assert fast[2]["at"] - fast[0]["at"] < 4500, fast  # about one a second before
    assert await ops.wait_text("gw-shown-window", "^5m$") == "5m"

    await ops.page.select_option("[data-testid=gw-interval]", "5s")
    await ops.wait_mark("stats", {"window": "5m", "interval": "5s"})
    slow = await ops.wait_events("stats", 3, after_mark=True, timeout=LONG_MS)
    assert {e["data"]["window"] for e in slow} == {"5m"}, slow
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(slow)]
    assert all(gap >= 4500 for gap in gaps), gaps


# ---------------------------------------------------------------------- identity


async def test_login_changes_what_a_user_sees(ops: Console) -> None:
    """Anonymous: no users panel, and subscribing to users is refused. Alice signed in:
    the panel, her targeted events (her profile change, her new role), and not the events
    of other users nor the admins' ones. Logging out makes the page anonymous again."""
    assert await ops.page.locator("[data-testid=panel-users]").is_hidden()
    refused = await ops.value(
        """(async () => {
            try { await window.demo.client.subscribe("users"); return null; }
            catch (e) { return { code: e.code, message: e.message }; }
        })()"""
    )
    assert refused is not None and refused["code"] == "forbidden", refused
    assert (await ops.wait_connected())["userId"] is None
    # A wrong password: the server's error shows, and the page stays anonymous.
    await ops.page.fill("[data-testid=login-username]", "alice")
    await ops.page.fill("[data-testid=login-password]", "wrong")
    await ops.page.click("[data-testid=login-button]")
    error = await ops.wait_text("error-text", "bad_credentials")
    assert error.startswith("login: bad_credentials: POST /api/login → 401"), error
    assert await ops.page.locator("[data-testid=error-line]").is_visible()
    assert await ops.value("window.demo.user") is None

    status = await ops.login("alice", "alice")
    assert await ops.page.locator("[data-testid=panel-users]").is_visible()
    assert await ops.page.locator("[data-testid=admin-tools]").is_hidden()
    assert await ops.text("whoami-name") == "alice"
    assert await ops.text("whoami-role") == "user"
    me = await ops.value("window.demo.user")
    assert str(status["userId"]) == str(me["id"])

    # Her own profile form: PATCH /api/me publishes profile.updated and user.updated to her.
    await ops.page.fill("[data-testid=profile-name]", "Alice Liddell")
    await ops.page.click("[data-testid=profile-save]")
    await ops.wait(
        "(window.demo.events.users ?? []).filter((e) => e.type.endsWith('updated')).length >= 2"
    )

    # Other users' events: a registration (for admins) and another user's profile change.
    admin = {"Authorization": f"Bearer {await admin_token(ops)}"}
    other = await register(ops, "bob")
    response = await ops.http.patch(
        "/api/me", json={"name": "Bob"}, headers={"Authorization": f"Bearer {other['token']}"}
    )
    assert response.status_code == 200, response.text
    # Then an admin action on Alice: it is delivered to her page.
    response = await ops.http.patch(
        f"/api/users/{me['id']}/role", json={"role": "admin"}, headers=admin
    )
    assert response.status_code == 200, response.text
    await ops.wait("(window.demo.events.users ?? []).some((e) => e.type === 'user.role.changed')")
    events = await ops.events("users")
    assert [e["type"] for e in events] == ["profile.updated", "user.updated", "user.role.changed"]
    assert {e["data"]["user_id"] for e in events} == {me["id"]}
    assert events[2]["data"]["new_role"] == "admin"
    shown = await ops.page.locator("[data-testid=user-event]").all_inner_texts()
    assert len(shown) == 3 and "user.role.changed" in shown[0], shown
    assert "your role changed" in await ops.toast("your role changed")

    await ops.page.click("[data-testid=logout-button]")
    status = await ops.wait_connected()
    await ops.wait("window.demo.user === null && window.demo.status().userId === null")
    assert await ops.page.locator("[data-testid=panel-users]").is_hidden()
    assert await ops.page.locator("[data-testid=login-form]").is_visible()
    assert [e["code"] for e in await ops.errors()] == ["bad_credentials"]

    # A deleted account: the server closes its connections (1008); the page says so and
    # carries on anonymously.
    erin = await register(ops, "erin")
    await ops.login(erin["user"]["username"], "secret")
    response = await ops.http.delete(f"/api/users/{erin['user']['id']}", headers=admin)
    assert response.status_code == 204, response.text
    await ops.wait("window.demo.user === null", timeout=LONG_MS)
    status = await ops.wait_connected()
    assert status["userId"] is None
    codes = [e["code"] for e in await ops.errors()]
    assert codes == ["bad_credentials", "closed_1008", "signed_out"], codes
    assert "signed out" in await ops.text("error-text")


async def test_admin_sees_registrations_and_broadcasts(ops: Console) -> None:
    """Signed in as admin: the user list, user.created when someone registers, the admin
    stats, and the broadcast form, whose announcement pops as a toast."""
    await ops.login("admin", "admin")
    assert await ops.page.locator("[data-testid=admin-tools]").is_visible()
    await ops.wait("document.querySelectorAll('[data-testid=user-row]').length >= 2")
    usernames = await ops.page.locator("[data-testid=user-row]").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.username)"
    )
    assert {"admin", "alice"} <= set(usernames)

    carol = (await register(ops, "carol"))["user"]
    await ops.wait("(window.demo.events.users ?? []).some((e) => e.type === 'user.created')", None)
    created = [e for e in await ops.events("users") if e["type"] == "user.created"]
    assert [e["data"]["username"] for e in created] == [carol["username"]]
    # The list is reloaded on user.* events.
    await ops.wait(
        "[...document.querySelectorAll('[data-testid=user-row]')]"
        ".some((r) => r.dataset.username === arg)",
        carol["username"],
    )

    # GET /admin/ws/stats every 5 s: at least this page's connection.
    assert int(await ops.wait_text("as-clients", r"^[1-9]\d*$", LONG_MS)) >= 1
    assert "logs" in await ops.text("as-channels")

    message = f"deploy at 5pm {uuid.uuid4().hex[:6]}"
    await ops.page.fill("[data-testid=bc-message]", message)
    await ops.page.select_option("[data-testid=bc-severity]", "critical")
    await ops.page.click("[data-testid=bc-send]")
    result = await ops.wait_text("bc-result", "^sent ")
    assert re.fullmatch(r"sent \S+ to [1-9]\d* connection\(s\)", result), result
    toast = await ops.toast(message)
    assert "announcement" in toast and "critical" in toast, toast
    event = [e for e in await ops.events("announcements") if e["data"]["message"] == message]
    assert event and result.split()[1] == event[0]["id"]

    # A broadcast the server refuses shows its error instead.
    await ops.page.evaluate(
        "() => { const s = document.querySelector('[data-testid=bc-channel]');"
        " s.append(new Option('nope', 'nope')); s.value = 'nope'; }"
    )
    await ops.page.click("[data-testid=bc-send]")
    error = await ops.wait_text("error-text", "nope")
    assert error.startswith("broadcast: unknown_channel:"), error


# ---------------------------------------------------------------------- templates


async def test_inbox_and_task_detail_channels(ops: Console) -> None:
    """The templates: alice's page subscribes to her inbox, users.<her id>, and shows its
    notifications (the sign-in's, then a live one); her client asking for bob's inbox is
    refused in-band with forbidden, while an admin's client (a new RealtimeClient from
    /ws/client.js in the same page) may open it. Clicking a task subscribes to its own
    channel, tasks.<id>, whose updates (that task's only) fill the detail area."""
    await ops.login("alice", "alice")
    alice = await ops.value("window.demo.user")
    inbox = f"users.{alice['id']}"
    assert await ops.value("window.demo.inbox") == inbox
    assert await ops.text("inbox-channel") == inbox
    # Signing in published "Welcome back" before the page's client connected: the inbox's
    # initial_state brings it.
    await ops.wait_text("inbox", "Welcome back, Alice")
    token = await ops.value("sessionStorage.getItem('demo.token')")
    response = await ops.http.post(
        "/api/me/password",
        json={"old_password": "alice", "new_password": "alice"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 204, response.text
    await ops.wait_text("inbox", "your password was changed")
    notes = await ops.events(inbox)
    assert [e["type"] for e in notes] == ["notification"], notes
    assert notes[0]["data"]["title"] == "Password changed"

    # Bob's inbox: not for alice (in-band forbidden, her client stays connected) ...
    response = await ops.http.post("/api/login", json={"username": "bob", "password": "bob"})
    assert response.status_code == 200, response.text
    bob_inbox = f"users.{response.json()['user']['id']}"
    refused = await ops.value(
        """(async () => {
            try { await window.demo.client.subscribe(arg); return null; }
            catch (e) { return { code: e.code, message: e.message }; }
        })()""",
        bob_inbox,
    )
    assert refused is not None and refused["code"] == "forbidden", refused
    assert bob_inbox in refused["message"], refused
    assert (await ops.wait_connected("alice"))["userId"] == str(alice["id"])
    assert bob_inbox not in await ops.value("Object.keys(window.demo.received)")
    # ... but an admin may open it: a second client in the page, with an admin's token.
    opened = await ops.value(
        """(async () => {
            const { RealtimeClient } = await import("/ws/client.js");
            const client = new RealtimeClient("/ws", { token: arg.token, reconnect: false });
            const first = new Promise((resolve) => client.on("initial_state", resolve));
            await client.connect();
            const reply = await client.subscribe(arg.channel);
            const state = await first;
            client.disconnect();
            return { channels: reply.channels, channel: state.channel, data: state.data };
        })()""",
        {"token": await admin_token(ops), "channel": bob_inbox},
    )
    assert opened["channels"] == [bob_inbox] and opened["channel"] == bob_inbox, opened
    assert [n["message"] for n in opened["data"]["notifications"]] == ["Welcome back, Bob"]

    # A task's detail: its own channel, tasks.<id>.
    response = await ops.http.post("/api/tasks", json={"name": "detail test", "total": 300})
    assert response.status_code == 201, response.text
    task_id = response.json()["task"]["id"]
    await ops.page.click(f"[data-testid=task][data-id='{task_id}']")
    assert await ops.text("task-detail-channel") == f"tasks.{task_id}"
    await ops.wait(
        "document.querySelectorAll('[data-testid=task-detail-event][data-type=task_update]')"
        ".length >= 3"
    )
    updates = await ops.events(f"tasks.{task_id}")
    assert {e["data"]["id"] for e in updates} == {task_id}, updates
    progress = [e["data"]["progress"] for e in updates]
    assert progress == sorted(progress) and len(set(progress)) >= 2, progress
    shown = await ops.page.locator("[data-testid=task-detail-event]").all_inner_texts()
    assert any(re.search(rf"\b{progress[-1]} %", line) for line in shown), shown
    assert not await ops.errors()


# ---------------------------------------------------------------------- chat

#: rooms.{room}'s presence.leave_delay (realtime.yaml) and how long a typing notice shows
#: (TYPING_SHOWN, static/chat.js), in milliseconds.
LEAVE_DELAY_MS = 3000
TYPING_SHOWN_MS = 3000
#: The usernames of the chat panel's "who's here" list, in the page.
WHO = "[...document.querySelectorAll('[data-testid=chat-member]')].map((li) => li.dataset.username)"
#: Records every change of the "who's here" list (window.whoSeen: the usernames after each).
WATCH_WHO = """() => {
  const list = document.querySelector("[data-testid=chat-who]");
  const names = () => [...list.querySelectorAll("[data-testid=chat-member]")]
    .map((li) => li.dataset.username);
  window.whoSeen = [names()];
  new MutationObserver(() => window.whoSeen.push(names()))
    .observe(list, { childList: true, subtree: true, attributes: true });
}"""


@contextlib.asynccontextmanager
async def another_console(ops: Console) -> AsyncIterator[Console]:
    """A second page on the same server, in a browser context of its own (its own
    sessionStorage: its own sign-in)."""
    browser = ops.page.context.browser
    assert browser is not None
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        console = Console(await context.new_page(), ops.server)
        await console.open()
        yield console
        assert not console.page_errors, console.page_errors
    finally:
        await context.close()


async def line_of(console: Console, text: str, timeout: float = WAIT_MS) -> dict[str, Any]:
    """The chat line showing ``text`` (waits for it): its id, sender, classes and text."""
    line = console.page.locator("[data-testid=chat-line]").filter(has_text=text)
    await line.first.wait_for(timeout=timeout)
    found: dict[str, Any] = await line.first.evaluate(
        "(li) => ({id: li.dataset.id, username: li.dataset.username, mine:"
        " li.classList.contains('mine'), earlier: li.classList.contains('earlier'),"
        " from: li.querySelector('.from').textContent, text: li.innerText})"
    )
    return found


async def test_chat_room_who_is_here_typing_and_lines(ops: Console) -> None:
    """Alice and Bob, each in a page of their own, in the room rooms.ops: each sees the
    other in "who's here" (a presence query, then presence_join); Bob types and Alice sees
    "bob is typing…", which goes away TYPING_SHOWN after his last typing message, or at
    once when his line comes; each sees the other's line with the sender's name (stamped
    by the server's handler). A line sent while Alice's connection is dropped reaches her
    when it resumes (chat lines are kept in history). Bob reloading his page never takes
    him out of Alice's list (leave_delay); closing it does, after leave_delay."""
    async with another_console(ops) as bob:
        assert await bob.page.locator("[data-testid=panel-chat]").is_hidden()
        await ops.login("alice", "alice")
        await bob.login("bob", "bob")
        for console, other in ((ops, "bob"), (bob, "alice")):
            assert await console.page.locator("[data-testid=panel-chat]").is_visible()
            assert await console.text("chat-channel") == "rooms.ops"
            await console.wait(f"{WHO}.includes(arg)", other)
            assert sorted(await console.value(WHO)) == ["alice", "bob"]
            assert await console.text("chat-count") == "2"
        assert "alice (you)" in await ops.text("chat-who")
        assert "bob (you)" in await bob.text("chat-who")

        # Bob types: Alice sees it (his page does not show his own), until it expires.
        await bob.page.locator("[data-testid=chat-text]").press_sequentially("dep", delay=30)
        await ops.wait_text("chat-typing", "^bob is typing…$")
        assert (await bob.text("chat-typing")).strip() == ""
        await ops.wait_text("chat-typing", "^$", timeout=LONG_MS)
        log = await ops.value("window.demo.chat.log")
        typed = [e["at"] for e in log if e["type"] == "typing"]
        ended = [e for e in log if e["type"] == "typing_end"]
        assert ended[-1]["reason"] == "expired", log
        assert ended[-1]["at"] - typed[-1] >= TYPING_SHOWN_MS - 50, log

        # He types on and sends (Enter): the line ends his typing at once on Alice's page.
        await bob.page.locator("[data-testid=chat-text]").press_sequentially("loying v2")
        await ops.wait_text("chat-typing", "^bob is typing…$")
        await bob.page.press("[data-testid=chat-text]", "Enter")
        line = await line_of(ops, "deploying v2")
        assert (line["from"], line["username"], line["mine"]) == ("bob", "bob", False), line
        assert line["id"] and line["id"] in await ops.received("rooms.ops"), line
        assert (await line_of(bob, "deploying v2"))["mine"] is True  # echo: true
        assert await bob.page.input_value("[data-testid=chat-text]") == ""
        await ops.wait_text("chat-typing", "^$")
        assert (await ops.value("window.demo.chat.log"))[-1]["reason"] == "line"

        await ops.page.fill("[data-testid=chat-text]", "  on it  ")
        await ops.page.click("[data-testid=chat-send]")
        line = await line_of(bob, "on it")
        assert (line["from"], line["mine"]) == ("alice", False), line
        # An empty line is not sent; one the handler refuses shows its code.
        refused = await bob.value(
            """window.demo.client.publish("rooms.ops", "chat", {text: " "})
                .then(() => null, (e) => e.code)"""
        )
        assert refused == "empty"
        # Both pages show the same lines, in the same order.
        ids = "[...document.querySelectorAll('[data-testid=chat-line]')].map((li) => li.dataset.id)"
        assert await ops.value(ids) == await bob.value(ids) and len(await ops.value(ids)) == 2

        # Alice's connection drops for 2 s; Bob's line of that moment reaches her on resume.
        await ops.page.click("[data-testid=drop-connection]")
        await ops.wait("window.demo.status().state === 'disconnected'")
        await bob.page.fill("[data-testid=chat-text]", "while you were away")
        await bob.page.press("[data-testid=chat-text]", "Enter")
        away = await line_of(bob, "while you were away")
        await ops.wait_text("drop-outcome", "replayed", timeout=LONG_MS)
        status = await ops.wait_connected("alice")
        assert status["recovered"].get("rooms.ops") is True, status
        assert (await line_of(ops, "while you were away"))["id"] == away["id"]
        assert await ops.value(ids) == await bob.value(ids)
        await ops.wait(f"{WHO}.includes('bob') && {WHO}.includes('alice')")

        # Bob reloads: Alice's list never loses him (he is back within leave_delay).
        await ops.page.evaluate(WATCH_WHO)
        reload_at = await ops.value("Date.now()")
        await bob.page.reload()
        await bob.page.wait_for_function("() => window.demo && window.demo.ready", timeout=WAIT_MS)
        await bob.wait_connected("bob")
        await bob.wait(f"{WHO}.includes('alice') && window.demo.chat.queries >= 1")
        # His page shows the room's recent lines again (the initial state).
        assert (await line_of(bob, "on it"))["earlier"] is True
        # Alice's page is told nothing: no leave, no join (checked once his old connection's
        # leave would have been due, and past).
        await ops.wait("Date.now() >= arg", reload_at + LEAVE_DELAY_MS + 1000, timeout=LONG_MS)
        seen = await ops.value("window.whoSeen")
        assert all("bob" in names for names in seen), seen
        changes = [e for e in await ops.value("window.demo.chat.log") if e["at"] >= reload_at]
        assert not [e for e in changes if e["type"] in ("join", "leave")], changes
        present = await ops.server.realtime.presence("rooms.ops")
        assert sorted(u.connections for u in present.users or []) == [1, 1], present

        # Bob closes his page: he leaves Alice's list, leave_delay later.
        closed_at = await ops.value("Date.now()")
        await bob.page.close()
        await ops.wait(f"!{WHO}.includes('bob')", timeout=LONG_MS)
        left = [e for e in await ops.value("window.demo.chat.log") if e["type"] == "leave"]
        assert len(left) == 1 and left[0]["at"] - closed_at >= LEAVE_DELAY_MS - 100, left
        assert await ops.value(WHO) == ["alice"]
        assert await ops.text("chat-count") == "1"
    assert not await ops.errors()


# ---------------------------------------------------------------------- outage


async def test_drop_connection_loses_nothing(ops: Console) -> None:
    """The "Drop connection" button (disconnect, 2 s, connect): the client resumes with
    since, and the page's logs are exactly those published (recorded by a websockets client
    connected all along), including the ones published during the outage: no gap, no
    duplicate."""
    published: list[tuple[str, str]] = []  # (id, timestamp) of every log, in order
    recording = asyncio.Event()

    async with ops.server.connect("/ws/logs") as ws:

        async def record() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "log_update":
                    published.append((message["id"], message["timestamp"]))
                    recording.set()

        recorder = asyncio.create_task(record())
        try:
            await ops.wait_events("logs", 3)
            await asyncio.wait_for(recording.wait(), WAIT_MS / 1000)
            first = published[0][0]
            await ops.wait_received("logs", first)

            await ops.page.click("[data-testid=drop-connection]")
            await ops.wait("window.demo.status().state === 'disconnected'")
            outcome = await ops.wait_text("drop-outcome", "replayed", timeout=LONG_MS)
            status = await ops.wait_connected()
            assert status["recovered"].get("logs") is True, status
            assert all(status["recovered"].values()), status["recovered"]
            assert "resumed: " in outcome and "logs ✓" in outcome and "✗" not in outcome
            drop = (await ops.value("window.demo.drops"))[0]
            assert drop["error"] is None and drop["replayed"] > 0, drop

            # Everything published up to now reaches the page.
            await asyncio.sleep(0.3)
            last = published[-1][0]
            await ops.wait_received("logs", last)
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder

    page_ids = await ops.received("logs")
    assert len(page_ids) == len(set(page_ids)), "duplicates"
    ids = [i for i, _ in published]
    start, end = page_ids.index(ids[0]), page_ids.index(last)
    assert page_ids[start : end + 1] == ids[: ids.index(last) + 1]

    # Logs were published while the page was away (~10/s for 2 s), and it got them all.
    def ms(timestamp: str) -> float:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000

    during = [i for i, t in published if drop["startedAt"] <= ms(t) < drop["reconnectAt"]]
    assert len(during) >= 5, during
    assert set(during) <= set(page_ids)


# ---------------------------------------------------------------------- layout

#: The page function of ``test_nothing_clipped_or_covered``: ``false`` until the toast of an
#: alert shows, then what it found wrong (each naming the element and the widths), measured
#: in one go so that no toast fades in between. ``arg.scopes``: where no text may be cut
#: off; ``arg.figures``: what no toast may cover.
LAYOUT_PROBLEMS = r"""(arg) => {
  const toasts = [...document.querySelectorAll("[data-testid=toast]")];
  if (!toasts.some((t) => / alert · /.test(t.querySelector(".title")?.textContent ?? ""))) {
    return false;
  }
  const vw = document.documentElement.clientWidth;
  const vh = document.documentElement.clientHeight;
  const problems = [];
  const name = (e) => {
    const id = e.dataset.testid ? `[data-testid=${e.dataset.testid}]` : e.id ? `#${e.id}` : "";
    const text = (e.value || e.placeholder || e.innerText || "").replace(/\s+/g, " ").trim();
    const classes = e.className ? `.${e.className.replaceAll(" ", ".")}` : "";
    return `${e.tagName.toLowerCase()}${id}${classes} '${text.slice(0, 40)}'`;
  };
  const px = (e, property) => parseFloat(getComputedStyle(e)[property]) || 0;
  // A hidden copy of e, out of the layout, with e's font: how wide it is.
  const measure = (copy, e, properties) => {
    const style = getComputedStyle(e);
    for (const p of properties) copy.style[p] = style[p];
    copy.style.position = "absolute";
    copy.style.visibility = "hidden";
    document.body.append(copy);
    const width = copy.getBoundingClientRect().width;
    copy.remove();
    return width;
  };
  const FONT = ["fontFamily", "fontSize", "fontWeight", "fontStyle", "letterSpacing"];
  const textWidth = (e, text) => {
    const span = document.createElement("span");
    span.style.whiteSpace = "pre";
    span.textContent = text;
    return measure(span, e, FONT);
  };
  // A new select with only e's chosen option, at its own width: what showing it needs.
  const selectWidth = (e) => {
    const copy = document.createElement("select");
    copy.append(e.selectedOptions[0]?.cloneNode(true) ?? "");
    return measure(copy, e, [...FONT, "padding", "border", "boxSizing", "appearance"]);
  };
  const clipped = (scope) => {
    for (const e of [scope, ...scope.querySelectorAll("*")]) {
      if (e.getClientRects().length === 0) continue; // not shown
      const has = e.getBoundingClientRect().width;
      if (e instanceof HTMLSelectElement) {
        const needs = selectWidth(e);
        if (needs > has + 0.5) {
          problems.push(
            `${name(e)}: its option needs ${needs.toFixed(1)}px, it is ${has.toFixed(1)}px`
          );
        }
      } else if (e instanceof HTMLInputElement && e.type !== "checkbox") {
        const needs = textWidth(e, e.value || e.placeholder);
        const room = e.clientWidth - px(e, "paddingLeft") - px(e, "paddingRight");
        if (needs > room + 0.5) {
          problems.push(
            `${name(e)}: its text needs ${needs.toFixed(1)}px, it has ${room.toFixed(1)}px`
          );
        }
      } else if (e.clientWidth > 0 && e.scrollWidth > e.clientWidth) {
        problems.push(`${name(e)}: content ${e.scrollWidth}px wide in ${e.clientWidth}px`);
      }
    }
  };
  for (const selector of arg.scopes) clipped(document.querySelector(selector));
  const page = document.documentElement.scrollWidth;
  if (page > vw) problems.push(`the page: ${page}px wide in ${vw}px`);

  const box = (e) => e.getBoundingClientRect();
  const meet = (a, b) =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const span = (r) => `x ${Math.round(r.left)}-${Math.round(r.right)}`
    + ` y ${Math.round(r.top)}-${Math.round(r.bottom)}`;
  const figures = [...document.querySelectorAll(arg.figures)];
  const panels = [...document.querySelectorAll(".panel")].filter((p) => p.clientWidth > 0);
  const positions = [
    ["page at the top", () => window.scrollTo(0, 0), panels],
    ["figures at the bottom", () => figures.at(-1).scrollIntoView({ block: "end" }), figures],
    ["figures in the middle", () => figures[0].scrollIntoView({ block: "center" }), figures],
  ];
  for (const [where, scroll, covered] of positions) {
    scroll();
    for (const t of toasts) {
      const r = box(t);
      const toast = `${where}: ${name(t)} at ${span(r)}`;
      if (r.left < 0 || r.right > vw || r.top < 0 || r.bottom > vh) {
        problems.push(`${toast}: not all in the ${vw}x${vh} viewport`);
      }
      for (const c of covered) {
        if (meet(r, box(c))) problems.push(`${toast} covers ${name(c)} at ${span(box(c))}`);
      }
    }
  }
  window.scrollTo(0, 0);
  return { problems, toasts: toasts.map((t) => t.innerText.replace(/\s+/g, " ")), width: vw };
}"""


@pytest.mark.parametrize("width", [1280, 1440])
async def test_nothing_clipped_or_covered(ops: Console, width: int) -> None:
    """At 1280 and 1440 px wide, with live data and an alert's toast showing: no text of the
    gateway stats, the broadcast form, the toasts or the chat panel (a line with a long
    word among its lines) is cut off (every element's content fits its box; a field's
    value or placeholder, a select's chosen option fit the field), the toasts are in the
    viewport, and they cover no panel (page at the top) and none of the gateway stats
    figures (scrolled to the bottom, and to the middle, of the viewport)."""
    await ops.page.set_viewport_size({"width": width, "height": 900})
    await ops.login("admin", "admin")
    providers = len((await ops.http.get("/api/config")).json()["providers"])
    await ops.wait(
        "document.querySelectorAll('[data-testid=gw-providers] tr').length === arg", providers
    )
    await ops.wait_text("gw-total", r"^[\d,]+$")
    await ops.wait_text("gw-updated", "calculated")
    await ops.wait("document.querySelector('[data-testid=bc-severity]').value === 'high'")
    # An announcement through the form, then six error logs of one component: the
    # detector's anomaly is a critical system alert, with a toast.
    await ops.page.fill("[data-testid=bc-message]", "Maintenance window tonight at 22:00 UTC")
    await ops.page.click("[data-testid=bc-send]")
    await ops.wait_text("bc-result", "^sent ")
    # A chat line with a long word: it wraps in the chat panel instead of overflowing.
    await ops.wait("document.querySelectorAll('[data-testid=chat-member]').length === 1")
    await ops.page.fill("[data-testid=chat-text]", f"see https://ops.example.com/{'x' * 180}")
    await ops.page.press("[data-testid=chat-text]", "Enter")
    await line_of(ops, "ops.example.com")
    for _ in range(6):
        await post_log(ops, "error", "billing")
    scopes = ["[data-testid=panel-gateway]", "[data-testid=broadcast-form]"]
    scopes += ["[data-testid=toasts]", "[data-testid=panel-chat]"]
    figures = "[data-testid=gw-stats], [data-testid=panel-gateway] table"
    found = await ops.page.wait_for_function(
        LAYOUT_PROBLEMS, arg={"scopes": scopes, "figures": figures}, timeout=LONG_MS
    )
    report = await found.json_value()
    assert report["width"] == width, report
    problems = "\n".join(report["problems"])
    assert not problems, f"at {width}x900, with toasts {report['toasts']}:\n{problems}"


# ---------------------------------------------------------------------- screenshot


async def test_screenshot_of_a_full_console(ops: Console, tmp_path: Path) -> None:
    """Signed in as admin with every panel filled, 1440 px wide: docs/demo-console.png."""
    update = os.environ.get("REALTIME_UPDATE_SCREENSHOT") == "1"
    target = SCREENSHOT if update else tmp_path / SCREENSHOT.name
    await ops.page.set_viewport_size({"width": 1440, "height": 900})
    await ops.login("admin", "admin")
    await register(ops, "dave")  # a user event
    for _ in range(6):  # an anomaly, at once
        await post_log(ops, "error", "billing")
    await ops.page.click("[data-testid=start-task]")
    # The chat room: alice (a second client in the page) and the admin.
    response = await ops.http.post("/api/login", json={"username": "alice", "password": "alice"})
    assert response.status_code == 200, response.text
    await ops.value(
        """(async () => {
            const { RealtimeClient } = await import("/ws/client.js");
            const client = new RealtimeClient("/ws", { token: arg, channels: ["rooms.ops"] });
            window.aliceClient = client;
            await client.connect();
            const text = "payments-db failover done, replicas catching up";
            await client.publish("rooms.ops", "chat", { text });
        })()""",
        response.json()["token"],
    )
    await line_of(ops, "failover done")
    await ops.page.fill("[data-testid=chat-text]", "thanks, watching the error rate")
    await ops.page.press("[data-testid=chat-text]", "Enter")
    await line_of(ops, "watching the error rate")
    waits = [
        "document.querySelectorAll('[data-testid=chat-member]').length === 2",
        "document.querySelectorAll('[data-testid=log-row]').length >= 14",
        "document.querySelectorAll('[data-testid=anomaly-card]').length >= 1",
        "document.querySelectorAll('[data-testid=request-item]').length >= 12",
        "document.querySelectorAll('[data-testid=provider-row]').length >= 4",
        "document.querySelectorAll('[data-testid=task]').length >= 2",
        "document.querySelectorAll('[data-testid=alert-item]').length >= 1",
        "document.querySelectorAll('[data-testid=user-event]').length >= 1",
        "document.querySelectorAll('[data-testid=user-row]').length >= 3",
        # 15 s of throughput (the app's logs/s is a 10 s average: past its ramp).
        "window.demo.chart.data[0].at(-1) - window.demo.chart.data[0][0] >= 15",
        "/\\d/.test(document.querySelector('[data-testid=sys-cpu]').textContent)",
        "/\\d/.test(document.querySelector('[data-testid=as-clients]').textContent)",
        "/\\d/.test(document.querySelector('[data-testid=gw-total]').textContent)",
    ]
    for predicate in waits:
        await ops.wait(predicate, timeout=LONG_MS)
    assert not await ops.errors()
    await ops.page.fill("[data-testid=bc-message]", "Maintenance window tonight at 22:00 UTC")
    await ops.page.click("[data-testid=bc-send]")
    await ops.wait_text("bc-result", "^sent ")
    await ops.toast("Maintenance window")
    await ops.page.evaluate("() => window.scrollTo(0, 0)")
    await ops.page.screenshot(path=str(target), full_page=True)
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(png[16:20], "big")
    assert width == 1440
