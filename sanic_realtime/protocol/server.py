"""What the server sends on a WebSocket, as Structs: the one definition of each message.

Everything the server sends is encoded from these Structs (:func:`encode`), and the
AsyncAPI document (``sanic_realtime.apidocs``) derives its message schemas from them, so
the two cannot drift. Events are the exception in one respect only: the hub encodes
each event once for every subscriber (``events.encode_event``), still from
:class:`EventEnvelope`. Pure: msgspec and the standard library only.

Messages are open for reading: a client should ignore fields it does not know, so the
schemas do not forbid extra ones. Fields are declared in the order they go on the wire:
``type``, ``channel``, ``timestamp``, ``data``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .codes import IN_BAND_ERROR_CODES, InBandErrorCode

__all__ = [
    "CONTROL_TYPES",
    "IN_BAND_ERROR_CODES",
    "SERVER_MESSAGES",
    "ConnectionEstablished",
    "ConnectionEstablishedData",
    "ControlMessage",
    "ErrorData",
    "EventEnvelope",
    "InBandError",
    "InitialState",
    "LossReason",
    "MessagesDropped",
    "MessagesDroppedData",
    "Pong",
    "PongData",
    "Refreshed",
    "RefreshedData",
    "Subscribed",
    "SubscribedData",
    "Unsubscribed",
    "UnsubscribedData",
    "encode",
]

Timestamp = Annotated[
    str,
    msgspec.Meta(
        description="UTC, RFC 3339 with milliseconds.",
        examples=["2026-11-21T23:46:53.210Z"],
        extra_json_schema={"format": "date-time"},
    ),
]
EventIdText = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^.+:[0-9]{1,19}$",
        description="An event id, epoch:offset: opaque to clients, strictly increasing per "
        "channel; send it back as since to resume.",
        examples=["k3x9:42"],
    ),
]
ChannelName = Annotated[str, msgspec.Meta(description="A configured channel.")]
Roles = Annotated[list[str], msgspec.Meta(description="Every role of the token; [] without.")]
Recovered = Annotated[
    dict[str, bool],
    msgspec.Meta(
        description="Present when a resume was asked: for each such channel, true if every "
        "missed event follows (replayed), false if none is sent (history too short)."
    ),
]


#: Why events were lost before they reached this server process (Redis backplane).
LossReason = Literal["backplane_gap", "history_reset"]


class _Control(msgspec.Struct, tag_field="type", kw_only=True):
    """A control message: no id. Each one declares ``timestamp`` (UTC, when it was made)
    and ``data``; ``initial_state`` also ``channel``, before them."""


# --------------------------------------------------------------------------- data


class ConnectionEstablishedData(msgspec.Struct, kw_only=True):
    """Who the connection is, and what the URL subscribed it to."""

    status: Literal["connected"]
    client_id: Annotated[str, msgspec.Meta(description="This connection's id, also in pong.")]
    user_id: Annotated[
        str | None, msgspec.Meta(description="The token's user; null without authentication.")
    ]
    role: Annotated[
        str | None, msgspec.Meta(description="The primary role (the first of roles), or null.")
    ]
    roles: Roles
    expires_at: Annotated[
        Timestamp | None,
        msgspec.Meta(
            description="When the token expires: the connection closes then (1008) unless "
            "the client sends a refresh. Null without authentication or exp."
        ),
    ]
    channels: Annotated[
        list[ChannelName], msgspec.Meta(description="The channels subscribed by the URL.")
    ]
    recovered: Recovered | msgspec.UnsetType = msgspec.UNSET


class SubscribedData(msgspec.Struct, kw_only=True):
    """The channels a subscribe message subscribed."""

    channels: list[ChannelName]
    recovered: Recovered | msgspec.UnsetType = msgspec.UNSET
    positions: (
        Annotated[
            dict[str, EventIdText],
            msgspec.Meta(
                description='With "positions": true in subscribe: per channel, the id of its '
                "newest event when the subscription began (epoch:0: none yet); a resume point."
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class UnsubscribedData(msgspec.Struct, kw_only=True):
    """The channels removed (those that were not subscribed are left out)."""

    channels: list[ChannelName]
    reason: (
        Annotated[
            Literal["forbidden"],
            msgspec.Meta(description="Set when the server removed them after a refresh."),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class RefreshedData(msgspec.Struct, kw_only=True):
    """The identity of the new token; the connection now closes at the new expires_at."""

    user_id: str | None
    role: str | None
    roles: Roles
    expires_at: Timestamp | None


class PongData(msgspec.Struct, kw_only=True):
    client_id: str
    timestamp: Timestamp


class ErrorData(msgspec.Struct, kw_only=True):
    """A client message was refused (it had no other effect), an initial state could not
    be computed, or a subscription could not be set up. The connection stays open."""

    code: InBandErrorCode
    message: str


class MessagesDroppedData(msgspec.Struct, kw_only=True):
    """Events of a channel that will not reach this client."""

    channel: ChannelName
    count: Annotated[
        int | None,
        msgspec.Meta(
            description="Events of the channel lost since the last notice; null when unknown."
        ),
    ]
    reason: (
        Annotated[
            LossReason,
            msgspec.Meta(
                description="Absent for slow_client: drop_oldest (a full buffer); set when the "
                "Redis backplane lost events before they reached this server process."
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


# --------------------------------------------------------------------------- messages


class ConnectionEstablished(_Control, tag="connection_established"):
    """The first message of every connection."""

    timestamp: Timestamp
    data: ConnectionEstablishedData


class Subscribed(_Control, tag="subscribed"):
    """The reply to subscribe."""

    timestamp: Timestamp
    data: SubscribedData


class Unsubscribed(_Control, tag="unsubscribed"):
    """The reply to unsubscribe; or, after refreshed, channels the new token may not see."""

    timestamp: Timestamp
    data: UnsubscribedData


class Refreshed(_Control, tag="refreshed"):
    """The reply to a valid refresh (auth.mode: jwt)."""

    timestamp: Timestamp
    data: RefreshedData


class InitialState(_Control, tag="initial_state"):
    """A channel's current state, right after connection_established or subscribed: from
    the app's initial_state hook, or the newest matching event's data (initial: last)."""

    channel: ChannelName
    timestamp: Timestamp
    data: Annotated[Any, msgspec.Meta(description="The state: any JSON.")]


class Pong(_Control, tag="pong"):
    """The reply to ping."""

    timestamp: Timestamp
    data: PongData


class InBandError(_Control, tag="error"):
    """A refusal on an open connection; the connection stays open."""

    timestamp: Timestamp
    data: ErrorData


class MessagesDropped(_Control, tag="messages_dropped"):
    """Loss is reported, never silent: sent before the next event after a loss."""

    timestamp: Timestamp
    data: MessagesDroppedData


class EventEnvelope(msgspec.Struct, kw_only=True):
    """A published event that matched the subscription. Events have an id; control
    messages have none."""

    type: Annotated[
        str,
        msgspec.Meta(description="The event type given to publish.", examples=["log_update"]),
    ]
    channel: ChannelName
    id: EventIdText
    timestamp: Annotated[
        str,
        msgspec.Meta(
            description="When it was published (UTC, RFC 3339, milliseconds).",
            extra_json_schema={"format": "date-time"},
        ),
    ]
    data: Annotated[Any, msgspec.Meta(description="The event's data: any JSON.")]


#: Every server -> client message, in the order of docs/protocol.md's table.
SERVER_MESSAGES: tuple[type[msgspec.Struct], ...] = (
    ConnectionEstablished,
    Subscribed,
    Unsubscribed,
    Refreshed,
    InitialState,
    Pong,
    InBandError,
    MessagesDropped,
    EventEnvelope,
)
#: The ``type`` of each control message.
CONTROL_TYPES = tuple(
    str(m.__struct_config__.tag) for m in SERVER_MESSAGES if m.__struct_config__.tag is not None
)

#: Any control message.
ControlMessage = (
    ConnectionEstablished
    | Subscribed
    | Unsubscribed
    | Refreshed
    | InitialState
    | Pong
    | InBandError
    | MessagesDropped
)

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """A server message as the JSON text the client receives."""
    return _encoder.encode(message)
