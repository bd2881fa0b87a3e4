"""What a client sends on a WebSocket, as Structs: decoded by the server, encoded by the
Python client, described by the AsyncAPI document. Pure.

Client messages are a tagged union on ``type`` (``subscribe``, ``unsubscribe``,
``ping``, ``refresh``, ``presence``, ``publish``), each with an optional ``ref`` echoed
on its reply, decoded in two steps so that each kind of mistake gets its own error code:
not JSON, or JSON nested more than :data:`MAX_JSON_DEPTH` levels deep (``invalid_json``),
not an object (``invalid_message``), an unknown ``type`` (``unknown_type``), wrong fields
(``invalid_message`` naming the ``$.path``). Defaults are left out when a message is
encoded.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..exceptions import BadMessage

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "MAX_JSON_DEPTH",
    "NESTED_TOO_DEEPLY",
    "ClientMessage",
    "FilterValue",
    "Ping",
    "Presence",
    "Publish",
    "Ref",
    "Refresh",
    "Subscribe",
    "Unsubscribe",
    "decode_client_message",
    "too_deep",
]

FilterValue = str | int | float | bool | list[str | int | float | bool]
#: A client's name for one request, echoed at the top level of its reply.
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: An event type a client sends (``client_messages.types``).
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class _ClientBase(
    msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    #: Echoed on the reply (and on an error about this message).
    ref: Ref | None = None


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


class Presence(_ClientBase, tag="presence"):
    """Who is subscribed to ``channel`` (a presence channel the client subscribes to)."""

    channel: str


class Publish(_ClientBase, tag="publish"):
    """A client message to the subscribers of ``channel`` (``client_messages``)."""

    channel: str
    event: EventType
    data: Any = None
    #: Ignored: the server stamps the sender itself.
    from_: Any = msgspec.field(default=None, name="from")


ClientMessage = Subscribe | Unsubscribe | Ping | Refresh | Presence | Publish
#: The ``type`` of each client message.
CLIENT_MESSAGE_TYPES: tuple[str, ...] = tuple(
    str(m.__struct_config__.tag) for m in (Subscribe, Unsubscribe, Ping, Refresh, Presence, Publish)
)
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
    ref = obj.get("ref")
    try:
        return _decode_object(obj)
    except BadMessage as e:
        # An error about a message names its ref, when it has a usable one.
        if isinstance(ref, str) and 0 < len(ref) <= 64:
            e.ref = ref
        raise


def _decode_object(obj: dict[str, Any]) -> ClientMessage:
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadMessage("a message needs a string 'type'", code="invalid_message")
    if kind not in CLIENT_MESSAGE_TYPES:
        raise BadMessage(
            f"unknown message type {kind!r} (known: {', '.join(CLIENT_MESSAGE_TYPES)})",
            code="unknown_type",
        )
    try:
        message: ClientMessage = msgspec.convert(obj, ClientMessage)
    except msgspec.ValidationError as e:
        raise BadMessage(f"invalid {kind} message: {e}", code="invalid_message") from None
    return message
