"""Events, envelopes and client messages: what travels on the wire.

Pure: msgspec and the standard library only.

Server messages are one envelope shape (``type, channel, id, timestamp, data``);
control messages leave ``channel`` and ``id`` out. Each event is encoded once, when
it is published, and the same bytes go to every subscriber.

Client messages are a tagged union on ``type`` (``subscribe``, ``unsubscribe``,
``ping``), decoded in two steps so that each kind of mistake gets its own error
code: not JSON, or JSON nested more than :data:`MAX_JSON_DEPTH` levels deep
(``invalid_json``), not an object (``invalid_message``), an unknown ``type``
(``unknown_type``), wrong fields (``invalid_message`` naming the ``$.path``).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, NamedTuple

import msgspec

from .exceptions import BadMessage

__all__ = [
    "MAX_JSON_DEPTH",
    "NESTED_TOO_DEEPLY",
    "ClientMessage",
    "Event",
    "EventId",
    "Ping",
    "Refresh",
    "Subscribe",
    "Unsubscribe",
    "decode_client_message",
    "encode_control",
    "encode_event",
    "encode_event_parts",
    "too_deep",
    "utc_timestamp",
]


class EventId(NamedTuple):
    """``epoch:offset``. Offsets grow by one per event of a channel; the epoch names the
    history that gave them out, so ids from before a restart are never mistaken for new ones."""

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        """Parse ``"k3x9:42"``; ``ValueError`` says what is wrong."""
        epoch, sep, offset = text.rpartition(":")
        if not sep or not epoch or not offset.isdigit() or len(offset) > 19:
            raise ValueError(f"not an event id (expected 'epoch:offset', got {text!r})")
        return cls(epoch, int(offset))


def utc_timestamp(now: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-21T10:00:00.123Z``."""
    t = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class _Envelope(msgspec.Struct):
    # Field order is wire order.
    type: str
    channel: str | msgspec.UnsetType = msgspec.UNSET
    id: str | msgspec.UnsetType = msgspec.UNSET
    timestamp: str | msgspec.UnsetType = msgspec.UNSET
    data: Any = None


_encoder = msgspec.json.Encoder()


def encode_event(channel: str, type: str, id: str, timestamp: str, data: Any) -> bytes:
    """The envelope of a published event, as JSON bytes. Raises ``TypeError`` if ``data``
    holds something msgspec cannot encode."""
    return _encoder.encode(_Envelope(type, channel, id, timestamp, data))


def encode_event_parts(channel: str, type: str, timestamp: str, data: Any) -> tuple[bytes, bytes]:
    """The envelope of an event whose id is not known yet, as the bytes before and after
    the id: ``head + b"epoch:offset" + tail == encode_event(...)``. The Redis backplane's
    script puts the id it assigns in between. Raises ``TypeError`` like :func:`encode_event`."""
    enc = _encoder.encode
    head = b'{"type":' + enc(type) + b',"channel":' + enc(channel) + b',"id":"'
    tail = b'","timestamp":' + enc(timestamp) + b',"data":' + enc(data) + b"}"
    return head, tail


def encode_control(
    type: str, data: Any, *, timestamp: str | None = None, channel: str | None = None
) -> bytes:
    """A control message (no ``id``; ``channel`` only where the protocol gives one)."""
    return _encoder.encode(
        _Envelope(
            type,
            channel if channel is not None else msgspec.UNSET,
            msgspec.UNSET,
            timestamp if timestamp is not None else msgspec.UNSET,
            data,
        )
    )


class Event:
    """One published event: what filters read, and the encoded envelope sent to clients.

    ``user_id`` / ``role`` narrow delivery to one user's or one role's connections.
    """

    __slots__ = ("channel", "data", "id", "payload", "role", "time", "type", "user_id")

    def __init__(
        self,
        channel: str,
        type: str,
        id: EventId,
        time: float,
        data: Any,
        *,
        user_id: str | None = None,
        role: str | None = None,
        payload: bytes | None = None,
    ) -> None:
        self.channel = channel
        self.type = type
        self.id = id
        self.time = time
        self.data = data
        self.user_id = user_id
        self.role = role
        self.payload = (
            payload
            if payload is not None
            else encode_event(channel, type, str(id), utc_timestamp(time), data)
        )

    @property
    def offset(self) -> int:
        return self.id.offset

    def __repr__(self) -> str:
        return f"Event({self.channel!r}, {self.type!r}, {str(self.id)!r})"


# --------------------------------------------------------------------------- client -> server

FilterValue = str | int | float | bool | list[str | int | float | bool]


class _ClientBase(msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True):
    pass


class Subscribe(_ClientBase, tag="subscribe"):
    channels: list[str]
    filter: dict[str, FilterValue] = {}
    since: dict[str, str] = {}
    #: Ask for ``positions`` in the reply: where each channel stood when subscribed.
    positions: bool = False


class Unsubscribe(_ClientBase, tag="unsubscribe"):
    channels: list[str]


class Ping(_ClientBase, tag="ping"):
    data: Any = None


class Refresh(_ClientBase, tag="refresh"):
    """A newer token for the same user, sent before the current one expires."""

    token: str


ClientMessage = Subscribe | Unsubscribe | Ping | Refresh
_KNOWN_TYPES = ("subscribe", "unsubscribe", "ping", "refresh")
_any_decoder = msgspec.json.Decoder()

#: Levels of arrays and objects a client frame or a broadcast body may nest (serde_json's
#: default limit). Decoders give up (``RecursionError``) near Python's recursion limit,
#: ~1000 levels less the caller's stack, so what one process decoded another might not:
#: refusing far below that keeps every event decodable by every subscriber.
MAX_JSON_DEPTH = 128
NESTED_TOO_DEEPLY = f"nested too deeply: more than {MAX_JSON_DEPTH} levels of arrays and objects"


def too_deep(value: Any, levels: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON nests arrays and objects more than ``levels`` deep (an array
    or an object is one level; a scalar none). Iterative: no recursion of its own."""
    if not isinstance(value, (dict, list)):
        return False
    if levels < 1:
        return True
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                if depth >= levels:
                    return True
                stack.append((child, depth + 1))
    return False


def decode_client_message(frame: str | bytes) -> ClientMessage:
    """Decode one text frame; ``BadMessage`` (with a protocol error ``code``) otherwise."""
    try:
        obj = _any_decoder.decode(frame)
    except msgspec.DecodeError as e:
        raise BadMessage(f"malformed JSON: {e}", code="invalid_json") from None
    except RecursionError:
        raise BadMessage(f"JSON {NESTED_TOO_DEEPLY}", code="invalid_json") from None
    if too_deep(obj):
        raise BadMessage(f"JSON {NESTED_TOO_DEEPLY}", code="invalid_json")
    if not isinstance(obj, dict):
        raise BadMessage(
            f"a message must be a JSON object, got {type(obj).__name__}", code="invalid_message"
        )
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadMessage("a message needs a string 'type'", code="invalid_message")
    if kind not in _KNOWN_TYPES:
        raise BadMessage(
            f"unknown message type {kind!r} (known: {', '.join(_KNOWN_TYPES)})",
            code="unknown_type",
        )
    try:
        message: ClientMessage = msgspec.convert(obj, ClientMessage)
    except msgspec.ValidationError as e:
        raise BadMessage(f"invalid {kind} message: {e}", code="invalid_message") from None
    return message
