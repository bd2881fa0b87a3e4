"""The Python client's presence and client messages, through a real server: ``presence()``,
``on("presence_join")`` / ``on("presence_leave")``, ``publish()`` (ids, refusals, a
handler's drop), ``event.sender``, replies matched by ``ref`` (out of order too), timeouts,
the bound on pending requests, requests failed by a lost connection, and client messages
without an id that never become the resume position."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from sanic_realtime import Realtime
from sanic_realtime.client import (
    Dropped,
    Event,
    NoReply,
    PresenceData,
    RealtimeClient,
    RequestFailed,
    Sender,
)
from sanic_realtime.config import parse_config
from sanic_realtime.testing import LiveApp

from .test_client import FAST, States, take, until
from .tokens import SECRET, token

ID = re.compile(r"^.+:[0-9]+$")

CHANNELS: dict[str, Any] = {
    "rooms.{room}": {
        "presence": {"leave_delay": "300ms"},
        "client_messages": {
            "types": ["typing", "chat", "moderated", "slow"],
            "history": ["chat", "moderated", "slow"],
            "rate": {"messages": 1000, "per": "1s"},
            "handler_timeout": "60s",
        },
    },
    "plain.{room}": {"client_messages": {"types": ["chat"]}},
    "logs": {},
}


class Gate:
    """The ``slow`` handler: it waits until the test opens the gate; ``calls`` counts
    the calls begun."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.calls = 0


def rooms_realtime(gate: Gate | None = None) -> Realtime:
    """JWT auth (anonymous connections allowed), a presence channel taking client
    messages, one taking messages without presence, and a plain one. ``moderated``
    messages saying "drop" are dropped; ``slow`` ones wait for ``gate``."""
    realtime = Realtime(
        parse_config(
            {
                "auth": {"mode": "jwt", "jwt_secret": SECRET, "anonymous": True},
                "channels": CHANNELS,
            }
        )
    )

    @realtime.on_message("rooms.{room}", "moderated")
    async def moderate(conn: Any, channel: str, params: dict[str, str], data: Any) -> Any:
        return None if data == {"text": "drop"} else data

    @realtime.on_message("rooms.{room}", "slow")
    async def slow(conn: Any, channel: str, params: dict[str, str], data: Any) -> Any:
        assert gate is not None
        gate.calls += 1
        await gate.open.wait()
        return data

    return realtime


def client(server: LiveApp, user: str | None, *channels: str, **options: Any) -> RealtimeClient:
    """A client of ``user`` (role member; None: anonymous) subscribed to ``channels``."""
    return RealtimeClient(
        server.ws_url("/ws"),
        channels=list(channels) or None,
        token=token(user, "admin" if user == "root" else "member") if user else None,
        **{**FAST, **options},
    )


class Seen:
    """What ``on(type)`` handlers received."""

    def __init__(self, client: RealtimeClient, *types: str) -> None:
        self.events: list[Event] = []
        for type in types:
            client.on(type, self.events.append)

    def users(self, type: str) -> list[str]:
        return [e.data["user_id"] for e in self.events if e.type == type]


# ------------------------------------------------------------------ presence


async def test_presence_lists_users_and_handlers_see_joins_and_leaves(serve: Any) -> None:
    server = await serve(rooms_realtime())
    alice = client(server, "alice", "rooms.a")
    seen = Seen(alice, "presence_join", "presence_leave")
    async with alice:
        await until(lambda: seen.users("presence_join") == ["alice"])
        async with client(server, "bob", "rooms.a"), client(server, None, "rooms.a"):
            await until(lambda: seen.users("presence_join") == ["alice", "bob"])
            info = await alice.presence("rooms.a")
            assert isinstance(info, PresenceData)
            assert info.users is not None
            assert [(u.user_id, u.role, u.connections) for u in info.users] == [
                ("alice", "member", 1),
                ("bob", "member", 1),
            ]
            assert all(u.since.endswith("Z") for u in info.users)
            # The anonymous connection is counted, not listed; no join announces it.
            assert (info.count, info.anonymous) == (2, 1) and not info.truncated
        # bob left: after leave_delay, alice's handler hears it; the anonymous one is not named.
        await until(lambda: seen.users("presence_leave") == ["bob"])
        join, leave = seen.events[1], seen.events[-1]
        assert (join.type, join.channel, join.id, join.sender) == (
            "presence_join",
            "rooms.a",
            None,
            None,
        )
        assert not join.is_event and leave.data == {"user_id": "bob", "role": "member"}
        assert (await alice.presence("rooms.a")).count == 1
        # The same messages reach `async for`, in order (after the joins).
        got = [e.type for e in await take(alice, 3)]
        assert got == ["presence_join", "presence_join", "presence_leave"]


async def test_presence_refusals_raise_with_the_servers_code(serve: Any) -> None:
    server = await serve(rooms_realtime())
    async with client(server, "carol", "rooms.a", "plain.a") as carol:
        with pytest.raises(RequestFailed) as forbidden:
            await carol.presence("rooms.b")  # not subscribed
        assert forbidden.value.code == "forbidden"
        assert "rooms.b" in forbidden.value.message
        with pytest.raises(RequestFailed) as none:
            await carol.presence("plain.a")
        assert none.value.code == "no_presence"
        with pytest.raises(RequestFailed) as unknown:
            await carol.presence("nope")
        assert unknown.value.code == "unknown_channel"
        # The refusals left the connection and the in-order replies as they were.
        assert await carol.subscribe("logs") == ["logs"]
        info = await carol.presence("rooms.a")
        assert info.users is not None and [u.user_id for u in info.users] == ["carol"]
        # An admin may ask without subscribing, and is not counted then.
        async with client(server, "root") as root:
            info = await root.presence("rooms.a")
            assert (info.count, info.anonymous) == (1, 0)


# ------------------------------------------------------------------ publish


async def test_publish_returns_ids_and_events_carry_the_sender(serve: Any) -> None:
    server = await serve(rooms_realtime())
    alice = client(server, "alice", "rooms.a")
    bob = client(server, "bob", "rooms.a")
    chats = Seen(bob, "chat", "typing")
    async with alice, bob:
        assert await alice.publish("rooms.a", "typing", {"on": True}) is None  # ephemeral
        chat_id = await alice.publish("rooms.a", "chat", {"text": "hi"})
        assert chat_id is not None and ID.match(chat_id)
        await until(lambda: len(chats.events) == 2)
        typing, chat = chats.events
        assert (typing.type, typing.id, typing.data) == ("typing", None, {"on": True})
        assert (chat.type, chat.id, chat.data) == ("chat", chat_id, {"text": "hi"})
        assert alice.status.client_id is not None
        sender = Sender(user_id="alice", client_id=alice.status.client_id)
        assert typing.sender == sender and chat.sender == sender
        assert typing.is_event and chat.is_event
        # Kept like other events; only the one with an id is a resume point.
        assert [e.type for e in bob.recent("rooms.a")] == ["typing", "chat"]
        assert bob.status.last_ids["rooms.a"] == chat_id
        # A server-side publish has no sender.
        await server.realtime.publish("rooms.a", "chat", {"text": "from the app"})
        await until(lambda: len(chats.events) == 3)
        assert chats.events[-1].sender is None
        # Without echo, alice got none of her own messages.
        assert [e.type for e in await take(alice, 3)] == [
            "presence_join",
            "presence_join",
            "chat",
        ]


async def test_publish_refusals_and_a_drop_raise_with_their_code(serve: Any) -> None:
    server = await serve(rooms_realtime())
    async with client(server, "alice", "rooms.a", "logs") as alice:
        with pytest.raises(RequestFailed) as unknown:
            await alice.publish("rooms.a", "shout", {"text": "HI"})
        assert unknown.value.code == "unknown_type"
        assert "typing, chat" in unknown.value.message
        with pytest.raises(RequestFailed) as elsewhere:
            await alice.publish("rooms.b", "chat", {"text": "hi"})  # not subscribed
        assert elsewhere.value.code == "forbidden"
        with pytest.raises(RequestFailed) as closed:
            await alice.publish("logs", "chat")  # takes no client messages
        assert closed.value.code == "forbidden"
        with pytest.raises(RequestFailed) as large:
            await alice.publish("rooms.a", "chat", {"text": "x" * 3000})
        assert large.value.code == "message_too_large"
        with pytest.raises(Dropped) as dropped:
            await alice.publish("rooms.a", "moderated", {"text": "drop"})
        assert dropped.value.code == "dropped" and isinstance(dropped.value, RequestFailed)
        kept = await alice.publish("rooms.a", "moderated", {"text": "fine"})
        assert kept is not None and ID.match(kept)
        with pytest.raises(TypeError):  # not JSON: raised before anything is sent
            await alice.publish("rooms.a", "chat", {"when": object()})
        assert alice.is_connected and alice._asking == 0


async def test_concurrent_requests_are_matched_by_ref(serve: Any) -> None:
    """Replies come out of order (a handler holds one back while later ones are
    answered): each call gets its own reply, and each id is its own message's."""
    gate = Gate()
    server = await serve(rooms_realtime(gate))
    alice = client(server, "alice", "rooms.a")
    bob = client(server, "bob", "rooms.a")
    received = Seen(bob, "chat", "typing", "slow")
    async with alice, bob:
        held = asyncio.create_task(alice.publish("rooms.a", "slow", {"n": -1}))
        await until(lambda: gate.calls == 1)
        calls = [
            alice.publish("rooms.a", "chat" if n % 2 else "typing", {"n": n}) for n in range(20)
        ]
        results = await asyncio.gather(*calls, alice.presence("rooms.a"), alice.presence("nope"),
                                       return_exceptions=True)  # fmt: skip
        *ids, info, refused = results
        assert not held.done()
        assert isinstance(info, PresenceData) and info.count == 2
        assert isinstance(refused, RequestFailed) and refused.code == "unknown_channel"
        assert [i is None for i in ids] == [n % 2 == 0 for n in range(20)]
        await until(lambda: len(received.events) == 20)
        by_n = {e.data["n"]: e.id for e in received.events}
        assert {n: i for n, i in enumerate(ids)} == by_n
        gate.open.set()
        slow_id = await held
        await until(lambda: len(received.events) == 21)
        assert received.events[-1].data == {"n": -1} and received.events[-1].id == slow_id


async def test_timeout_bound_and_lost_connection_fail_requests(serve: Any) -> None:
    gate = Gate()
    server = await serve(rooms_realtime(gate))
    realtime = server.realtime
    alice = client(server, "alice", "rooms.a", max_pending_requests=2)
    states = States(alice)
    everything: list[Event] = []
    alice.on("*", everything.append)
    try:
        with pytest.raises(NoReply) as idle:
            await alice.publish("rooms.a", "chat")
        assert idle.value.code == "not_connected"
        await alice.connect()
        with pytest.raises(NoReply) as late:
            await alice.publish("rooms.a", "slow", {"n": 0}, timeout=0.2)
        assert late.value.code == "request_timeout" and "within 0.2s" in late.value.message
        gate.open.set()
        # Handler calls run in order: the late reply to n=0 comes before n=1's, and
        # is dropped, not handed over.
        one = await alice.publish("rooms.a", "slow", {"n": 1})
        assert one is not None and ID.match(one)
        assert [e.type for e in everything] == ["presence_join"]
        # Two held back: a third is not sent.
        gate.open.clear()
        held = [asyncio.create_task(alice.publish("rooms.a", "slow", {"n": n})) for n in (2, 3)]
        await until(lambda: alice._asking == 2)
        with pytest.raises(NoReply) as bounded:
            await alice.presence("rooms.a")
        assert bounded.value.code == "too_many_requests"
        # The connection drops: both fail, and the client reconnects.
        for conn in list(realtime.hub.connections.values()):
            realtime.hub.abort(conn, 1011, "test drop")
        for task in held:
            with pytest.raises(NoReply) as lost:
                await task
            assert lost.value.code == "connection_lost"
        await states.wait("connected", 2)
        gate.open.set()
        assert (await alice.presence("rooms.a")).count == 1
        assert alice._by_ref == {} and alice._asking == 0
    finally:
        gate.open.set()
        await alice.close()


async def test_a_message_without_an_id_is_no_resume_point(serve: Any) -> None:
    """bob's last event is an ephemeral one (id null): his resume point stays the last
    event with an id, and a reconnect replays exactly what he missed."""
    server = await serve(rooms_realtime())
    realtime = server.realtime
    alice = client(server, "alice", "rooms.a")
    bob = client(server, "bob", "rooms.a")
    states = States(bob)
    got = Seen(bob, "chat", "typing")
    async with alice, bob:
        first = await alice.publish("rooms.a", "chat", {"n": 1})
        await alice.publish("rooms.a", "typing", {"n": 2})
        await until(lambda: len(got.events) == 2)
        assert bob.status.last_ids["rooms.a"] == first
        for conn in [c for c in realtime.hub.connections.values() if c.user_id == "bob"]:
            realtime.hub.abort(conn, 1011, "test drop")
        missed = await realtime.publish("rooms.a", "chat", {"n": 3})
        await states.wait("connected", 2)
        await until(lambda: len(got.events) == 3)
        assert bob.status.recovered == {"rooms.a": True}
        assert [(e.data["n"], e.id) for e in got.events] == [(1, first), (2, None), (3, missed.id)]
        assert bob.status.last_ids["rooms.a"] == missed.id
