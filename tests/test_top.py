"""``sanic-realtime top``: its model without a screen, the Textual app driven by Textual's
pilot against a real server, and the installed command in a real terminal (tmux) across a
server restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, RichLog, Static

from sanic_realtime.client import ConnectionStatus, Event, RealtimeClient
from sanic_realtime.tui import TopModel
from sanic_realtime.tui.app import TopApp
from sanic_realtime.tui.model import parse_filter

from .conftest import LiveServer, make_realtime
from .processes import Cluster
from .redis_support import new_prefix, redis_url
from .scale_app import ADMIN_TOKEN
from .tokens import jwt_realtime, token

COMMAND = Path(sys.executable).with_name("sanic-realtime")
#: Seconds any wait for the screen may take before the test fails.
WAIT = 15.0


def log_event(n: int, level: str = "info", channel: str = "logs") -> Event:
    return Event(
        "log_update",
        channel=channel,
        id=f"e:{n}",
        timestamp=f"2026-12-07T12:00:{n % 60:02d}.000Z",
        data={"level": level, "message": f"message {n}", "component": "db" if n % 2 else "api"},
    )


# ------------------------------------------------------------------ the model, no screen


def test_rates_count_whole_seconds_of_the_window() -> None:
    model = TopModel(rate_window=5)
    for _ in range(3):
        model.on_event(log_event(1), 100.1)
    for _ in range(2):
        model.on_event(log_event(2), 101.5)
    model.on_event(log_event(3), 102.2)  # the current second: not counted yet
    assert model.rate("logs", 102.9) == pytest.approx(5 / 5)
    assert model.rate("logs", 103.0) == pytest.approx(6 / 5)
    assert model.rate("logs", 107.0) == pytest.approx(1 / 5)  # seconds 102..106
    assert model.rate("logs", 108.0) == 0.0
    assert model.rate("stats", 102.0) == 0.0
    [row] = model.rows(["logs"], 103.0)
    assert (row.channel, row.total) == ("logs", 6)
    assert row.latest.startswith("12:00:03  log_update  message 3")


def test_what_a_server_sends_stays_bounded() -> None:
    model = TopModel(recent_size=3, rate_window=2, max_channels=2)
    for n in range(1000):
        model.on_event(log_event(n, channel=f"c{n % 4}"), 100 + n)
    assert len(model.recent) == 3
    assert [line.plain.split("message ")[1][:3] for line in model.recent] == ["997", "998", "999"]
    assert len(model.take_new()) == 3
    # c0 and c1 have rows; c2 and c3 are counted under "other"
    assert [(r.channel, r.total) for r in model.rows([], 2000)] == [
        ("c0", 250),
        ("c1", 250),
        ("other", 500),
    ]
    assert all(len(c.buckets) <= 3 for c in model._channels.values())


def test_a_huge_event_is_kept_cut() -> None:
    """A server may send 16 MiB events: the list keeps 500 characters of each line, the
    table 200 of the latest, the filter the first 50 fields of 200 characters."""
    model = TopModel()
    data = {"message": "x" * 1_000_000, **{f"f{i}": "y" * 1000 for i in range(10_000)}}
    model.on_event(Event("log_update", channel="logs", id="e:1", data=data), 1.0)
    [line] = model.recent
    assert len(line.text.plain) == 500 and len(line.plain) == 500
    assert len(line.fields) == 50 and all(len(v) == 200 for _, v in line.fields)
    assert len(model.rows([], 1.0)[0].latest) == 200


def test_pause_holds_the_list_and_counts_what_arrives() -> None:
    model = TopModel()
    model.on_event(log_event(1), 1.0)
    assert len(model.take_new()) == 1
    assert model.toggle_pause() is False
    model.on_event(log_event(2), 2.0)
    model.on_event(log_event(3), 2.0)
    assert model.take_new() == []
    assert model.held == 2
    assert "PAUSED (2 new)" in model.headline("ws://h/ws", 2.0).plain
    assert model.rows([], 3.0)[0].total == 3  # figures keep counting
    assert model.toggle_pause() is True  # resumed: the screen redraws from visible()
    assert model.held == 0
    assert len(model.visible()) == 3
    assert model.take_new() == []


def test_filter_terms_are_words_and_field_values() -> None:
    assert parse_filter(" level=error  db ") == [("level", "error"), (None, "db")]
    model = TopModel()
    model.on_event(log_event(1, "error"), 1.0)  # component db
    model.on_event(log_event(2, "error"), 1.0)  # component api
    model.on_event(log_event(3, "info"), 1.0)  # component db
    model.take_new()
    model.set_filter("level=error component=db")
    assert [line.plain for line in model.visible()] == [model.recent[0].plain]
    model.set_filter("MESSAGE 3")
    assert [line.plain for line in model.visible()] == [model.recent[2].plain]
    model.on_event(log_event(13, "info"), 2.0)
    model.on_event(log_event(4, "info"), 2.0)
    assert [line.plain for line in model.take_new()] == [model.recent[3].plain]
    model.set_filter("")
    assert len(model.visible()) == 5


def test_connection_changes_count_reconnects_and_show_as_lines() -> None:
    model = TopModel()
    model.on_status(ConnectionStatus("connecting"), 0.0)
    assert "connecting" in model.headline("ws://h/ws", 0.0).plain
    model.on_status(ConnectionStatus("connected", client_id="c_1", user_id="dave"), 1.0)
    assert "up 00:04" in model.headline("ws://h/ws", 5.2).plain
    lost = ConnectionStatus(
        "reconnecting", attempt=1, next_retry_in=2.0, last_error="closed 1001 going away"
    )
    model.on_status(lost, 10.0)
    headline = model.headline("ws://h/ws", 10.5).plain
    assert "reconnecting" in headline and "attempt 1, next in 1.5s" in headline
    assert "closed 1001 going away" in headline
    model.on_status(ConnectionStatus("reconnecting", attempt=2, next_retry_in=1.0), 12.0)
    model.on_status(ConnectionStatus("connected", client_id="c_2"), 13.0)
    assert model.reconnects == 1
    assert "reconnects 1" in model.headline("ws://h/ws", 13.0).plain
    assert [line.text.plain for line in model.recent] == [
        "* connected (c_1, user dave)",
        "o reconnecting: closed 1001 going away",
        "* connected (c_2)",
    ]


def test_warnings_of_the_client_are_lines_not_counts() -> None:
    model = TopModel()
    model.on_event(Event("resume_failed", channel="logs", data={"since": "e:5"}), 1.0)
    assert model.recent[0].text.plain.startswith("! could not resume logs from e:5")
    assert model.rows([], 2.0) == []


# ------------------------------------------------------------------ the app, Textual's pilot


def screen_of(app: TopApp) -> dict[str, Any]:
    """What the app shows: the status line, the table's rows, the list's lines."""
    table = app.query_one("#channels", DataTable)
    return {
        "status": str(app.query_one("#status", Static).render()),
        "rows": {
            str(r[0]): [str(c) for c in r[1:]]
            for r in (table.get_row_at(i) for i in range(table.row_count))
        },
        "lines": [strip.text for strip in app.query_one("#events", RichLog).lines],
    }


async def until_shown(
    pilot: Pilot[Any], app: TopApp, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    shown = screen_of(app)
    try:
        async with asyncio.timeout(WAIT):
            while not check(shown):
                await pilot.pause(0.05)
                shown = screen_of(app)
    except TimeoutError:
        raise AssertionError(f"the screen never showed what was expected: {shown}") from None
    return shown


def has_line(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda shown: any(text in line for line in shown["lines"])


async def test_top_shows_channels_latest_events_and_obeys_its_keys(serve: Any) -> None:
    realtime = make_realtime()
    server: LiveServer = await serve(realtime)
    url = server.ws_url()
    app = TopApp(lambda: RealtimeClient(url, channels=["logs", "stats"]), url, tick=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        shown = await until_shown(pilot, app, lambda s: s["status"].startswith("● connected"))
        assert url in shown["status"] and "reconnects 0" in shown["status"]
        assert set(shown["rows"]) == {"logs", "stats"}

        await realtime.publish("logs", "log_update", {"level": "error", "message": "db down"})
        await realtime.publish("stats", "stats_update", {"cpu": 93})
        await realtime.publish("logs", "log_update", {"level": "info", "message": "fine"})
        shown = await until_shown(pilot, app, has_line("fine"))
        assert shown["rows"]["logs"][1] == "2" and "log_update  fine" in shown["rows"]["logs"][2]
        assert shown["rows"]["stats"][1] == "1" and '{"cpu":93}' in shown["rows"]["stats"][2]
        [down] = [line for line in shown["lines"] if "db down" in line]
        assert "logs" in down and "ERROR" in down

        await pilot.press("p")  # pause: the list holds, the figures go on
        await realtime.publish("logs", "log_update", {"level": "warn", "message": "while paused"})
        shown = await until_shown(pilot, app, lambda s: s["rows"]["logs"][1] == "3")
        assert "PAUSED (1 new)" in shown["status"]
        assert not has_line("while paused")(shown)
        await pilot.press("p")
        shown = await until_shown(pilot, app, has_line("while paused"))
        assert "PAUSED" not in shown["status"]

        await pilot.press("slash", *"level=error")  # filter as typed
        shown = await until_shown(pilot, app, lambda s: "filter: level=error" in s["status"])
        assert [line for line in shown["lines"] if "log_update" in line] == [down]
        await pilot.press("enter")  # kept: new lines are filtered too
        await realtime.publish("logs", "log_update", {"level": "info", "message": "hidden"})
        await realtime.publish("logs", "log_update", {"level": "error", "message": "shown"})
        shown = await until_shown(pilot, app, has_line("shown"))
        assert not has_line("hidden")(shown)
        await pilot.press("escape")  # cleared: everything again
        shown = await until_shown(pilot, app, has_line("hidden"))

        await pilot.press("c")
        shown = await until_shown(pilot, app, lambda s: not s["lines"])
        assert shown["rows"]["logs"][1] == "5"  # clearing the list keeps the figures

        client = app.client
        assert client is not None
        await pilot.press("q")
    assert app.return_code == 0
    assert client.status.state == "disconnected"


async def test_top_refused_ends_with_the_reason(serve: Any) -> None:
    server: LiveServer = await serve(jwt_realtime())
    url = server.ws_url()
    app = TopApp(lambda: RealtimeClient(url, channels=["logs"]), url)
    async with app.run_test(size=(100, 30)) as pilot:
        async with asyncio.timeout(WAIT):
            while app.is_running:
                await pilot.pause(0.05)
    assert app.return_code == 1
    assert app.error is not None and "refused the connection" in app.error
    assert "401" in app.error


def test_top_without_textual_says_how_to_install_it() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.modules['textual'] = None\n"
            "from sanic_realtime.cli import main\n"
            "sys.exit(main(['top', 'http://127.0.0.1:9']))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done
    assert "pip install 'sanic-realtime[tui]'" in done.stderr


def test_top_bad_arguments_fail_before_taking_the_screen() -> None:
    for args, message in [
        (["top", "ftp://host"], "expected a URL like"),
        (["top", "http://127.0.0.1:9", "-f", "level"], "--filter expects NAME=VALUE"),
        (["top", "http://127.0.0.1:9", "--recent", "0"], "--recent must be at least 1"),
    ]:
        done = subprocess.run(
            [str(COMMAND), *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, (args, done)
        assert message in done.stderr, (args, done.stderr)


# ------------------------------------------------------------------ a real terminal (tmux)


class Terminal:
    """A tmux session of its own (its own server socket), ``width`` x ``height``."""

    def __init__(self, width: int = 140, height: int = 40) -> None:
        self.socket = f"rt-top-{uuid.uuid4().hex[:8]}"
        self.width, self.height = width, height

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return done.stdout

    def start(self, command: str) -> None:
        # The shell prints how the command ended and stays, so its exit status can be read.
        # COLUMNS and LINES (set by pytest) would win over the pane's size.
        shell = f"unset COLUMNS LINES; {command}; echo EXITED=$?; sleep 600"
        self.tmux(
            "new-session", "-d", "-s", "top", "-x", str(self.width), "-y", str(self.height),
            "-e", "TERM=xterm-256color", shell,
        )  # fmt: skip

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    async def shows(self, *texts: str, listed: str | None = None, timeout: float = WAIT) -> str:
        """The screen once it shows every one of ``texts`` (and ``listed`` in a line of the
        recent list)."""

        def shown(screen: str) -> bool:
            if listed is not None and not any(listed in line for line in list_lines(screen)):
                return False
            return all(text in screen for text in texts)

        screen = self.screen()
        try:
            async with asyncio.timeout(timeout):
                while not shown(screen):
                    await asyncio.sleep(0.1)
                    screen = self.screen()
        except TimeoutError:
            raise AssertionError(
                f"the terminal never showed {texts} (listed: {listed!r}):\n{screen}"
            ) from None
        return screen

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.tmux("kill-server")


def ensure_tmux() -> None:
    """tmux, installed with apt-get when missing; the test fails when it cannot be."""
    if shutil.which("tmux") is None and shutil.which("apt-get") is not None:
        # Past pytest's capture, so a newcomer knows what the pause is.
        print(
            "\n[tests] tmux is missing: running `apt-get install -y tmux` for the terminal "
            "tests of `sanic-realtime top`...",
            file=sys.__stderr__,
            flush=True,
        )
        subprocess.run(
            ["apt-get", "install", "-y", "tmux"],
            capture_output=True,
            timeout=600,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed and apt-get could not install it", pytrace=False)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    ensure_tmux()
    term = Terminal()
    yield term
    term.close()


def list_lines(screen: str) -> list[str]:
    """The recent list's event lines (they start with the time; the table's do not)."""
    return [line for line in screen.splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d{3}  ", line)]


async def publish_log(port: int, message: str, level: str = "error") -> None:
    from sanic_realtime.client import publish

    await asyncio.to_thread(
        publish,
        f"http://127.0.0.1:{port}",
        "logs",
        "log_update",
        {"level": level, "message": message},
        token=ADMIN_TOKEN,
    )


@pytest.mark.timeout(120)
async def test_top_in_a_real_terminal_across_a_server_restart(terminal: Terminal) -> None:
    """The installed command in tmux: live figures, a restart of its server (Redis keeps
    the history, so the events published meanwhile arrive), pause, quit with status 0."""
    cluster = Cluster(redis_url(), new_prefix())
    try:
        a, b = await asyncio.gather(cluster.start(), cluster.start())
        env = f"REALTIME_TOKEN={shlex.quote(token('dave', 'ops'))}"
        terminal.start(f"{env} {shlex.quote(str(COMMAND))} top {a.ws_url('/ws')} -c logs")
        screen = await terminal.shows("● connected", "reconnects 0", "p Pause")
        assert "user dave" in screen

        await publish_log(b.port, "before the restart")
        await terminal.shows(listed="before the restart")

        a = await cluster.restart(a)  # SIGTERM: clients get 1001; a new process, same port
        await publish_log(b.port, "during the restart")
        screen = await terminal.shows("reconnects 1", "● connected", listed="during the restart")
        assert "o reconnecting" in screen  # the list says when it was lost
        rows = [line for line in screen.splitlines() if line.strip().startswith("logs ")]
        assert rows and rows[0].split()[2] == "2", screen  # events counted: both

        terminal.keys("p")
        await terminal.shows("PAUSED (0 new)")
        await publish_log(a.port, "while paused")
        screen = await terminal.shows("PAUSED (1 new)")
        assert not [line for line in list_lines(screen) if "while paused" in line], screen
        terminal.keys("p")
        screen = await terminal.shows(listed="while paused")
        assert "PAUSED" not in screen

        terminal.keys("q")
        await terminal.shows("EXITED=0")
    finally:
        await cluster.close()
