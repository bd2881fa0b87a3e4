"""The AsyncAPI 3.0.0 document of the WebSocket protocol, from the configuration.

Pure: a function of the configuration (and of the host the document is served for), no
I/O. The message schemas come from the Structs of :mod:`sanic_realtime.protocol` (server
to client) and :mod:`sanic_realtime.events` (client to server).

The document describes the server, as AsyncAPI 3 has it: ``send`` operations are what the
server sends to its clients, ``receive`` operations what it accepts from them. There is
one AsyncAPI channel per WebSocket route: each configured channel's route, whose filters
are its query parameters (the ``ws`` binding's ``query``), and the general route, keyed
``all`` (a name no channel can take: ``channels=all`` is the protocol's "every channel").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import ChannelConfig, RealtimeConfig
from ..protocol.client import Ping, Presence, Publish, Refresh, Subscribe, Unsubscribe
from ..protocol.server import (
    ConnectionEstablished,
    EventEnvelope,
    InBandError,
    InitialState,
    MessagesDropped,
    Pong,
    PresenceJoin,
    PresenceLeave,
    PresenceReply,
    Published,
    Refreshed,
    Subscribed,
    Unsubscribed,
)
from .query import channel_query, general_query
from .schemas import components

__all__ = [
    "ASYNCAPI_VERSION",
    "CLIENT_MESSAGES",
    "GENERAL_KEY",
    "SERVER_MESSAGES",
    "asyncapi_document",
]

ASYNCAPI_VERSION = "3.0.0"
#: The key of the general route among the AsyncAPI channels (a reserved channel name).
GENERAL_KEY = "all"
_WS_BINDING_VERSION = "0.1.0"

#: Message key -> (Struct, title, whether it exists only with auth.mode: jwt).
SERVER_MESSAGES: dict[str, tuple[type[Any], str, bool]] = {
    "connection_established": (ConnectionEstablished, "Connection established", False),
    "subscribed": (Subscribed, "Subscribed", False),
    "unsubscribed": (Unsubscribed, "Unsubscribed", False),
    "refreshed": (Refreshed, "Token refreshed", True),
    "initial_state": (InitialState, "Initial state", False),
    "pong": (Pong, "Pong", False),
    "error": (InBandError, "In-band error", False),
    "messages_dropped": (MessagesDropped, "Messages dropped", False),
    "presence": (PresenceReply, "Who is here", False),
    "published": (Published, "Client message published", False),
    "presence_join": (PresenceJoin, "A user joined", False),
    "presence_leave": (PresenceLeave, "A user left", False),
    "event": (EventEnvelope, "Event", False),
}
CLIENT_MESSAGES: dict[str, tuple[type[Any], str, bool]] = {
    "subscribe": (Subscribe, "Subscribe", False),
    "unsubscribe": (Unsubscribe, "Unsubscribe", False),
    "ping": (Ping, "Ping", False),
    "refresh": (Refresh, "Refresh the token", True),
    "presence_query": (Presence, "Ask who is here", False),
    "publish": (Publish, "Send a client message", False),
}

_CLIENT_SUMMARIES = {
    "subscribe": 'Subscribe to channels ("all": every channel the client may see), with '
    "filters, resume points (since) and, with positions: true, a resume point per channel "
    "in the reply. The reply is subscribed, then initial_state and replayed events.",
    "unsubscribe": 'Remove subscriptions ("all": every one). The reply is unsubscribed.',
    "ping": "An application-level round trip; the reply is pong. Any message resets "
    "client_timeout.",
    "refresh": "A newer token for the same user, before the current one expires. The reply "
    "is refreshed; a bad token is an error message; another user's token closes with 1008.",
    "presence_query": "Who is subscribed to a presence channel (subscribers and admins only). "
    "The reply is presence.",
    "publish": "A client message to a channel with client_messages: the server stamps the "
    "sender (from), checks type, roles, size and rate, runs the app's handler, and fans it "
    "out. The reply is published, or error with the code.",
}

_EXAMPLES: dict[str, dict[str, Any]] = {
    "connection_established": {
        "type": "connection_established",
        "timestamp": "2026-11-21T23:47:39.988Z",
        "data": {
            "status": "connected",
            "client_id": "c_S0YBlZ_GP9g_",
            "user_id": None,
            "role": None,
            "roles": [],
            "expires_at": None,
            "channels": ["logs"],
            "recovered": {"logs": True},
        },
    },
    "subscribed": {
        "type": "subscribed",
        "timestamp": "2026-11-22T04:00:02.114Z",
        "data": {"channels": ["logs"], "positions": {"logs": "k3x9:1"}},
    },
    "unsubscribed": {
        "type": "unsubscribed",
        "timestamp": "2026-11-21T23:46:53.514Z",
        "data": {"channels": ["logs"]},
    },
    "refreshed": {
        "type": "refreshed",
        "timestamp": "2026-11-22T00:24:11.177Z",
        "data": {
            "user_id": "alice",
            "role": "viewer",
            "roles": ["viewer"],
            "expires_at": "2026-11-22T01:24:11.000Z",
        },
    },
    "initial_state": {
        "type": "initial_state",
        "channel": "stats",
        "timestamp": "2026-11-21T23:46:53.212Z",
        "data": {"cpu": 0.42, "clients": 12},
    },
    "pong": {
        "type": "pong",
        "timestamp": "2026-11-21T23:46:53.212Z",
        "data": {"client_id": "c_pbJn-5EWKHc4", "timestamp": "2026-11-21T23:46:53.212Z"},
    },
    "error": {
        "type": "error",
        "timestamp": "2026-11-21T23:47:02.370Z",
        "data": {"code": "unknown_channel", "message": "unknown channel 'nope'"},
    },
    "messages_dropped": {
        "type": "messages_dropped",
        "timestamp": "2026-11-21T23:47:27.256Z",
        "data": {"channel": "logs", "count": 331},
    },
    "event": {
        "type": "log_update",
        "channel": "logs",
        "id": "k3x9:1",
        "timestamp": "2026-11-21T23:46:53.211Z",
        "data": {"level": "error", "message": "db down"},
    },
    "subscribe": {
        "type": "subscribe",
        "channels": ["logs"],
        "filter": {"level": "warn"},
        "since": {"logs": "k3x9:40"},
        "positions": True,
    },
    "unsubscribe": {"type": "unsubscribe", "channels": ["logs"]},
    "ping": {"type": "ping", "ref": "p1"},
    "presence_query": {"type": "presence", "channel": "rooms.lobby", "ref": "q1"},
    "publish": {
        "type": "publish",
        "channel": "rooms.lobby",
        "event": "typing",
        "data": {"on": True},
        "ref": "c1",
    },
    "presence": {
        "type": "presence",
        "ref": "q1",
        "channel": "rooms.lobby",
        "timestamp": "2026-12-07T21:02:11.503Z",
        "data": {
            "users": [
                {
                    "user_id": "alice",
                    "role": "member",
                    "connections": 2,
                    "since": "2026-12-07T20:58:40.115Z",
                }
            ],
            "count": 1,
            "anonymous": 0,
        },
    },
    "published": {
        "type": "published",
        "ref": "c1",
        "timestamp": "2026-12-07T21:02:12.018Z",
        "data": {"id": None},
    },
    "presence_join": {
        "type": "presence_join",
        "channel": "rooms.lobby",
        "timestamp": "2026-12-07T21:01:03.921Z",
        "data": {"user_id": "bob", "role": "member"},
    },
    "presence_leave": {
        "type": "presence_leave",
        "channel": "rooms.lobby",
        "timestamp": "2026-12-07T21:03:15.402Z",
        "data": {"user_id": "bob", "role": "member"},
    },
    "refresh": {"type": "refresh", "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."},
}

_PROTOCOL = """\
Real-time events over WebSocket (JSON text frames, one message per frame).

Connect to a channel's route (`{prefix}/<channel>`, filters in the query string) or to the
general route (`{prefix}`, `?channels=a,b` and/or subscribe messages). A refused handshake
is a plain HTTP answer before the upgrade (400, 401, 403, 404, 426, 429 or 503) with the
body `{{"error": {{"code", "message"}}}}`.

The first message is `connection_established`; then, per subscribed channel, its
`initial_state` (if any) and the events it missed (with `since`), then live events in
publish order. Every event has an `id` (`epoch:offset`, strictly increasing per channel):
keep the last one per channel and send it back as `since` to resume; `recovered` says
whether every missed event follows (true) or none (false: reload your state). Loss is
reported (`messages_dropped`), never silent.

Close codes: 1000 normal, 1001 server shutting down, 1007 text not UTF-8, 1008 token
expired or revoked, 1009 message too big (over {max_message_size} bytes), 1011 server
error or client timeout (nothing received for {client_timeout:g}s), 4008 slow consumer,
4429 too many messages (over {rate_messages} per {rate_per:g}s).

This document describes the server: `send` operations are what it sends to clients,
`receive` operations what it accepts from them. The WebSocket protocol is described in
full in docs/protocol.md of sanic-realtime; the HTTP routes are in the app's OpenAPI
document."""


def _headers(config: RealtimeConfig) -> dict[str, Any] | None:
    if config.auth.mode != "jwt":
        return None
    return {
        "type": "object",
        "properties": {
            "Authorization": {
                "type": "string",
                "pattern": "^Bearer .+$",
                "description": "Bearer <JWT> (scripts, servers); read first.",
            },
            "Sec-WebSocket-Protocol": {
                "type": "string",
                "description": "Browsers: new WebSocket(url, ['bearer', token]) sends "
                "`bearer, <token>`; the server selects `bearer` and never echoes the token.",
            },
        },
    }


def _roles_text(config: RealtimeConfig, roles: list[str]) -> str:
    if not roles:
        return ""
    if config.auth.mode == "jwt":
        return (
            f" Only connections holding one of the roles {', '.join(roles)} (else 403 forbidden)."
        )
    return f" Roles {', '.join(roles)} (not enforced: auth.mode is none)."


def _channel_text(config: RealtimeConfig, name: str, channel: ChannelConfig) -> str:
    parts = [f"Subscribe to channel {name} with the URL."]
    if channel.filters:
        parts.append(f"Filters: {', '.join(channel.filters)} (combined with AND), and types.")
    if channel.throttle is not None:
        parts.append("Throttled on request: ?interval=.")
    if channel.initial == "last":
        parts.append("New subscribers first get the newest matching event's data as initial_state.")
    history = config.history_for(name)
    parts.append(f"History for resume: {history.size} events, {history.ttl:g}s.")
    return " ".join(parts) + _roles_text(config, channel.roles)


def _message(key: str, struct: type[Any], title: str, *, client: bool) -> dict[str, Any]:
    doc = (struct.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    message: dict[str, Any] = {
        "name": key,
        "title": title,
        "summary": _CLIENT_SUMMARIES[key] if client else doc,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{struct.__name__}"},
    }
    if key in _EXAMPLES:
        message["examples"] = [{"name": key, "payload": _EXAMPLES[key]}]
    return message


def asyncapi_document(
    config: RealtimeConfig,
    *,
    host: str = "localhost:8000",
    secure: bool = False,
    initial_state_channels: Iterable[str] = (),
    title: str = "sanic-realtime WebSocket API",
    version: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (as builtins, ready for JSON) of the WebSocket routes
    of ``config``, served by ``host`` (``ws://``, or ``wss://`` when ``secure``).
    ``initial_state_channels``: channels with an ``@realtime.initial_state`` hook."""
    if version is None:
        from .. import __version__ as version
    jwt = config.auth.mode == "jwt"
    prefix = config.url_prefix
    hooked = set(initial_state_channels)
    may_initial = bool(hooked) or any(c.initial == "last" for c in config.channels.values())

    server_keys = [
        key
        for key, (_, _, needs_jwt) in SERVER_MESSAGES.items()
        if (jwt or not needs_jwt) and (key != "initial_state" or may_initial)
    ]
    client_keys = [
        key for key, (_, _, needs_jwt) in CLIENT_MESSAGES.items() if jwt or not needs_jwt
    ]

    structs = [s for s, _, _ in SERVER_MESSAGES.values()] + [
        s for s, _, _ in CLIENT_MESSAGES.values()
    ]
    messages = {
        struct.__name__: _message(key, struct, title_, client=key in CLIENT_MESSAGES)
        for key, (struct, title_, _) in {**SERVER_MESSAGES, **CLIENT_MESSAGES}.items()
    }

    def route_messages() -> dict[str, Any]:
        table = {**SERVER_MESSAGES, **CLIENT_MESSAGES}
        return {
            key: {"$ref": f"#/components/messages/{table[key][0].__name__}"}
            for key in server_keys + client_keys
        }

    def binding(query: dict[str, Any]) -> dict[str, Any]:
        ws: dict[str, Any] = {"method": "GET", "query": query}
        headers = _headers(config)
        if headers is not None:
            ws["headers"] = headers
        ws["bindingVersion"] = _WS_BINDING_VERSION
        return {"ws": ws}

    channels: dict[str, Any] = {}
    for name, channel in config.channels.items():
        entry: dict[str, Any] = {
            "address": f"{prefix}/{name}",
            "title": f"Channel {name}",
            "description": _channel_text(config, name, channel)
            + (" The app's initial_state hook sends its state first." if name in hooked else ""),
            "messages": route_messages(),
            "bindings": binding(channel_query(config, name, channel)),
        }
        if channel.roles:
            entry["x-roles"] = list(channel.roles)
        template = config.catalog.templates.get(name)
        if template is not None:
            # A parameterised address; the id drops the braces (ids are [\w.-]+).
            entry["parameters"] = {
                param: {"description": f"Matches {pattern.pattern!r} (the whole value)."}
                for param, pattern in zip(template.params, template.patterns, strict=True)
            }
            entry["title"] = f"Channel template {name}"
            name = name.replace("{", "").replace("}", "")
            while name in config.channels or name in channels:
                name += "-template"
        channels[name] = entry
    channels[GENERAL_KEY] = {
        "address": prefix,
        "title": "General route",
        "description": "Several channels on one connection: ?channels=a,b (`all`: every "
        "channel the client may see), and/or subscribe messages later. Channels: "
        + (
            "; ".join(
                name + (f" (roles: {', '.join(c.roles)})" if c.roles else "")
                for name, c in config.channels.items()
            )
            or "none configured"
        )
        + ".",
        "messages": route_messages(),
        "bindings": binding(general_query(config)),
    }

    operations: dict[str, Any] = {}
    for key in channels:
        ref = {"$ref": f"#/channels/{key}"}
        operations[f"{key}.send"] = {
            "action": "send",
            "title": f"Server to client on {channels[key]['address']}",
            "summary": "Control messages and the events of the subscribed channels.",
            "channel": ref,
            "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in server_keys],
        }
        operations[f"{key}.receive"] = {
            "action": "receive",
            "title": f"Client to server on {channels[key]['address']}",
            "summary": "Subscribe, unsubscribe, ping"
            + (", refresh" if jwt else "")
            + "; any other message gets an in-band error.",
            "channel": ref,
            "messages": [{"$ref": f"#/channels/{key}/messages/{m}"} for m in client_keys],
        }

    server: dict[str, Any] = {
        "host": host,
        "protocol": "wss" if secure else "ws",
        "description": "This server (the host and scheme of the request for this document).",
    }
    component_section: dict[str, Any] = {
        "schemas": components(structs, "#/components/schemas/"),
        "messages": messages,
    }
    if jwt:
        component_section["securitySchemes"] = _security_schemes(config)
        server["security"] = [
            {"$ref": f"#/components/securitySchemes/{key}"}
            for key in component_section["securitySchemes"]
        ]
    description = _PROTOCOL.format(
        prefix=prefix,
        max_message_size=config.max_message_size,
        client_timeout=config.client_timeout,
        rate_messages=config.client_rate_limit.messages,
        rate_per=config.client_rate_limit.per,
    )
    if jwt:
        description += (
            "\n\nAuthentication (auth.mode: jwt): one credential per connection, read in this "
            "order: the Authorization header, the bearer subprotocol, ?token=, ?ticket=. "
            "The connection closes with 1008 when the token expires, unless refreshed."
            + (
                " A connection without any credential is let in anonymously (public "
                "channels, untargeted events)."
                if config.auth.anonymous
                else ""
            )
        )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "defaultContentType": "application/json",
        "servers": {"realtime": server},
        "channels": channels,
        "operations": operations,
        "components": component_section,
    }


def _security_schemes(config: RealtimeConfig) -> dict[str, Any]:
    return {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Authorization: Bearer <token> (scripts, terminal UIs, servers).",
        },
        "bearerSubprotocol": {
            "type": "httpApiKey",
            "in": "header",
            "name": "Sec-WebSocket-Protocol",
            "description": "Browsers: new WebSocket(url, ['bearer', token]) offers the "
            "subprotocols `bearer` and the token; the server selects `bearer`.",
        },
        "token": {
            "type": "httpApiKey",
            "in": "query",
            "name": "token",
            "description": "?token=<JWT>: the least safe (URLs reach proxy logs).",
        },
        "ticket": {
            "type": "httpApiKey",
            "in": "query",
            "name": "ticket",
            "description": f"?ticket=<one-time ticket> from POST {config.url_prefix}/ticket "
            f"(valid {config.auth.ticket_ttl:g}s, once).",
        },
    }
