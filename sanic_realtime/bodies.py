"""The JSON bodies of the HTTP routes (admin, ticket, health, refusals), as Structs.

Pure: msgspec and the standard library only. The broadcast route decodes its request
with :class:`BroadcastRequest`; the other Structs describe what the routes answer, for
the OpenAPI document (``sanic_realtime.apidocs``). Field order is wire order.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .protocol.server import PresenceUser

__all__ = [
    "MAX_BROADCAST_EVENTS",
    "BackplaneHealth",
    "BroadcastEvent",
    "BroadcastManyReply",
    "BroadcastReply",
    "BroadcastRequest",
    "BroadcastTarget",
    "ErrorBody",
    "ErrorDetail",
    "HealthReply",
    "PresenceBody",
    "StatsReply",
    "TicketReply",
]


class ErrorDetail(msgspec.Struct):
    """What was refused, and why."""

    code: Annotated[
        str,
        msgspec.Meta(
            description="A stable, machine-readable code, e.g. unknown_channel, bad_filter_value, "
            "unauthorized, forbidden, server_full (docs/protocol.md lists them per route).",
            examples=["unknown_channel"],
        ),
    ]
    message: Annotated[
        str,
        msgspec.Meta(
            description="A sentence for people; it names the parameter or value at fault.",
            examples=["unknown channel 'nope'; known channels: logs, stats"],
        ),
    ]


class ErrorBody(msgspec.Struct):
    """A refused request: every 4xx and 5xx answer of the realtime routes has this body."""

    error: ErrorDetail


class BroadcastTarget(msgspec.Struct, forbid_unknown_fields=True):
    """Narrows delivery to one user's connections and/or those holding a role (either
    suffices)."""

    user_id: Annotated[
        str | int | None, msgspec.Meta(description="An int is turned into a string.")
    ] = None
    role: str | None = None


#: Events one broadcast request may carry in ``events``.
MAX_BROADCAST_EVENTS = 1000


class BroadcastEvent(msgspec.Struct, forbid_unknown_fields=True):
    """One event of a batch."""

    type: Annotated[str, msgspec.Meta(min_length=1, description="The event type.")]
    data: Annotated[Any, msgspec.Meta(description="The event's data: any JSON.")] = None


class BroadcastRequest(msgspec.Struct, forbid_unknown_fields=True):
    """An event to publish (``type`` and ``data``), or several (``events``), in order."""

    channel: Annotated[str, msgspec.Meta(description="A configured channel.")]
    type: (
        Annotated[
            str,
            msgspec.Meta(min_length=1, description="The event type (one event; not with events)."),
        ]
        | None
    ) = None
    data: Annotated[Any, msgspec.Meta(description="The event's data: any JSON.")] = None
    events: (
        Annotated[
            list[BroadcastEvent],
            msgspec.Meta(
                min_length=1,
                max_length=MAX_BROADCAST_EVENTS,
                description="Several events, published in order with the same target (not "
                "with type and data); the reply has their ids.",
            ),
        ]
        | None
    ) = None
    target: BroadcastTarget | None = None
    count: Annotated[
        Literal["process", "cluster"],
        msgspec.Meta(
            description="cluster: recipients counts every worker's connections (one event; "
            "waits up to 1 s for the other workers' counts)."
        ),
    ] = "process"


class BroadcastManyReply(msgspec.Struct):
    """The events were published, in order."""

    success: Literal[True]
    recipients: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="The sum over the events of their recipients in the server process "
            "that answered.",
        ),
    ]
    ids: Annotated[
        list[str],
        msgspec.Meta(description="The events' ids, in order", examples=[["k3x9:2", "k3x9:3"]]),
    ]


class BroadcastReply(msgspec.Struct):
    """The event was published."""

    success: Literal[True]
    recipients: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            description="Connections of the server process that answered (with count "
            '"cluster": of every worker) for which the event was queued (or held): their '
            "subscription, filters and the target matched.",
        ),
    ]
    id: Annotated[
        str,
        msgspec.Meta(description="The event id (epoch:offset)", examples=["k3x9:2"]),
    ]
    complete: Annotated[
        bool | msgspec.UnsetType,
        msgspec.Meta(
            description='With count "cluster" only: false if a worker did not answer '
            "within 1 s (recipients then counts those that did)."
        ),
    ] = msgspec.UNSET


class StatsReply(msgspec.Struct):
    """Connection and message figures of every server process, summed."""

    total_clients: int
    total_users: Annotated[
        int, msgspec.Meta(description="Distinct authenticated users with a connection.")
    ]
    by_channel: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="Channel -> connections; a template's instances are counted under "
            "the template (orders.{order_id})."
        ),
    ]
    by_role: Annotated[dict[str, int], msgspec.Meta(description="Role -> connections holding it.")]
    channel_instances: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="Template -> instances in use (summed over the workers: an instance "
            "used on two counts twice)."
        ),
    ]
    present_users: Annotated[
        dict[str, int],
        msgspec.Meta(
            description="Presence channel or template -> users present through a connection "
            "of a worker (summed over the workers: a user present through two counts twice)."
        ),
    ]
    messages_sent: int
    messages_dropped: int
    slow_disconnects: int
    uptime_s: float
    workers: Annotated[int, msgspec.Meta(description="How many processes' figures were summed.")]
    by_worker: (
        Annotated[
            dict[str, int],
            msgspec.Meta(description="Redis backplane: worker -> its connections."),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    complete: (
        Annotated[
            bool,
            msgspec.Meta(
                description="Redis backplane: false when other workers could not be read."
            ),
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET
    error: (
        Annotated[str, msgspec.Meta(description="Why the figures are incomplete.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class TicketReply(msgspec.Struct):
    """A one-time ticket for ``?ticket=`` on a WebSocket route."""

    ticket: str
    expires_in: Annotated[float, msgspec.Meta(description="Seconds until the ticket expires.")]


class BackplaneHealth(msgspec.Struct):
    """The backplane's state; the fields after ``ok`` are given by the Redis backplane only."""

    kind: Literal["memory", "redis"]
    ok: Annotated[bool, msgspec.Meta(description="It can publish and receive.")]
    url: Annotated[str, msgspec.Meta(description="Password replaced by ***.")] | (
        msgspec.UnsetType
    ) = msgspec.UNSET
    node: str | msgspec.UnsetType = msgspec.UNSET
    listener: Literal["connected", "reconnecting"] | msgspec.UnsetType = msgspec.UNSET
    reconnects: int | msgspec.UnsetType = msgspec.UNSET
    recovered_from_stream: int | msgspec.UnsetType = msgspec.UNSET
    last_error: str | msgspec.UnsetType | None = msgspec.UNSET
    channels: int | msgspec.UnsetType = msgspec.UNSET


class HealthReply(msgspec.Struct):
    """The state of the server process that answers (status 200 when ``ok``, else 503)."""

    status: Literal["ok", "unavailable"]
    accepting: Annotated[
        bool, msgspec.Meta(description="The hub has started and is not shutting down.")
    ]
    clients: Annotated[int, msgspec.Meta(description="Open connections in this process.")]
    backplane: BackplaneHealth


class PresenceBody(msgspec.Struct, kw_only=True):
    """``GET {admin.presence_path}/{channel}``: who is on a presence channel, on every
    worker (the in-band ``presence`` reply's data, with the channel)."""

    channel: str
    users: Annotated[
        list[PresenceUser] | None,
        msgspec.Meta(description="The users, sorted by id (null with presence.list: false)."),
    ]
    count: Annotated[int, msgspec.Meta(description="Distinct users present.")]
    anonymous: Annotated[int, msgspec.Meta(description="Connections without a user.")]
    truncated: (
        Annotated[bool, msgspec.Meta(description="Set when users holds only the first 1000.")]
        | msgspec.UnsetType
    ) = msgspec.UNSET
