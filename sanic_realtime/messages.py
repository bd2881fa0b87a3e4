"""What the server sends on a WebSocket, as Structs: the source of the message schemas in
the AsyncAPI document (``sanic_realtime.apidocs``).

Pure: msgspec and the standard library only. The hub encodes its messages itself
(``events.encode_event`` / ``encode_control``: one encode per event, shared by every
subscriber); these Structs state the shapes it produces, and the tests decode real
traffic with them. The client's messages are :mod:`sanic_realtime.events`'
``Subscribe``, ``Unsubscribe``, ``Ping`` and ``Refresh``.

Messages are open for reading: a client should ignore fields it does not know, so the
schemas do not forbid extra ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec

__all__ = [
    "CONTROL_TYPES",
    "IN_BAND_ERROR_CODES",
    "SERVER_MESSAGES",
    "ConnectionEstablished",
    "ConnectionEstablishedData",
    "ErrorData",
    "EventEnvelope",
    "InBandError",
    "InitialState",
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

#: The codes of the ``error`` message (docs/protocol.md, "In-band errors").
InBandErrorCode = Literal[
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "binary_not_supported",
    "unknown_channel",
    "unknown_filter",
    "bad_filter_value",
    "bad_since",
    "forbidden",
    "too_many_subscriptions",
    "invalid_token",
    "token_expired",
    "auth_disabled",
    "anonymous",
    "backplane_unavailable",
    "initial_state_failed",
]
IN_BAND_ERROR_CODES: tuple[str, ...] = get_args(InBandErrorCode)


class _Control(msgspec.Struct, tag_field="type", kw_only=True):
    timestamp: Timestamp


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
            Literal["backplane_gap", "history_reset"],
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

    data: ConnectionEstablishedData


class Subscribed(_Control, tag="subscribed"):
    """The reply to subscribe."""

    data: SubscribedData


class Unsubscribed(_Control, tag="unsubscribed"):
    """The reply to unsubscribe; or, after refreshed, channels the new token may not see."""

    data: UnsubscribedData


class Refreshed(_Control, tag="refreshed"):
    """The reply to a valid refresh (auth.mode: jwt)."""

    data: RefreshedData


class InitialState(_Control, tag="initial_state"):
    """A channel's current state, right after connection_established or subscribed: from
    the app's initial_state hook, or the newest matching event's data (initial: last)."""

    channel: ChannelName
    data: Annotated[Any, msgspec.Meta(description="The state: any JSON.")]


class Pong(_Control, tag="pong"):
    """The reply to ping."""

    data: PongData


class InBandError(_Control, tag="error"):
    """A refusal on an open connection; the connection stays open."""

    data: ErrorData


class MessagesDropped(_Control, tag="messages_dropped"):
    """Loss is reported, never silent: sent before the next event after a loss."""

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
