"""The wire protocol through a real server and real websockets clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .conftest import make_realtime, no_message, recv_json
from .rawclient import RawClient


async def test_connection_established(serve: Any) -> None:
    """The first message names the client, its channels, user and role."""
    server = await serve(make_realtime())
    async with server.connect("/ws/logs") as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"
        assert "channel" not in hello and "id" not in hello
        data = hello["data"]
        assert data["status"] == "connected"
        assert data["client_id"].startswith("c_")
        assert data["channels"] == ["logs"]
        assert data["user_id"] is None and data["role"] is None
        assert "recovered" not in data
    async with server.connect("/ws") as ws:
        assert (await recv_json(ws))["data"]["channels"] == []


async def test_events_are_envelopes_filtered_by_query(serve: Any) -> None:
    """Events arrive as envelopes; query filters pick which."""
    server = await serve(make_realtime())
    realtime = server.realtime
    async with server.connect("/ws/logs?level=warn&component=db,api") as ws:
        await recv_json(ws)
        await realtime.publish("logs", "log_update", {"level": "info", "component": "db"})
        await realtime.publish("logs", "log_update", {"level": "error", "component": "web"})
        result = await realtime.publish(
            "logs", "log_update", {"level": "critical", "component": "api"}
        )
        event = await recv_json(ws)
        assert event["id"] == result.id
        assert event["type"] == "log_update" and event["channel"] == "logs"
        assert event["data"] == {"level": "critical", "component": "api"}
        assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == 24
        await no_message(ws)


async def test_types_filter(serve: Any) -> None:
    """types=a,b on any channel selects event types."""
    server = await serve(make_realtime())
    async with server.connect("/ws/stats?types=stats_update") as ws:
        await recv_json(ws)
        await server.realtime.publish("stats", "other", {})
        await server.realtime.publish("stats", "stats_update", {"n": 1})
        assert (await recv_json(ws))["data"] == {"n": 1}


async def test_general_endpoint_channels_and_split_filters(serve: Any) -> None:
    """?channels=logs,stats&level=error: the filter applies to logs only."""
    server = await serve(make_realtime())
    realtime = server.realtime
    async with server.connect("/ws?channels=logs,stats&level=error") as ws:
        assert (await recv_json(ws))["data"]["channels"] == ["logs", "stats"]
        await realtime.publish("logs", "log", {"level": "info"})
        await realtime.publish("stats", "s", {"level": "info"})
        await realtime.publish("logs", "log", {"level": "error"})
        got = [
            (m["channel"], m["data"]["level"]) for m in [await recv_json(ws), await recv_json(ws)]
        ]
        assert got == [("stats", "info"), ("logs", "error")]


async def test_subscribe_unsubscribe_messages(serve: Any) -> None:
    """subscribe adds channels with a filter; unsubscribe lists what it removed."""
    server = await serve(make_realtime())
    realtime = server.realtime
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "channels": ["stats", "alerts"],
                    "filter": {"severity": "high"},
                }
            )
        )
        reply = await recv_json(ws)
        assert reply["type"] == "subscribed"
        assert reply["data"] == {"channels": ["stats", "alerts"]}
        await realtime.publish("alerts", "alert", {"severity": "medium"})
        await realtime.publish("alerts", "alert", {"severity": "critical"})
        await realtime.publish("stats", "s", {})
        assert (await recv_json(ws))["data"] == {"severity": "critical"}
        assert (await recv_json(ws))["channel"] == "stats"
        await ws.send(json.dumps({"type": "unsubscribe", "channels": ["stats", "logs"]}))
        reply = await recv_json(ws)
        assert reply == {**reply, "type": "unsubscribed", "data": {"channels": ["stats"]}}
        await realtime.publish("stats", "s", {})
        await no_message(ws)
        assert server.realtime.stats()["by_channel"] == {"alerts": 1}
        await ws.send(json.dumps({"type": "unsubscribe", "channels": ["all"]}))
        assert (await recv_json(ws))["data"] == {"channels": ["alerts"]}


async def test_subscribe_with_positions_gives_a_resume_point(serve: Any) -> None:
    """``"positions": true`` adds where each channel stood (``epoch:0`` before its first
    event); resuming from it gives every event published since, none before."""
    server = await serve(make_realtime())
    realtime = server.realtime
    await realtime.publish("logs", "log_update", {"level": "error", "n": 0})
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send(
            json.dumps({"type": "subscribe", "channels": ["logs", "alerts"], "positions": True})
        )
        reply = await recv_json(ws)
        epoch = realtime.hub.backplane.epoch  # type: ignore[attr-defined]
        assert reply["data"] == {
            "channels": ["logs", "alerts"],
            "positions": {"logs": f"{epoch}:1", "alerts": f"{epoch}:0"},
        }
    # Missed while away: resumed from the positions.
    one = await realtime.publish("logs", "log_update", {"level": "info", "n": 1})
    two = await realtime.publish("alerts", "alert", {"severity": "low"})
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        since = {"logs": f"{epoch}:1", "alerts": f"{epoch}:0"}
        await ws.send(
            json.dumps({"type": "subscribe", "channels": ["logs", "alerts"], "since": since})
        )
        reply = await recv_json(ws)
        assert reply["data"]["recovered"] == {"logs": True, "alerts": True}
        got = {(await recv_json(ws))["id"] for _ in range(2)}
        assert got == {one.id, two.id}
        await no_message(ws)


async def test_subscribe_all(serve: Any) -> None:
    """'all' is every configured channel."""
    server = await serve(make_realtime())
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send('{"type": "subscribe", "channels": ["all"]}')
        reply = await recv_json(ws)
        assert reply["data"]["channels"] == ["logs", "stats", "alerts", "requests"]


async def test_resubscribe_replaces_filter(serve: Any) -> None:
    """Subscribing again to a channel replaces its filter; no duplicate deliveries."""
    server = await serve(make_realtime())
    async with server.connect("/ws/logs?level=error") as ws:
        await recv_json(ws)
        await ws.send('{"type": "subscribe", "channels": ["logs"], "filter": {"level": "debug"}}')
        await recv_json(ws)
        await server.realtime.publish("logs", "log", {"level": "info"})
        assert (await recv_json(ws))["data"] == {"level": "info"}
        await no_message(ws)


async def test_ping_pong(serve: Any) -> None:
    """An app-level ping gets a pong with the client id and a timestamp."""
    server = await serve(make_realtime())
    async with server.connect("/ws") as ws:
        client_id = (await recv_json(ws))["data"]["client_id"]
        await ws.send('{"type": "ping"}')
        pong = await recv_json(ws)
        assert pong["type"] == "pong"
        assert pong["data"]["client_id"] == client_id
        assert pong["data"]["timestamp"].endswith("Z")


async def test_bad_frames_get_errors_and_the_connection_stays_open(serve: Any) -> None:
    """Every bad frame gets an error naming the problem; the connection keeps working."""
    server = await serve(make_realtime())
    cases: list[tuple[str | bytes, str, str]] = [
        ("{oops", "invalid_json", "malformed JSON"),
        ("[1, 2]", "invalid_message", "JSON object"),
        ("42", "invalid_message", "JSON object"),
        ('{"type": "shout"}', "unknown_type", "'shout'"),
        ('{"no": "type"}', "invalid_message", "'type'"),
        ('{"type": "subscribe", "channels": "logs"}', "invalid_message", "$.channels"),
        ('{"type": "subscribe", "channels": []}', "invalid_message", "at least one channel"),
        (b"\x00\x01", "binary_not_supported", "binary"),
        ('{"type": "subscribe", "channels": ["nope"]}', "unknown_channel", "'nope'"),
        ('{"type": "unsubscribe", "channels": ["nope"]}', "unknown_channel", "'nope'"),
        ('{"type": "unsubscribe", "channels": ["all", "nope"]}', "unknown_channel", "'nope'"),
        (
            '{"type": "subscribe", "channels": ["logs"], "filter": {"colour": "red"}}',
            "unknown_filter",
            "'colour'",
        ),
        (
            '{"type": "subscribe", "channels": ["logs"], "filter": {"level": "loud"}}',
            "bad_filter_value",
            "'level' must be one of",
        ),
        (
            '{"type": "subscribe", "channels": ["logs"], "since": {"logs": "x"}}',
            "bad_since",
            "not an event id",
        ),
    ]
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        for frame, code, words in cases:
            await ws.send(frame)
            error = await recv_json(ws)
            assert error["type"] == "error", frame
            assert error["data"]["code"] == code, frame
            assert words in error["data"]["message"], (frame, error)
        # Nothing was subscribed by the bad messages, and the connection still works.
        assert server.realtime.stats()["by_channel"] == {}
        await ws.send('{"type": "ping"}')
        assert (await recv_json(ws))["type"] == "pong"


async def test_initial_state_last(serve: Any) -> None:
    """initial: last gives a new subscriber the channel's last event as initial_state."""
    server = await serve(make_realtime())
    async with server.connect("/ws/stats") as ws:
        await recv_json(ws)
        await no_message(ws, 0.1)  # nothing published yet: no initial_state
    await server.realtime.publish("stats", "stats_update", {"n": 1})
    await server.realtime.publish("stats", "stats_update", {"n": 2})
    async with server.connect("/ws/stats") as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        initial = await recv_json(ws)
        assert initial["type"] == "initial_state"
        assert initial["channel"] == "stats"
        assert initial["data"] == {"n": 2}
        assert "id" not in initial
        await server.realtime.publish("stats", "stats_update", {"n": 3})
        assert (await recv_json(ws))["data"] == {"n": 3}


async def test_initial_state_hook_wins(serve: Any) -> None:
    """@realtime.initial_state(channel) runs with the request; its result comes first."""
    realtime = make_realtime()
    seen: list[str] = []

    @realtime.initial_state("stats")
    async def snapshot(request: Any) -> dict[str, Any]:
        seen.append(request.path)
        return {"totalLogs": 10500}

    server = await serve(realtime)
    await realtime.publish("stats", "stats_update", {"n": 1})
    async with server.connect("/ws") as ws:
        await recv_json(ws)
        await ws.send('{"type": "subscribe", "channels": ["stats", "logs"]}')
        assert (await recv_json(ws))["type"] == "subscribed"
        initial = await recv_json(ws)
        assert initial == {
            **initial,
            "type": "initial_state",
            "channel": "stats",
            "data": {"totalLogs": 10500},
        }
        await no_message(ws, 0.1)  # logs has neither hook nor initial: last
    assert seen == ["/ws"]


async def test_client_closing_frees_everything(serve: Any) -> None:
    """A client that leaves is forgotten at once: no leak in rooms or counts."""
    server = await serve(make_realtime())
    for _ in range(3):
        async with server.connect("/ws?channels=all") as ws:
            await recv_json(ws)
    async with server.connect("/ws/logs") as probe:
        await recv_json(probe)
        stats = server.realtime.stats()
        assert stats["total_clients"] == 1
        assert stats["by_channel"] == {"logs": 1}
        assert server.realtime.hub._warming == {}


async def test_fragmented_messages_are_reassembled(serve: Any) -> None:
    """A message split into continuation frames is one message."""
    server = await serve(make_realtime())
    client = await RawClient.connect(server.port, "/ws")
    try:
        await client.read_for(0.2)  # connection_established
        client.protocol.send_text(b'{"type": "pi', fin=False)
        client.protocol.send_continuation(b'ng"', fin=False)
        client.protocol.send_continuation(b"}", fin=True)
        await client._send_pending()
        await client.read_for(0.3)
        assert [m["type"] for m in client.messages()] == ["connection_established", "pong"]
    finally:
        client.close()


async def test_invalid_utf8_closes_1007(serve: Any) -> None:
    """A text frame that is not UTF-8 closes the connection with 1007 and a reason."""
    server = await serve(make_realtime())
    client = await RawClient.connect(server.port, "/ws")
    try:
        await client.read_for(0.2)
        await client.send_text_bytes(b'{"type": "ping", "x": "\xff\xfe"}')
        await client.read_until_closed(answer_close=True)
        assert client.close_code == 1007
        assert "UTF-8" in (client.close_reason or "")
        await asyncio.sleep(0.05)
        assert server.realtime.stats()["total_clients"] == 0
    finally:
        client.close()


async def test_messages_sent_back_to_back_are_all_answered_in_order(serve: Any) -> None:
    """Many messages in one TCP write, while the server is busy with the first: each
    is handled, in order, and the connection then closes cleanly."""
    server = await serve(make_realtime(client_rate_limit={"messages": 1000, "per": "1s"}))
    client = await RawClient.connect(server.port, "/ws")
    try:
        await client.read_for(0.2)
        for i in range(200):
            verb = "subscribe" if i < 100 else "unsubscribe"
            channel = "logs" if i % 2 == 0 else "stats"
            client.protocol.send_text(json.dumps({"type": verb, "channels": [channel]}).encode())
        await client._send_pending()  # all in one go
        await client.read_for(1.0)
        replies = [(m["type"], m["data"]["channels"]) for m in client.messages()][1:]
        channels = [["logs"] if i % 2 == 0 else ["stats"] for i in range(200)]
        assert replies == [
            *(("subscribed", channels[i]) for i in range(100)),
            ("unsubscribed", ["logs"]),
            ("unsubscribed", ["stats"]),
            *(("unsubscribed", []) for _ in range(98)),  # no longer subscribed
        ]
        client.protocol.send_close(1000, "bye")
        await client._send_pending()
        await client.read_until_closed(answer_close=True)
        assert client.close_code == 1000
        await asyncio.sleep(0.05)
        stats = server.realtime.stats()
        assert stats["total_clients"] == 0 and stats["by_channel"] == {}
    finally:
        client.close()
