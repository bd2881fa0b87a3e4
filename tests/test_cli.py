"""The ``sanic-realtime`` command (the installed entry point) against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sanic_realtime.client import RealtimeClient

from .conftest import make_realtime
from .processes import Cluster
from .redis_support import new_prefix, redis_url
from .test_client import publish_numbered, until
from .test_client_presence import rooms_realtime
from .test_hardening_inputs import nested
from .tokens import jwt_realtime, token

COMMAND = Path(sys.executable).with_name("sanic-realtime")


class Run:
    """``sanic-realtime ARGS`` as a process; stdout and stderr read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.out: list[str] = []
        self.err: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(process.stdout, self.out)),
            asyncio.create_task(self._read(process.stderr, self.err)),
        ]

    @staticmethod
    async def _read(stream: asyncio.StreamReader, lines: list[str]) -> None:
        while line := await stream.readline():
            lines.append(line.decode().rstrip("\n"))

    async def wait_err(self, text: str, count: int = 1, timeout: float = 15.0) -> None:
        """Until ``text`` appears in ``count`` stderr lines."""
        async with asyncio.timeout(timeout):
            while sum(text in line for line in self.err) < count:
                if self.process.returncode is not None:
                    raise AssertionError(f"exited {self.process.returncode}: {self.err}")
                await asyncio.sleep(0.02)

    async def wait_out(self, text: str, timeout: float = 15.0) -> None:
        await until(lambda: any(text in line for line in self.out), timeout)

    async def finish(self, timeout: float = 20.0) -> int:
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.gather(*self._readers)
        return code


@pytest.fixture
async def cli() -> AsyncIterator[Any]:
    if not COMMAND.exists():
        pytest.fail(f"{COMMAND} is missing: install the package (pip install -e '.[test]')")
    runs: list[Run] = []

    async def start(*args: str) -> Run:
        process = await asyncio.create_subprocess_exec(
            str(COMMAND),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        )
        run = Run(process)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.returncode is None:
            run.process.kill()
            await run.process.wait()


async def test_tail_json_prints_each_matching_event_once(serve: Any, cli: Any) -> None:
    server = await serve(make_realtime())
    realtime = server.realtime
    url = f"http://127.0.0.1:{server.port}"
    run = await cli(
        "tail", url, "--channel", "logs", "--filter", "level=error", "--json", "-n", "2"
    )
    await run.wait_err("connected")
    one = await realtime.publish("logs", "log_update", {"level": "error", "message": "db down"})
    await realtime.publish("logs", "log_update", {"level": "info", "message": "fine"})
    two = await realtime.publish("logs", "log_update", {"level": "critical", "message": "gone"})
    assert await run.finish() == 0
    events = [json.loads(line) for line in run.out]
    assert [(e["id"], e["channel"], e["type"]) for e in events] == [
        (one.id, "logs", "log_update"),
        (two.id, "logs", "log_update"),
    ]
    assert events[0]["data"] == {"level": "error", "message": "db down"}
    assert run.err[0] == f"connecting to ws://127.0.0.1:{server.port}/ws ..."


async def test_tail_of_a_channel_url(serve: Any, cli: Any) -> None:
    """`tail ws://host/ws/logs?level=error`: that channel with that filter; and with no
    channel at all on the general route, every channel."""
    server = await serve(make_realtime())
    realtime = server.realtime
    run = await cli("tail", server.ws_url("/ws/logs?level=error"), "--json", "-n", "1")
    await run.wait_err("connected")
    await realtime.publish("logs", "log_update", {"level": "info", "message": "fine"})
    await realtime.publish("stats", "stats_update", {"cpu": 1})
    one = await realtime.publish("logs", "log_update", {"level": "error", "message": "db down"})
    assert await run.finish() == 0
    assert [json.loads(line)["id"] for line in run.out] == [one.id]
    run = await cli("tail", f"http://127.0.0.1:{server.port}", "--json", "-n", "1")
    await run.wait_err("connected")
    stats = await realtime.publish("stats", "stats_update", {"cpu": 2})
    assert await run.finish() == 0
    # (stats has initial: last: its initial_state, a control message, comes first)
    events = [json.loads(line) for line in run.out]
    assert [e["id"] for e in events if "id" in e] == [stats.id]


async def test_tail_text_shows_levels_messages_and_state(serve: Any, cli: Any) -> None:
    server = await serve(make_realtime())
    realtime = server.realtime
    await realtime.publish("stats", "stats_update", {"clients": 3})
    run = await cli("tail", server.ws_url("/ws"), "-c", "logs", "-c", "stats", "-n", "1")
    await run.wait_out("* connected")
    await run.wait_out("initial_state")
    await realtime.publish("logs", "log_update", {"level": "error", "message": "db down"})
    assert await run.finish() == 0
    text = "\n".join(run.out)
    assert "stats      initial_state    " in text and '{"clients":3}' in text
    (line,) = [line for line in run.out if "log_update" in line]
    assert "logs" in line and "ERROR" in line and "db down" in line
    assert "\x1b[" not in text  # NO_COLOR / not a terminal: plain text


async def test_tail_refused_shows_status_and_message(serve: Any, cli: Any) -> None:
    server = await serve(jwt_realtime())
    run = await cli("tail", server.ws_url("/ws"), "--token", "not-a-jwt")
    assert await run.finish() == 1
    (error,) = run.err
    assert error.startswith(
        "error: the server refused the connection: HTTP 401 invalid_token: invalid token"
    ), error


async def test_tail_bad_filter_and_bad_arguments(serve: Any, cli: Any) -> None:
    server = await serve(make_realtime())
    run = await cli("tail", server.ws_url("/ws"), "-c", "logs", "-f", "level=loud")
    assert await run.finish() == 1
    assert run.err[-1].startswith("error: bad_filter_value: filter 'level' must be one of"), run.err
    run = await cli("tail", server.ws_url("/ws"), "-f", "level")
    assert await run.finish() == 2
    assert run.err == ["sanic-realtime: error: --filter expects NAME=VALUE, got 'level'"]
    run = await cli("tail", "ftp://nowhere")
    assert await run.finish() == 2
    assert "expected a URL like http://127.0.0.1:8000" in run.err[0]


async def test_tail_gives_up_when_asked(cli: Any) -> None:
    from .redis_support import free_port

    run = await cli("tail", f"ws://127.0.0.1:{free_port()}/ws", "--max-reconnect-attempts", "1")
    assert await run.finish() == 1
    assert run.out[0].startswith("connecting to ws://127.0.0.1:")
    assert "reconnecting in" in run.out[1] and "(attempt 1)" in run.out[1]
    assert run.err[-1].startswith("error: gave_up: could not connect (1 retry failed)")


async def test_publish_prints_recipients(serve: Any, cli: Any) -> None:
    server = await serve(make_realtime())
    url = f"http://127.0.0.1:{server.port}"
    async with server.connect("/ws/logs") as ws:
        await ws.recv()
        run = await cli(
            "publish", url, "--channel", "logs", "--type", "log_update", "--data", '{"level": "x"}'
        )
        assert await run.finish() == 0
        received = json.loads(await ws.recv())
    assert run.out == [f"published {received['id']} to logs: 1 recipients"]
    assert received["data"] == {"level": "x"}
    run = await cli("publish", url, "--channel", "nope", "--type", "t", "--json")
    assert await run.finish() == 1
    assert run.err == [
        "error: the server refused the request: HTTP 404 unknown_channel: unknown channel "
        "'nope'; known channels: logs, stats, alerts, requests"
    ]
    run = await cli("publish", url, "--channel", "logs", "--type", "t", "--data", "{bad")
    assert await run.finish() == 2
    assert run.err[0].startswith("sanic-realtime: error: --data is not JSON")


async def test_cli_publish_of_deep_data(serve: Any, cli: Any) -> None:
    """Too deep for the tool itself: usage error (2). Decodable here but over the
    server's limit: the server's 400 invalid_json, exit 1."""
    server = await serve(make_realtime())
    url = f"http://127.0.0.1:{server.port}"
    run = await cli("publish", url, "--channel", "logs", "--type", "t", "--data", nested(5000))
    assert await run.finish() == 2
    assert "--data is not JSON this tool can read: nested too deeply" in run.err[0]
    run = await cli("publish", url, "--channel", "logs", "--type", "t", "--data", nested(300))
    assert await run.finish() == 1
    assert "HTTP 400 invalid_json" in run.err[0]


async def test_publish_needs_the_admin_token(serve: Any, cli: Any) -> None:
    server = await serve(make_realtime(admin={"token": "s3cret-admin-token-0123456789"}))
    url = f"http://127.0.0.1:{server.port}"
    run = await cli("publish", url, "--channel", "logs", "--type", "t")
    assert await run.finish() == 1
    assert "HTTP 401 unauthorized: this route needs 'Authorization: Bearer <token>'" in run.err[0]
    run = await cli(
        "publish", url, "--channel", "logs", "--type", "t", "--json",
        "--token", "s3cret-admin-token-0123456789",
    )  # fmt: skip
    assert await run.finish() == 0
    reply = json.loads(run.out[0])
    assert reply["success"] is True and reply["recipients"] == 0


async def test_tail_survives_a_server_restart(cli: Any) -> None:
    """``tail --json`` on server A while B publishes; A restarts: every event once."""
    cluster = Cluster(redis_url(), new_prefix())
    try:
        a, b = await asyncio.gather(cluster.start(), cluster.start())
        run = await cli(
            "tail", a.ws_url("/ws"), "-c", "logs", "--json", "-n", "40",
            "--token", token("dave", "ops"),
        )  # fmt: skip
        await run.wait_err("connected")
        stream = asyncio.create_task(publish_numbered(b, 0, 40, 0.03))
        await run.wait_out('"i":5')
        await cluster.restart(a)
        await stream
        assert await run.finish(timeout=40) == 0
        assert [json.loads(line)["data"]["i"] for line in run.out] == list(range(40))
        assert any("reconnecting in" in line for line in run.err), run.err
        assert sum("connected (" in line for line in run.err) == 2, run.err
    finally:
        await cluster.close()


async def test_tail_takes_template_instances_and_shows_their_refusals(serve: Any, cli: Any) -> None:
    channels = {"orders.{order_id}": {"params": {"order_id": {"pattern": "[0-9]+"}}}}
    server = await serve(make_realtime(channels=channels))
    url = f"http://127.0.0.1:{server.port}"
    run = await cli("tail", url, "-c", "orders.42", "--json", "-n", "1")
    await run.wait_err("connected")
    sent = await server.realtime.publish("orders.42", "status", {"status": "paid"})
    assert await run.finish() == 0
    assert json.loads(run.out[0])["id"] == sent.id
    bad = await cli("tail", url, "-c", "orders.x", "--no-reconnect")
    assert await bad.finish() == 1
    assert any("invalid_channel" in line and "order_id" in line for line in bad.err), bad.err


# ------------------------------------------------------------------ presence


async def test_presence_prints_users_then_counts(serve: Any, cli: Any) -> None:
    server = await serve(rooms_realtime())
    url = f"http://127.0.0.1:{server.port}"

    def member(user: str | None) -> RealtimeClient:
        who = token(user, "member") if user else None
        return RealtimeClient(server.ws_url("/ws"), channels=["rooms.a"], token=who)

    async with member("alice"), member("bob"), member(None):
        # An admin asks without subscribing: the command is not counted.
        run = await cli("presence", url, "rooms.a", "--token", token("root", "admin"))
        assert await run.finish() == 0, run.err
        assert run.err == []
        assert len(run.out) == 3, run.out
        assert re.fullmatch(r"alice  member  1 connection  since \S+Z", run.out[0]), run.out
        assert re.fullmatch(r"bob    member  1 connection  since \S+Z", run.out[1]), run.out
        assert run.out[2] == "2 users, 1 anonymous"
        # Anyone else subscribes first, as the server asks, and so is counted.
        run = await cli(
            "presence", server.ws_url("/ws"), "rooms.a", "--json",
            "--token", token("carol", "member"),
        )  # fmt: skip
        assert await run.finish() == 0, run.err
        (line,) = run.out
        data = json.loads(line)
        assert sorted(u["user_id"] for u in data["users"]) == ["alice", "bob", "carol"]
        assert (data["count"], data["anonymous"]) == (3, 1)
        assert set(data["users"][0]) == {"user_id", "role", "connections", "since"}
    # A channel URL subscribes by itself.
    run = await cli("presence", server.ws_url("/ws/rooms.b"), "rooms.b", "--token", token("dave"))
    assert await run.finish() == 0, run.err
    assert re.fullmatch(r"dave  -  1 connection  since \S+Z", run.out[0]), run.out
    assert run.out[1:] == ["1 users, 0 anonymous"]


async def test_presence_errors_and_bad_arguments(serve: Any, cli: Any) -> None:
    from .redis_support import free_port

    server = await serve(rooms_realtime())
    url = f"http://127.0.0.1:{server.port}"
    carol = token("carol", "member")
    run = await cli("presence", url, "plain.a", "--token", carol)
    assert await run.finish() == 1
    assert run.out == [] and len(run.err) == 1
    assert run.err[0].startswith("error: no_presence: "), run.err
    run = await cli("presence", url, "nope", "--token", carol)
    assert await run.finish() == 1
    assert run.err[0].startswith("error: unknown_channel: unknown channel 'nope'"), run.err
    run = await cli("presence", url, "rooms.a", "--token", "not-a-jwt")
    assert await run.finish() == 1
    assert run.err[0].startswith(
        "error: the server refused the connection: HTTP 401 invalid_token"
    ), run.err
    run = await cli("presence", f"http://127.0.0.1:{free_port()}", "rooms.a")
    assert await run.finish() == 1
    assert run.err[-1].startswith("error: gave_up: could not connect (no retry allowed)"), run.err
    # Bad arguments: 2.
    run = await cli("presence", url)
    assert await run.finish() == 2
    assert "the following arguments are required: channel" in run.err[-1]
    run = await cli("presence", "ftp://nowhere", "rooms.a")
    assert await run.finish() == 2
    assert "expected a URL like http://127.0.0.1:8000" in run.err[0]
    run = await cli("presence", url, "rooms.a", "--timeout", "0")
    assert await run.finish() == 2
    assert run.err == ["sanic-realtime: error: --timeout must be more than 0, got 0"]


async def test_tail_shows_presence_changes_and_senders(serve: Any, cli: Any) -> None:
    server = await serve(rooms_realtime())
    url = f"http://127.0.0.1:{server.port}"

    def alice() -> RealtimeClient:
        return RealtimeClient(
            server.ws_url("/ws"), channels=["rooms.a"], token=token("alice", "member")
        )

    run = await cli("tail", url, "-c", "rooms.a", "--token", token("dave", "member"), "-n", "1")
    jsonl = await cli("tail", url, "-c", "rooms.a", "--json", "-n", "1")  # anonymous
    await run.wait_out("+ dave (member)")
    await jsonl.wait_err("connected")
    async with alice():
        await run.wait_out("+ alice (member)")
    await run.wait_out("- alice (member)")  # after leave_delay
    async with alice() as again:
        chat_id = await again.publish("rooms.a", "chat", {"message": "hi"})
        assert await run.finish() == 0
        assert await jsonl.finish() == 0
        client_id = again.status.client_id
    join = next(line for line in run.out if "+ alice" in line)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3}  rooms\.a    presence_join    \+ alice \(member\)", join
    )
    leave = next(line for line in run.out if "- alice" in line)
    assert "rooms.a    presence_leave   - alice (member)" in leave
    (chat,) = [line for line in run.out if " chat " in line]
    assert chat.endswith(f"chat             hi  from alice  #{chat_id}"), chat
    # --json: presence changes as they came, the client message with its sender.
    messages = [json.loads(line) for line in jsonl.out]
    assert [m["type"] for m in messages if m["type"] != "presence_join"] == [
        "presence_leave",
        "chat",
    ]
    assert {"type": "presence_join", "channel": "rooms.a"}.items() <= messages[0].items()
    assert messages[-1]["from"] == {"user_id": "alice", "client_id": client_id}
    assert messages[-1]["id"] == chat_id


def test_presence_lines_of_counts_only_and_of_a_cut_list() -> None:
    from sanic_realtime.console import presence_lines
    from sanic_realtime.protocol import PresenceData, PresenceUser

    counts = PresenceData(users=None, count=1500, anonymous=2)
    assert presence_lines(counts) == [
        "(this channel lists no users: counts only)",
        "1500 users, 2 anonymous",
    ]
    first = PresenceUser(user_id="u1", role=None, connections=3, since="2026-01-01T00:00:00.000Z")
    cut = PresenceData(users=[first], count=1500, anonymous=0, truncated=True)
    assert presence_lines(cut) == [
        "u1  -  3 connections  since 2026-01-01T00:00:00.000Z",
        "(the first 1 of 1500 users)",
        "1500 users, 0 anonymous",
    ]
