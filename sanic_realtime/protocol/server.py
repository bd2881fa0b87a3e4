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
    "PresenceChangeData",
    "PresenceData",
    "PresenceJoin",
    "PresenceLeave",
    "PresenceReply",
    "PresenceUser",
    "Published",
    "PublishedData",
    "Refreshed",
    "RefreshedData",
    "Sender",
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


RefText = Annotated[
    str,
    msgspec.Meta(description="The ref of the request this replies to, when it had one."),
]


class _Reply(_Control):
    """A reply to a client request: carries the request's ``ref`` when it had one."""

    ref: RefText | msgspec.UnsetType = msgspec.UNSET


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


class Subscribed(_Reply, tag="subscribed", kw_only=True):
    """The reply to subscribe."""

    timestamp: Timestamp
    data: SubscribedData


class Unsubscribed(_Reply, tag="unsubscribed", kw_only=True):
    """The reply to unsubscribe; or, after refreshed, channels the new token may not see."""

    timestamp: Timestamp
    data: UnsubscribedData


class Refreshed(_Reply, tag="refreshed", kw_only=True):
    """The reply to a valid refresh (auth.mode: jwt)."""

    timestamp: Timestamp
    data: RefreshedData


class InitialState(_Control, tag="initial_state"):
    """A channel's current state, right after connection_established or subscribed: from
    the app's initial_state hook, or the newest matching event's data (initial: last)."""

    channel: ChannelName
    timestamp: Timestamp
    data: Annotated[Any, msgspec.Meta(description="The state: any JSON.")]


class Pong(_Reply, tag="pong", kw_only=True):
    """The reply to ping."""

    timestamp: Timestamp
    data: PongData


class InBandError(_Reply, tag="error", kw_only=True):
    """A refusal on an open connection; the connection stays open."""

    timestamp: Timestamp
    data: ErrorData


class MessagesDropped(_Control, tag="messages_dropped"):
    """Loss is reported, never silent: sent before the next event after a loss."""

    timestamp: Timestamp
    data: MessagesDroppedData


class PresenceUser(msgspec.Struct, kw_only=True):
    """One user present on a channel."""

    user_id: str
    role: str | None
    connections: Annotated[
        int, msgspec.Meta(description="The user's connections subscribed, on every worker.")
    ]
    since: Annotated[Timestamp, msgspec.Meta(description="Present since (the first join).")]


class PresenceData(msgspec.Struct, kw_only=True):
    """Who is subscribed to a presence channel, on every worker."""

    users: Annotated[
        list[PresenceUser] | None,
        msgspec.Meta(description="The users (null with presence.list: false)."),
    ]
    count: Annotated[int, msgspec.Meta(description="Distinct users present.")]
    anonymous: Annotated[int, msgspec.Meta(description="Connections without a user.")]
    truncated: (
        Annotated[
            bool,
            msgspec.Meta(description="Set when users holds only the first of count users."),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class PresenceChangeData(msgspec.Struct, kw_only=True):
    user_id: str
    role: str | None


class PublishedData(msgspec.Struct, kw_only=True):
    """What became of a client message."""

    id: Annotated[
        EventIdText | None,
        msgspec.Meta(description="Its event id; null for a type not kept in history."),
    ]
    dropped: (
        Annotated[
            Literal[True],
            msgspec.Meta(description="Set when the channel's handler dropped the message."),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class PresenceReply(_Reply, tag="presence", kw_only=True):
    """The reply to presence."""

    channel: ChannelName
    timestamp: Timestamp
    data: PresenceData


class Published(_Reply, tag="published", kw_only=True):
    """The reply to publish: the message was accepted (and sent, unless dropped)."""

    timestamp: Timestamp
    data: PublishedData


class PresenceJoin(_Control, tag="presence_join"):
    """A user's first connection subscribed to a presence channel (events: true)."""

    channel: ChannelName
    timestamp: Timestamp
    data: PresenceChangeData


class PresenceLeave(_Control, tag="presence_leave"):
    """A user's last connection left a presence channel, leave_delay ago."""

    channel: ChannelName
    timestamp: Timestamp
    data: PresenceChangeData


class Sender(msgspec.Struct, kw_only=True):
    """Who sent a client message: stamped by the server, never taken from the client."""

    user_id: str | None
    client_id: str


class EventEnvelope(msgspec.Struct, kw_only=True):
    """A published event that matched the subscription. Events have an id; control
    messages have none."""

    type: Annotated[
        str,
        msgspec.Meta(description="The event type given to publish.", examples=["log_update"]),
    ]
    channel: ChannelName
    id: Annotated[
        EventIdText | None,
        msgspec.Meta(description="Null only for a client message of a type not kept in history."),
    ]
    timestamp: Annotated[
        str,
        msgspec.Meta(
            description="When it was published (UTC, RFC 3339, milliseconds).",
            extra_json_schema={"format": "date-time"},
        ),
    ]
    data: Annotated[Any, msgspec.Meta(description="The event's data: any JSON.")]
    from_: (
        Annotated[Sender, msgspec.Meta(description="Set on client messages: the sender.")]
        | msgspec.UnsetType
    ) = msgspec.field(default=msgspec.UNSET, name="from")


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
    PresenceReply,
    Published,
    PresenceJoin,
    PresenceLeave,
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
    | PresenceReply
    | Published
    | PresenceJoin
    | PresenceLeave
)

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """A server message as the JSON text the client receives."""
    return _encoder.encode(message)
