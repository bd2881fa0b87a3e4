"""Client messages through a real server (memory backplane): the sender stamped by the
server (a forged ``from`` ignored), ephemeral and history types, echo, every refusal
(channel, subscription, type, role, size, rate, bad body, handler raising, failing,
slow, too many waiting), handlers replacing or dropping, and replay on resume."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from sanic_realtime import BadMessage, ConnectionView, Forbidden, Realtime
from sanic_realtime.config import parse_config
from sanic_realtime.exceptions import ConfigError

from .conftest import no_message, recv_json, recv_until
from .tokens import SECRET, bearer, token

ROOMS: dict[str, Any] = {
    "presence": {"leave_delay": "0s", "events": False},
    "client_messages": {
        "types": ["typing", "chat", "slow", "boom", "nope", "bad", "cursor"],
        "roles": ["member", "admin"],
        "rate": {"messages": 5, "per": "10s"},
        "history": ["chat"],
        "max_size": 256,
        "handler_timeout": "300ms",
    },
}


class ChatLine(msgspec.Struct):
    text: str


def make_realtime(rooms: dict[str, Any] | None = None) -> Realtime:
    realtime = Realtime(
        parse_config(
            {
                "auth": {"mode": "jwt", "jwt_secret": SECRET},
                "channels": {
                    "logs": {},
                    "rooms.{room}": rooms or ROOMS,
                    "echo.{room}": {"client_messages": {"types": ["ping2"], "echo": True}},
                },
            }
        )
    )
    seen: list[Any] = []
    realtime.seen = seen  # type: ignore[attr-defined]

    @realtime.on_message("rooms.{room}", "chat")
    async def on_chat(conn: ConnectionView, channel: str, params: dict[str, str], data: ChatLine):
        seen.append((conn.user_id, channel, params, data))
        if data.text == "drop":
            return None
        if data.text == "secret":
            raise Forbidden("no secrets here", code="no_secrets")
        return {"text": data.text.strip().upper()}

    @realtime.on_message("rooms.{room}", "slow")
    async def on_slow(conn: ConnectionView, channel: str, params: dict[str, str], data: Any):
        await asyncio.sleep(float(data.get("sleep", 0)) if isinstance(data, dict) else 0)
        return data

    @realtime.on_message("rooms.{room}", "boom")
    async def on_boom(conn: ConnectionView, channel: str, params: dict[str, str], data: Any):
        raise RuntimeError("the handler broke")

    @realtime.on_message("rooms.{room}", "nope")
    async def on_nope(conn: ConnectionView, channel: str, params: dict[str, str], data: Any):
        return {"not json": object()}  # msgspec cannot encode it

    @realtime.on_message("rooms.{room}", "bad")
    async def on_bad(conn: ConnectionView, channel: str, params: dict[str, str], data: Any):
        raise BadMessage("too shouty", code="too_shouty")

    return realtime


def who(user: str, role: str = "member") -> dict[str, str]:
    return bearer(token(user, role))


async def publish(ws: Any, event: str, data: Any, ref: str, channel: str = "rooms.a") -> None:
    message = {"type": "publish", "channel": channel, "event": event, "data": data, "ref": ref}
    await ws.send(json.dumps(message))


async def reply_to(ws: Any, ref: str, timeout: float = 5.0) -> dict[str, Any]:
    """The reply carrying ``ref`` (events and other messages in between are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await recv_json(ws, max(0.05, deadline - loop.time()))
        if message.get("ref") == ref:
            return message


async def refusal(ws: Any, event: str, data: Any, ref: str, channel: str = "rooms.a") -> str:
    await publish(ws, event, data, ref, channel)
    reply = await reply_to(ws, ref)
    assert reply["type"] == "error", reply
    return str(reply["data"]["code"])


async def test_a_message_reaches_the_others_stamped_by_the_server(serve: Any) -> None:
    server = await serve(make_realtime())
    async with (
        server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice,
        server.connect("/ws/rooms.a", additional_headers=who("bob")) as bob,
    ):
        await recv_json(alice)
        welcome = await recv_json(bob)
        message = {
            "type": "publish",
            "channel": "rooms.a",
            "event": "typing",
            "data": {"on": True},
            "ref": "t1",
            "from": {"user_id": "mallory", "client_id": "c_forged"},  # ignored
        }
        await alice.send(json.dumps(message))
        reply = await recv_until(alice, "published")
        assert reply["ref"] == "t1" and reply["data"] == {"id": None}
        event = await recv_until(bob, "typing")
        assert event["channel"] == "rooms.a" and event["id"] is None
        assert event["data"] == {"on": True}
        assert event["from"]["user_id"] == "alice"
        assert event["from"]["client_id"] != "c_forged"
        assert event["from"]["client_id"] != welcome["data"]["client_id"]  # alice's, not bob's
        assert list(event) == ["type", "channel", "id", "timestamp", "data", "from"]
        await no_message(alice, 0.3)  # echo: false


async def test_history_types_get_ids_and_are_replayed_on_resume(serve: Any) -> None:
    server = await serve(make_realtime())
    async with server.connect("/ws/rooms.a", additional_headers=who("bob")) as bob:
        await recv_json(bob)
        async with server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice:
            await recv_json(alice)
            await publish(alice, "chat", {"text": " hi "}, "c1")
            reply = await reply_to(alice, "c1")
            assert reply["type"] == "published" and reply["data"]["id"].endswith(":1")
            first = await recv_until(bob, "chat")
            assert first["id"] == reply["data"]["id"]
            assert first["data"] == {"text": "HI"}  # the handler's payload
            assert first["from"]["user_id"] == "alice"
            await publish(alice, "typing", {}, "t1")  # ephemeral: uses up no id
            await reply_to(alice, "t1")
            await publish(alice, "chat", {"text": "again"}, "c2")
            second = await reply_to(alice, "c2")
            assert second["data"]["id"].endswith(":2")
    # A resume from the first chat line replays the second, and nothing ephemeral.
    since = first["id"]
    async with server.connect(f"/ws/rooms.a?since={since}", additional_headers=who("bob")) as again:
        welcome = await recv_json(again)
        assert welcome["data"]["recovered"] == {"rooms.a": True}
        replayed = await recv_json(again)
        assert (replayed["type"], replayed["id"]) == ("chat", second["data"]["id"])
        assert replayed["from"]["user_id"] == "alice"
        await no_message(again, 0.3)


async def test_every_refusal_has_its_code_and_the_ref(serve: Any) -> None:
    realtime = make_realtime()
    server = await serve(realtime)
    async with (
        server.connect("/ws?channels=rooms.a,logs", additional_headers=who("alice")) as alice,
        server.connect("/ws/rooms.a", additional_headers=who("guest", "guest")) as guest,
    ):
        await recv_json(alice)
        await recv_json(guest)
        assert await refusal(alice, "typing", {}, "r1", channel="logs") == "forbidden"
        assert await refusal(alice, "typing", {}, "r2", channel="rooms.b") == "forbidden"
        assert await refusal(alice, "typing", {}, "r3", channel="nope") == "unknown_channel"
        assert await refusal(alice, "typing", {}, "r4", channel="rooms.a b") == "invalid_channel"
        assert await refusal(alice, "shout", {}, "r5") == "unknown_type"
        assert await refusal(guest, "typing", {}, "r6") == "forbidden"  # role
        assert await refusal(alice, "typing", {"x": "y" * 300}, "r7") == "message_too_large"
        assert await refusal(alice, "chat", {"txt": "no text"}, "r8") == "invalid_message"
        assert await refusal(alice, "chat", {"text": "secret"}, "r9") == "no_secrets"
        assert await refusal(alice, "boom", {}, "r10") == "handler_failed"
        assert await refusal(alice, "bad", {}, "r11") == "too_shouty"
        await alice.send(json.dumps({"type": "publish", "channel": "rooms.a", "ref": "r12"}))
        assert (await reply_to(alice, "r12"))["data"]["code"] == "invalid_message"
        # The handler saw only the messages that passed every check before it.
        assert [d.text for _, _, _, d in realtime.seen] == ["secret"]  # type: ignore[attr-defined]
        assert realtime.seen[0][:3] == ("alice", "rooms.a", {"room": "a"})  # type: ignore[attr-defined]


async def test_the_rate_is_per_connection_and_channel_and_does_not_close(serve: Any) -> None:
    server = await serve(make_realtime())
    async with (
        server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice,
        server.connect("/ws/rooms.a", additional_headers=who("bob")) as bob,
    ):
        await recv_json(alice)
        await recv_json(bob)
        for i in range(5):
            await publish(alice, "typing", {}, f"ok{i}")
            assert (await reply_to(alice, f"ok{i}"))["type"] == "published"
        assert await refusal(alice, "typing", {}, "over") == "rate_limited"
        # Bob's own allowance is whole; alice's connection is still open.
        await publish(bob, "typing", {}, "b1")
        assert (await reply_to(bob, "b1"))["type"] == "published"
        await alice.send(json.dumps({"type": "ping", "ref": "p"}))
        assert (await reply_to(alice, "p"))["type"] == "pong"


async def test_a_dropped_message_and_a_slow_handler(serve: Any) -> None:
    server = await serve(make_realtime())
    async with (
        server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice,
        server.connect("/ws/rooms.a", additional_headers=who("bob")) as bob,
    ):
        await recv_json(alice)
        await recv_json(bob)
        await publish(alice, "chat", {"text": "drop"}, "d1")
        reply = await reply_to(alice, "d1")
        assert reply == {**reply, "type": "published", "data": {"id": None, "dropped": True}}
        assert await refusal(alice, "nope", {}, "n1") == "handler_failed"  # unencodable
        assert await refusal(alice, "slow", {"sleep": 2}, "s1") == "handler_timeout"
        await no_message(bob, 0.3)  # neither reached bob
        # Pings are answered while a handler runs: handlers do not hold up the reader.
        await publish(alice, "slow", {"sleep": 0.2}, "s2")
        await alice.send(json.dumps({"type": "ping", "ref": "p"}))
        first = await recv_json(alice)
        assert first["ref"] == "p"
        assert (await reply_to(alice, "s2"))["type"] == "published"


async def test_handler_calls_of_one_connection_are_bounded(serve: Any) -> None:
    rooms = {**ROOMS, "client_messages": {**ROOMS["client_messages"], "rate": {"messages": 50}}}
    server = await serve(make_realtime(rooms))
    async with server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice:
        await recv_json(alice)
        # 8 at once (one runs for 0.25 s, 7 wait), the rest are refused at once.
        for i in range(12):
            await publish(alice, "slow", {"sleep": 0.25}, f"s{i}")
        order: list[str] = []
        codes: dict[str, str] = {}
        while len(codes) < 12:
            reply = await recv_json(alice, timeout=10)
            if reply["type"] in ("published", "error"):
                order.append(reply["ref"])
                codes[reply["ref"]] = reply["data"].get("code", "ok")
        assert [codes[f"s{i}"] for i in range(12)] == ["ok"] * 8 + ["busy"] * 4
        # The ones accepted ran one at a time, in the order they came.
        assert [r for r in order if codes[r] == "ok"] == [f"s{i}" for i in range(8)]


async def test_echo_sends_the_message_back(serve: Any) -> None:
    server = await serve(make_realtime())
    async with server.connect("/ws/echo.a", additional_headers=who("alice")) as alice:
        await recv_json(alice)
        await publish(alice, "ping2", 1, "e1", channel="echo.a")
        event = await recv_until(alice, "ping2")
        assert event["from"]["user_id"] == "alice" and event["data"] == 1


def test_a_handler_needs_a_channel_and_type_that_take_messages() -> None:
    realtime = make_realtime()
    with pytest.raises(ConfigError, match="not one of"):
        realtime.on_message("rooms.{room}", "shout")(lambda *a: None)
    with pytest.raises(ConfigError, match="takes no client messages"):
        realtime.on_message("logs", "x")(lambda *a: None)


def test_config_errors_name_the_key() -> None:
    for messages, path in (
        ({"types": []}, "client_messages.types"),
        ({"types": ["pong"]}, "client_messages.types[0]"),
        ({"types": ["a"], "history": ["b"]}, "client_messages.history[0]"),
    ):
        with pytest.raises(ConfigError) as info:
            parse_config({"channels": {"r": {"client_messages": messages}}})
        assert info.value.path == f"realtime.channels.r.{path}", messages
