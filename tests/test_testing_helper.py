"""sanic_realtime.testing and its pytest plugin, used as a user would: a module-level app
(tests/user_app/, the app of docs/how-to/testing.md) served test after test, app
factories, the errors, and the page's own blocks run as a user's project."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic
from sanic.response import json

from sanic_realtime import Realtime
from sanic_realtime.client import Refused, RequestFailed
from sanic_realtime.config import parse_config
from sanic_realtime.testing import find_realtime, serve_app

from .redis_support import delete_prefix, new_prefix, redis_url
from .tokens import jwt_realtime, token
from .user_app.app import app as user_app
from .user_app.app import realtime as user_realtime

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "how-to" / "testing.md"
USER_APP = Path(__file__).resolve().parent / "user_app"
_names = itertools.count()


# ------------------------------------------------------------------ the user's module-level app


async def test_a_route_publishes_to_a_subscriber() -> None:
    """POST to the user's route; the event reaches a filtered client, nothing else does."""
    async with serve_app(user_app) as server:
        assert server.realtime is user_realtime
        client = await server.client("logs", level="error")
        async with httpx.AsyncClient(base_url=server.url) as http:
            info = await http.post("/logs", json={"level": "info", "message": "fine"})
            error = await http.post("/logs", json={"level": "error", "message": "db down"})
        assert (info.status_code, info.json()["recipients"]) == (201, 0)
        assert error.json()["recipients"] == 1
        event = await client.next_event("log_update")
        assert (event.channel, event.id) == ("logs", error.json()["id"])
        assert event.data == {"level": "error", "message": "db down"}
        await client.assert_no_event()
    assert client.status.state == "disconnected"  # closed by the server's stop


async def test_the_same_app_is_served_again() -> None:
    """A second test serving the module-level app gets a fresh server, and history."""
    async with serve_app(user_app) as server:
        client = await server.client("logs")
        result = await user_realtime.publish("logs", "log_update", {"level": "info"})
        assert result.id.endswith(":1")  # the earlier tests' events are forgotten
        assert (await client.next_event()).id == result.id
    # Again within one test (the same event loop).
    async with serve_app(user_app) as server:
        client = await server.client("logs")
        async with httpx.AsyncClient() as http:
            response = await http.post(server.http_url("logs"), json={"level": "warn"})
        assert (await client.next_event("log_update")).id == response.json()["id"]


def test_served_in_one_new_event_loop_after_another() -> None:
    """start, stop, start again in a new loop, three times (asyncio.run each time)."""

    async def one_run(i: int) -> tuple[str, Any]:
        async with serve_app(user_app) as server:
            client = await server.client("logs")
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.post("/logs", json={"level": "debug", "run": i})
            event = await client.next_event("log_update")
            return str(event.id), event.data["run"]

    runs = [asyncio.run(one_run(i)) for i in range(3)]
    assert [run for _, run in runs] == [0, 1, 2]
    assert all(event_id.endswith(":1") for event_id, _ in runs)
    assert len({event_id for event_id, _ in runs}) == 3  # a new epoch each time


def make_ops_app(realtime: Realtime, name: str = "ops_factory") -> Sanic[Any, Any]:
    """An app factory: a new app with the same name each call."""
    app = Sanic(name)
    app.config.AUTO_EXTEND = False
    app.blueprint(realtime.blueprint)

    @app.post("/publish/<channel>")
    async def publish(request: Any, channel: str) -> Any:
        result = await realtime.publish(channel, "note", request.json)
        return json({"id": result.id})

    return app


async def test_an_app_factory_makes_a_new_app_with_the_same_name_each_time() -> None:
    """Two apps named alike, one after the other, each with its own Realtime."""
    for i in range(2):
        realtime = Realtime(parse_config({"channels": {"notes": {}}}))
        app = make_ops_app(realtime)
        async with serve_app(app) as server:
            assert find_realtime(app) is realtime
            client = await server.client("notes")
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.post("/publish/notes", json={"i": i})
            assert (await client.next_event()).data == {"i": i}


def test_the_redis_backplane_starts_again_in_a_new_event_loop() -> None:
    """The Redis backplane's loop-bound parts are made again when it restarts."""
    url, prefix = redis_url(), new_prefix()
    realtime = Realtime(
        parse_config({"backplane": url, "redis": {"prefix": prefix}, "channels": {"notes": {}}})
    )
    app = make_ops_app(realtime, f"ops_redis_{next(_names)}")

    async def one_run(i: int) -> Any:
        async with serve_app(app) as server:
            client = await server.client("notes")
            async with httpx.AsyncClient(base_url=server.url) as http:
                await http.post("/publish/notes", json={"i": i})
            return (await client.next_event(timeout=10)).data

    try:
        assert [asyncio.run(one_run(i)) for i in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    finally:
        asyncio.run(delete_prefix(url, prefix))


async def test_a_test_may_publish_directly_and_skip_other_messages() -> None:
    """next_event(type=..., channel=...) skips other messages; initial_state comes first."""
    realtime = Realtime(parse_config({"channels": {"stats": {"initial": "last"}, "alerts": {}}}))
    await realtime.publish("stats", "stats_update", {"cpu": 0.5})  # before the start
    app = make_ops_app(realtime, f"ops_direct_{next(_names)}")
    async with serve_app(app) as server:
        client = await server.client("stats", "alerts")
        initial = await client.next_event()
        assert (initial.type, initial.data) == ("initial_state", {"cpu": 0.5})
        await realtime.publish("stats", "stats_update", {"cpu": 0.7})
        await realtime.publish("alerts", "alert", {"severity": "high"})
        alert = await client.next_event(channel="alerts")
        assert alert.data == {"severity": "high"}
        await client.assert_no_event()  # the stats update was skipped, and consumed


# ------------------------------------------------------------------ errors


def test_serving_an_app_without_the_blueprint_is_refused() -> None:
    app = Sanic(f"no_blueprint_{next(_names)}")
    with pytest.raises(ValueError, match="has no sanic-realtime blueprint") as missing:
        serve_app(app)
    assert "app.blueprint(realtime.blueprint)" in str(missing.value)
    with pytest.raises(ValueError, match="did not register this Realtime's blueprint"):
        serve_app(user_app, Realtime(parse_config({"channels": {"logs": {}}})))


async def test_urls_need_a_started_server() -> None:
    server = serve_app(user_app)
    with pytest.raises(RuntimeError, match="not being served"):
        server.ws_url()
    await server.stop()  # not started: nothing to do


async def test_an_unknown_channel_or_filter_is_refused_with_its_code() -> None:
    async with serve_app(user_app) as server:
        with pytest.raises(RequestFailed) as unknown:
            await server.client("nope")
        assert unknown.value.code == "unknown_channel"
        assert "unknown channel 'nope'" in unknown.value.message
        with pytest.raises(RequestFailed) as bad:
            await server.client("logs", level="loud")
        assert bad.value.code == "bad_filter_value"
        assert user_realtime.stats()["total_clients"] == 0


async def test_a_refused_handshake_surfaces_status_and_code() -> None:
    realtime = jwt_realtime()
    app = make_ops_app(realtime, f"ops_jwt_{next(_names)}")
    async with serve_app(app) as server:
        with pytest.raises(Refused) as refused:
            await server.client("logs", token="not-a-jwt")
        assert (refused.value.status, refused.value.code) == (401, "invalid_token")
        client = await server.client("logs", token=token("alice"))
        await realtime.publish("logs", "log_update", {"level": "info"})
        assert (await client.next_event()).data == {"level": "info"}


async def test_a_timeout_says_what_it_waited_for() -> None:
    async with serve_app(user_app) as server:
        client = await server.client("logs", level="error")
        await user_realtime.publish("logs", "other", {"level": "error"})
        with pytest.raises(AssertionError) as waited:
            await client.next_event("log_update", channel="logs", timeout=0.3)
        message = str(waited.value)
        assert message.startswith(
            "no event of type 'log_update' on channel 'logs' arrived within 0.3s "
            f"(subscribed to logs (level=error) on {server.ws_url()}; "
            "skipped 1 other message(s): 'other' on 'logs' {'level': 'error'})"
        ), message
        await user_realtime.publish("logs", "log_update", {"level": "critical"})
        with pytest.raises(AssertionError) as unexpected:
            await client.assert_no_event()
        assert str(unexpected.value) == (
            "expected no event within 0.3s, got 'log_update' on 'logs' {'level': 'critical'}"
        )


# ------------------------------------------------------------------ the package's imports


def test_the_testing_module_imports_no_pytest() -> None:
    code = (
        "import sys; import sanic_realtime.testing; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', "
        "'pytest_asyncio')); print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------ the docs page


def page_blocks() -> list[tuple[str, str]]:
    """Every fenced block of docs/how-to/testing.md: (language, text)."""
    text = PAGE.read_text()
    return [(m[1], m[2]) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.M | re.S)]


def page_files() -> dict[str, str]:
    """The page's file blocks, by the name on their first line (`# app.py`)."""
    files = {}
    for lang, text in page_blocks():
        if lang in ("python", "yaml"):
            name = text.splitlines()[0].removeprefix("# ")
            assert re.fullmatch(r"[\w.]+\.(py|yaml)", name), f"block without a file name: {name}"
            files[name] = text
    return files


def test_every_block_of_the_page_is_a_file_run_here() -> None:
    """So that the tests below exercise the whole page (its command, `pytest`, is in
    the prose: no shell block)."""
    assert sorted(page_files()) == sorted(
        [
            "app.py",
            "conftest.py",
            "realtime.yaml",
            "test_publishers.py",
            "test_with_fixture.py",
            "test_with_sanic_testing.py",
        ]
    )
    assert len(page_blocks()) == len(page_files())
    assert "run `pytest` in that directory: four tests pass" in PAGE.read_text()


def test_the_pages_app_is_the_app_these_tests_serve() -> None:
    files = page_files()
    assert files["app.py"] == (USER_APP / "app.py").read_text()
    assert files["realtime.yaml"] == "# realtime.yaml\n" + (USER_APP / "realtime.yaml").read_text()


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_pages_project_passes_with_its_command(tmp_path: Path, mode: str) -> None:
    """The page's files in a directory of their own, run with `pytest` as the page says,
    in both pytest-asyncio modes (strict: the default; auto from an ini file)."""
    for name, text in page_files().items():
        (tmp_path / name).write_text(text)
    if mode == "auto":
        (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    command = "pytest"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        f"{command} -v -p no:cacheprovider",
        shell=True,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"mode=Mode.{mode.upper()}" in output, output
    assert "4 passed" in output, output


def test_a_failing_user_test_shows_the_helpers_message(tmp_path: Path) -> None:
    """A user's test that waits for an event its route never publishes fails with
    the timeout's message (run as the page's project is, in strict mode)."""
    for name, text in page_files().items():
        if not name.startswith("test_"):
            (tmp_path / name).write_text(text)
    (tmp_path / "test_wrong.py").write_text(
        "import pytest\n"
        "from app import app\n\n"
        "@pytest.mark.asyncio\n"
        "async def test_waits_in_vain(realtime_server):\n"
        "    server = await realtime_server(app)\n"
        "    client = await server.client('logs')\n"
        "    await client.next_event('log_update', timeout=0.2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "AssertionError: no event of type 'log_update' arrived within 0.2s" in output, output
