"""Presence through a real server (memory backplane): per user across tabs, anonymous
counts, leave_delay (a reload announces nothing), the in-band query and its rights, the
admin route, ``Realtime.presence``, ``ref`` on every reply, figures. The pure table is
tested without a loop; Redis and several workers are in test_presence_redis.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from sanic_realtime import Realtime
from sanic_realtime.config import parse_config
from sanic_realtime.presence import PresenceTable

from .conftest import no_message, recv_json, recv_until
from .tokens import SECRET, bearer, token

CHANNELS: dict[str, Any] = {
    "logs": {},
    "rooms.{room}": {"presence": {"events": True, "leave_delay": "300ms"}},
    "big.{room}": {"presence": {"list": False}},
    "quiet.{room}": {"presence": {"events": False, "leave_delay": "0s"}},
}


#: docs/how-to/chat: the presence how-to's app
HOWTO = Path(__file__).resolve().parent.parent / "docs" / "how-to" / "chat"


def jwt_realtime(**overrides: Any) -> Realtime:
    return Realtime(
        parse_config(
            {"channels": CHANNELS, "auth": {"mode": "jwt", "jwt_secret": SECRET, "anonymous": True}}
            | overrides
        )
    )


def who(user: str, role: str = "member") -> dict[str, str]:
    return bearer(token(user, role))


async def query(ws: Any, channel: str, ref: str = "q1") -> dict[str, Any]:
    await ws.send(json.dumps({"type": "presence", "channel": channel, "ref": ref}))
    reply = await recv_until(ws, "presence")
    assert reply["ref"] == ref
    return reply


def users_of(reply: dict[str, Any]) -> dict[str, int]:
    return {u["user_id"]: u["connections"] for u in reply["data"]["users"]}


# ------------------------------------------------------------------ the pure table


def test_the_table_counts_users_once_and_delays_their_leave() -> None:
    table = PresenceTable()
    assert table.add("r", "alice", "member", 1.0) is True
    assert table.add("r", "alice", "member", 2.0) is False  # a second tab
    assert table.add("r", None, None, 2.0) is False  # anonymous: counted, not listed
    assert table.remove("r", "alice", 3.0, 2.0) is None  # one tab left
    assert table.remove("r", "alice", 3.0, 2.0) == 5.0  # the last: due at 5.0
    assert table.due(4.9) == []
    assert table.add("r", "alice", "member", 4.0) is False  # back in time: no join
    assert table.due(10.0) == []  # and no leave
    assert table.remove("r", "alice", 11.0, 2.0) == 13.0
    assert table.snapshot("r", True).users[0].connections == 0  # listed until due
    assert table.due(13.0) == [("r", "alice", "member")]
    snap = table.snapshot("r", True)
    assert (snap.users, snap.count, snap.anonymous) == ([], 0, 1)
    assert table.remove("r", None, 14.0, 2.0) is None
    assert list(table.counts()) == []  # nothing left behind


def test_the_list_is_bounded() -> None:
    table = PresenceTable()
    for i in range(1500):
        table.add("r", f"u{i:04d}", None, 1.0)
    snap = table.snapshot("r", True)
    assert (len(snap.users or []), snap.count, snap.truncated) == (1000, 1500, True)
    assert snap.users is not None and snap.users[0].user_id == "u0000"
    counts = table.snapshot("r", False)
    assert (counts.users, counts.count) == (None, 1500)


# ------------------------------------------------------------------ through a server


async def test_joins_and_leaves_are_per_user_across_tabs(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with (
        server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice,
        server.connect("/ws/rooms.a", additional_headers=who("bob", "admin")) as bob,
    ):
        await recv_json(alice)
        join = await recv_until(alice, "presence_join")
        assert join["channel"] == "rooms.a"
        assert join["data"] == {"user_id": "alice", "role": "member"}
        assert set(join) == {"type", "channel", "timestamp", "data"}
        assert (await recv_until(alice, "presence_join"))["data"]["user_id"] == "bob"
        await recv_json(bob)
        assert (await recv_until(bob, "presence_join"))["data"]["user_id"] == "bob"
        # A second tab of alice's: no join; counted.
        async with server.connect("/ws/rooms.a", additional_headers=who("alice")) as tab:
            await recv_json(tab)
            reply = await query(bob, "rooms.a")
            assert users_of(reply) == {"alice": 2, "bob": 1}
            assert (reply["data"]["count"], reply["data"]["anonymous"]) == (2, 0)
            await no_message(bob, 0.2)
        # The tab closed, alice is still here: no leave.
        await no_message(bob, 0.5)
        assert users_of(await query(bob, "rooms.a", "q2")) == {"alice": 1, "bob": 1}
    # Both gone: the server forgets them after the delay.
    await asyncio.sleep(0.5)
    assert server.realtime.stats()["present_users"] == {}
    assert (await server.realtime.presence("rooms.a")).count == 0


async def test_a_reload_within_leave_delay_announces_nothing(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with server.connect("/ws/rooms.a", additional_headers=who("bob")) as bob:
        await recv_json(bob)
        await recv_until(bob, "presence_join")
        ws = await server.connect("/ws/rooms.a", additional_headers=who("alice"))
        await recv_json(ws)
        assert (await recv_until(bob, "presence_join"))["data"]["user_id"] == "alice"
        await ws.close()  # the reload: gone, and back within 300 ms
        async with server.connect("/ws/rooms.a", additional_headers=who("alice")) as again:
            await recv_json(again)
            await no_message(bob, 0.6)  # no leave, no join
            reply = await query(bob, "rooms.a")
            assert users_of(reply) == {"alice": 1, "bob": 1}
        # Gone for good: one leave, after the delay.
        leave = await recv_until(bob, "presence_leave", timeout=3)
        assert leave["data"] == {"user_id": "alice", "role": "member"}
        await no_message(bob, 0.5)


async def test_anonymous_connections_are_counted_not_listed(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with (
        server.connect("/ws/rooms.a") as anon,
        server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice,
    ):
        await recv_json(anon)
        await recv_json(alice)
        reply = await query(alice, "rooms.a")
        assert users_of(reply) == {"alice": 1}
        assert (reply["data"]["count"], reply["data"]["anonymous"]) == (1, 1)
        user = reply["data"]["users"][0]
        assert set(user) == {"user_id", "role", "connections", "since"}


async def test_who_may_ask(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with (
        server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice,
        server.connect("/ws/logs", additional_headers=who("eve")) as eve,
        server.connect("/ws/logs", additional_headers=who("root", "admin")) as admin,
    ):
        for ws in (alice, eve, admin):
            await recv_json(ws)
        await eve.send(json.dumps({"type": "presence", "channel": "rooms.a", "ref": "e1"}))
        error = await recv_until(eve, "error")
        assert (error["ref"], error["data"]["code"]) == ("e1", "forbidden")
        assert "rooms.a" in error["data"]["message"]
        assert users_of(await query(admin, "rooms.a")) == {"alice": 1}  # admins may
        for channel, code in (
            ("logs", "no_presence"),
            ("nope", "unknown_channel"),
            ("rooms.a b", "invalid_channel"),
        ):
            await admin.send(json.dumps({"type": "presence", "channel": channel, "ref": "x"}))
            error = await recv_until(admin, "error")
            assert (error["ref"], error["data"]["code"]) == ("x", code), channel


async def test_list_false_answers_counts_only(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with server.connect("/ws/big.a", additional_headers=who("alice")) as alice:
        await recv_json(alice)
        reply = await query(alice, "big.a")
        assert reply["data"] == {"users": None, "count": 1, "anonymous": 0}


async def test_events_false_sends_no_joins(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with server.connect("/ws/quiet.a", additional_headers=who("alice")) as alice:
        await recv_json(alice)
        async with server.connect("/ws/quiet.a", additional_headers=who("bob")):
            await no_message(alice, 0.3)
            assert users_of(await query(alice, "quiet.a")) == {"alice": 1, "bob": 1}
        await no_message(alice, 0.3)
        assert users_of(await query(alice, "quiet.a", "q2")) == {"alice": 1}


async def test_the_admin_route_and_realtime_presence(serve: Any) -> None:
    realtime = jwt_realtime()
    server = await serve(realtime)
    admin = who("root", "admin")
    async with server.connect("/ws/rooms.a", additional_headers=who("alice")) as alice:
        await recv_json(alice)
        response = await server.http.get("/admin/ws/presence/rooms.a", headers=admin)
        assert response.status_code == 200
        body = response.json()
        assert (body["channel"], body["count"], body["anonymous"]) == ("rooms.a", 1, 0)
        assert [u["user_id"] for u in body["users"]] == ["alice"]
        assert (await realtime.presence("rooms.a")).users[0].user_id == "alice"  # type: ignore[index]
        stats = realtime.stats()
        assert stats["present_users"] == {"rooms.{room}": 1}
        for path, status, code in (
            ("/admin/ws/presence/logs", 400, "no_presence"),
            ("/admin/ws/presence/nope", 404, "unknown_channel"),
        ):
            response = await server.http.get(path, headers=admin)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        response = await server.http.get("/admin/ws/presence/rooms.a", headers=who("alice"))
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
        response = await server.http.get("/admin/ws/presence/rooms.a")
        assert response.status_code == 401


async def test_every_reply_carries_the_ref(serve: Any) -> None:
    server = await serve(jwt_realtime())
    async with server.connect("/ws", additional_headers=who("alice")) as ws:
        await recv_json(ws)
        sends = [
            ({"type": "subscribe", "channels": ["rooms.a"], "ref": "s1"}, "subscribed"),
            ({"type": "ping", "ref": "p1"}, "pong"),
            ({"type": "presence", "channel": "rooms.a", "ref": "pr1"}, "presence"),
            ({"type": "refresh", "token": token("alice", "member"), "ref": "r1"}, "refreshed"),
            ({"type": "unsubscribe", "channels": ["rooms.a"], "ref": "u1"}, "unsubscribed"),
            ({"type": "subscribe", "channels": ["nope"], "ref": "s2"}, "error"),
            ({"type": "bogus", "ref": "b1"}, "error"),
            ({"type": "ping", "ref": 7}, "error"),  # a ref is a string
        ]
        for message, reply_type in sends:
            await ws.send(json.dumps(message))
            reply = await recv_until(ws, reply_type)
            if isinstance(message["ref"], str):
                assert reply["ref"] == message["ref"], message
            else:
                assert "ref" not in reply and reply["data"]["code"] == "invalid_message"
        await ws.send(json.dumps({"type": "ping"}))
        assert "ref" not in await recv_until(ws, "pong")


# ------------------------------------------------------------------ the how-to's app


async def test_the_chat_how_to(monkeypatch: Any) -> None:
    """docs/how-to/presence-chat.md: its app (the team check, the chat handler, the
    presence route) as the page says it behaves."""
    import importlib.util

    from sanic_realtime.testing import LiveApp

    here = HOWTO
    monkeypatch.chdir(here)
    monkeypatch.setenv("CHAT_JWT_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location("chat_howto_app", here / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = await LiveApp(module.app, module.realtime).start()
    try:
        url = server.ws_url("/ws/rooms.ops.lobby")
        from websockets.asyncio.client import connect

        async with (
            connect(url, additional_headers=who("alice")) as alice,
            connect(url, additional_headers=who("bob")) as bob,
        ):
            await recv_json(alice)
            await recv_json(bob)
            with pytest.raises(InvalidStatus) as refused:  # carol is in sales
                async with connect(url, additional_headers=who("carol")):
                    pass
            assert refused.value.response.status_code == 403
            await alice.send(
                json.dumps(
                    {
                        "type": "publish",
                        "channel": "rooms.ops.lobby",
                        "event": "typing",
                        "data": {},
                        "ref": "t1",
                    }
                )
            )
            typing = await recv_until(bob, "typing")
            assert (typing["id"], typing["from"]["user_id"]) == (None, "alice")
            for text, ref in (("  hello  ", "c1"), ("   ", "c2"), ("x" * 501, "c3")):
                await alice.send(
                    json.dumps(
                        {
                            "type": "publish",
                            "channel": "rooms.ops.lobby",
                            "event": "chat",
                            "data": {"text": text},
                            "ref": ref,
                        }
                    )
                )
            line = await recv_until(bob, "chat")
            assert line["data"] == {"text": "hello"} and line["id"]
            replies = {}
            while len(replies) < 3:
                message = await recv_json(alice)
                if message.get("ref") in ("c1", "c2", "c3"):
                    replies[message["ref"]] = message
            assert replies["c2"]["data"] == {"id": None, "dropped": True}
            assert replies["c3"]["data"]["code"] == "too_long"
            async with httpx.AsyncClient(base_url=server.url) as http:
                response = await http.get("/rooms/ops/lobby/here")
            assert response.json() == {"count": 2, "users": ["alice", "bob"]}
    finally:
        await server.stop()
        from sanic import Sanic

        Sanic._app_registry.pop("chat", None)
