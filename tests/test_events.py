"""events.py: ids, envelopes, client-message decoding. No event loop."""

from __future__ import annotations

import json

import msgspec
import pytest

from sanic_realtime.events import Event, EventId, utc_timestamp
from sanic_realtime.exceptions import BadMessage
from sanic_realtime.protocol import (
    InitialState,
    Ping,
    Pong,
    PongData,
    Subscribe,
    Unsubscribe,
    decode_client_message,
    encode,
    too_deep,
)


def test_event_id_round_trip() -> None:
    """Ids print as epoch:offset and parse back."""
    assert str(EventId("k3x9", 42)) == "k3x9:42"
    assert EventId.parse("k3x9:42") == EventId("k3x9", 42)


@pytest.mark.parametrize("bad", ["", "42", "k3x9:", ":4", "k3x9:-1", "k3x9:4a", "a:" + "9" * 20])
def test_bad_event_ids(bad: str) -> None:
    """Garbage is refused with the text quoted."""
    with pytest.raises(ValueError, match="not an event id"):
        EventId.parse(bad)


def test_envelope_shape_and_order() -> None:
    """An event's envelope has type, channel, id, timestamp, data, in that order."""
    event = Event(
        "logs",
        "log_update",
        EventId("k3x9", 42),
        1795773600.123,
        {"level": "error", "message": "db down"},
    )
    text = event.payload.decode()
    assert text == (
        '{"type":"log_update","channel":"logs","id":"k3x9:42",'
        '"timestamp":"2026-11-27T10:00:00.123Z","data":{"level":"error","message":"db down"}}'
    )


def test_data_may_be_a_struct_or_none() -> None:
    """Anything msgspec encodes may be data; None stays a JSON null."""

    class Point(msgspec.Struct):
        x: int

    assert json.loads(Event("a", "t", EventId("e", 1), 0, Point(3)).payload)["data"] == {"x": 3}
    assert json.loads(Event("a", "t", EventId("e", 1), 0, None).payload)["data"] is None


def test_unencodable_data_raises() -> None:
    """Data msgspec cannot encode is a TypeError at publish time, not a broken frame."""
    with pytest.raises(TypeError):
        Event("a", "t", EventId("e", 1), 0, {"x": object()})


def test_control_has_no_channel_or_id() -> None:
    """Control messages leave channel and id out, unless a channel is given."""
    pong = Pong(timestamp="t", data=PongData(client_id="c", timestamp="t"))
    assert json.loads(encode(pong)) == {
        "type": "pong",
        "timestamp": "t",
        "data": {"client_id": "c", "timestamp": "t"},
    }
    initial = encode(InitialState(channel="stats", timestamp="t", data=5))
    assert initial == b'{"type":"initial_state","channel":"stats","timestamp":"t","data":5}'


def test_utc_timestamp_has_milliseconds() -> None:
    """Timestamps are RFC 3339 UTC with milliseconds."""
    assert utc_timestamp(0.5) == "1970-01-01T00:00:00.500Z"


def test_decode_each_client_message() -> None:
    """subscribe, unsubscribe and ping decode to their Structs."""
    sub = decode_client_message(
        '{"type":"subscribe","channels":["stats","alerts"],"filter":{"severity":"high"},'
        '"since":{"alerts":"k3x9:40"}}'
    )
    assert sub == Subscribe(
        channels=["stats", "alerts"], filter={"severity": "high"}, since={"alerts": "k3x9:40"}
    )
    assert decode_client_message('{"type":"unsubscribe","channels":["stats"]}') == Unsubscribe(
        channels=["stats"]
    )
    assert decode_client_message(b'{"type":"ping"}') == Ping()


@pytest.mark.parametrize(
    ("frame", "code", "words"),
    [
        ("{nope", "invalid_json", "malformed JSON"),
        ("[1,2]", "invalid_message", "must be a JSON object, got list"),
        ('"subscribe"', "invalid_message", "got str"),
        ('{"channels":[]}', "invalid_message", "needs a string 'type'"),
        ('{"type":"shout"}', "unknown_type", "unknown message type 'shout'"),
        ('{"type":"subscribe"}', "invalid_message", "missing required field `channels`"),
        ('{"type":"subscribe","channels":"logs"}', "invalid_message", "$.channels"),
        ('{"type":"subscribe","channels":["a"],"since":{"a":1}}', "invalid_message", "$.since"),
        ('{"type":"ping","extra":1}', "invalid_message", "unknown field `extra`"),
    ],
)
def test_bad_client_messages(frame: str, code: str, words: str) -> None:
    """Each kind of mistake has its own code and a message naming what was wrong."""
    with pytest.raises(BadMessage) as info:
        decode_client_message(frame)
    assert info.value.code == code
    assert words in info.value.message


def test_too_deep_counts_arrays_and_objects_without_recursing() -> None:
    assert not too_deep(1, 0) and not too_deep("x" * 10, 0)
    assert not too_deep({"a": [1, {"b": 2}]}, 3)
    assert too_deep({"a": [1, {"b": 2}]}, 2)
    assert too_deep([], 0) and not too_deep([], 1)
    deep: list[object] = []
    node = deep
    for _ in range(100_000):  # far past the recursion limit: still answered
        child: list[object] = []
        node.append(child)
        node = child
    assert too_deep(deep, 128) and not too_deep(deep, 100_001)
