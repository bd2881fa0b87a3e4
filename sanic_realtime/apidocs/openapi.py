"""What the OpenAPI document says about each route of the realtime blueprint.

Pure: plain dicts in the dialect of OpenAPI 3.0 (what sanic-ext serves), keyed by route
name (``channel``, ``general``, ``health``, ...). ``routes.py`` hands them to sanic-ext.
The body schemas come from :mod:`sanic_realtime.bodies`.
"""

from __future__ import annotations

from typing import Any

from ..bodies import (
    BroadcastManyReply,
    BroadcastReply,
    BroadcastRequest,
    ErrorBody,
    HealthReply,
    PresenceBody,
    StatsReply,
    TicketReply,
)
from ..config import RealtimeConfig
from .query import any_channel_query, general_query
from .schemas import components, to_openapi30

__all__ = ["BODY_STRUCTS", "SECURITY_SCHEMES", "openapi_components", "operations"]

#: The Structs whose schemas the operations refer to.
BODY_STRUCTS = (
    ErrorBody,
    HealthReply,
    BroadcastRequest,
    BroadcastReply,
    BroadcastManyReply,
    StatsReply,
    PresenceBody,
    TicketReply,
)
_REF = "#/components/schemas/"
#: Security schemes of the realtime routes (added only when a route needs a credential).
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "realtimeBearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Authorization: Bearer <token>: a JWT (auth.mode: jwt), or the static "
        "admin.token / metrics.token where one is configured.",
    },
    "realtimeToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "?token=<JWT> on a WebSocket route (URLs reach proxy logs).",
    },
    "realtimeTicket": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "?ticket=<one-time ticket> on a WebSocket route (POST .../ticket).",
    },
}


def openapi_components() -> dict[str, Any]:
    """``{name: schema}`` of the bodies, for ``components.schemas``."""
    return {name: to_openapi30(s) for name, s in components(BODY_STRUCTS, _REF).items()}


def _json(struct: type[Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + struct.__name__}}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json(ErrorBody, description)


def _parameters(query: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": schema.get("description", ""),
            "schema": to_openapi30({k: v for k, v in schema.items() if k != "description"}),
        }
        for name, schema in query["properties"].items()
    ]


def _ws_operation(
    config: RealtimeConfig, summary: str, lead: str, query: dict[str, Any]
) -> dict[str, Any]:
    prefix = config.url_prefix
    jwt = config.auth.mode == "jwt"
    description = (
        f"{lead}\n\n"
        "**WebSocket.** Connect with a WebSocket client (`ws://` or `wss://`); a plain HTTP "
        "request is refused with 426. The server speaks JSON text frames: first "
        "`connection_established`, then each subscribed channel's `initial_state` (if any) "
        "and the events missed since `since`, then live events, in publish order. Each "
        "event has an `id` to resume from. The client may send `subscribe`, "
        "`unsubscribe`, `ping`" + (" and `refresh`" if jwt else "") + ".\n\n"
        "Every message, the close codes and the filters of each channel are described in "
        f"the AsyncAPI document served at `GET {prefix}/asyncapi.json`.\n\n"
        "Refusals happen before the upgrade, as plain HTTP with a JSON error body."
    )
    responses: dict[str, Any] = {
        "101": {"description": "Switching Protocols: the WebSocket is open."},
        "400": _error(
            "A filter, value or `since` is not valid (unknown_filter, bad_filter_value, "
            "bad_since, invalid_message, too_many_subscriptions); the message names it."
        ),
        "403": _error(
            "The Origin is not allowed (origin_not_allowed), or a channel's roles "
            "do not include the client's (forbidden)."
        ),
        "404": _error("A channel is not configured (unknown_channel)."),
        "426": _error("Not a WebSocket upgrade request (upgrade_required)."),
        "429": _error(
            "Too many handshakes from this IP (rate_limited, with Retry-After), or the user "
            "has max_connections_per_user connections (too_many_connections)."
        ),
        "503": _error(
            "The server is full (server_full), shutting down (shutting_down), or its "
            "backplane is unavailable (backplane_unavailable)."
        ),
    }
    if jwt:
        responses["401"] = _error(
            "No credential, or a bad or expired one (unauthorized, invalid_token, "
            "token_expired, invalid_ticket); with WWW-Authenticate."
        )
    operation: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "parameters": _parameters(query),
        "responses": dict(sorted(responses.items())),
    }
    if jwt:
        security: list[dict[str, list[str]]] = [
            {"realtimeBearer": []},
            {"realtimeToken": []},
            {"realtimeTicket": []},
        ]
        if config.auth.anonymous:
            security.append({})  # no credential at all: an anonymous connection
        operation["security"] = security
    return operation


def operations(config: RealtimeConfig, route_names: set[str]) -> dict[str, dict[str, Any]]:
    """The operation of each route in ``route_names`` (the blueprint's route names) that
    this module knows; others (and routes of the app) are left to sanic-ext's defaults."""
    channels = list(config.channels)
    jwt = config.auth.mode == "jwt"
    admin_secured = jwt or bool(config.admin.token)
    out: dict[str, dict[str, Any]] = {}

    channel_op = _ws_operation(
        config,
        "WebSocket: subscribe to one channel",
        "Subscribe to the channel of the path; its declared filters come from the query "
        "string, plus `types`, `since` and (throttled channels) `interval`.",
        any_channel_query(config),
    )
    channel_op["parameters"].insert(
        0,
        {
            "name": "channel",
            "in": "path",
            "required": True,
            "description": "A configured channel.",
            "schema": {"type": "string", "enum": channels} if channels else {"type": "string"},
        },
    )
    out["channel"] = channel_op
    out["general"] = _ws_operation(
        config,
        "WebSocket: the general route (several channels)",
        "Subscribe to `?channels=a,b` (`all`: every channel the client may see) and/or send "
        "`subscribe` messages later; `since.<channel>` resumes each channel.",
        general_query(config),
    )
    out["health"] = {
        "summary": "Health of this server process",
        "description": "Hub and backplane state. No credential, no origin check, no rate "
        "limit: for load balancers and orchestrators.",
        "responses": {
            "200": _json(HealthReply, "Accepting connections; the backplane works."),
            "503": _json(HealthReply, "Not started, shutting down, or the backplane is down."),
        },
    }
    out["ticket"] = {
        "summary": "A one-time ticket for ?ticket=",
        "description": "Exchanges the JWT of the Authorization header for a short-lived, "
        "single-use ticket: browsers put it in the WebSocket URL instead of the token. "
        "Fetch a new one for every connection attempt.",
        "responses": {
            "200": _json(TicketReply, "The ticket (Cache-Control: no-store)."),
            "401": _error("No Bearer token, or a bad or expired one."),
            "403": _error("The Origin is not allowed (origin_not_allowed)."),
            "404": _error("auth.mode is none: there are no tickets (auth_disabled)."),
            "429": _error("Too many requests from this IP (rate_limited)."),
            "503": _error("The backplane cannot store the ticket (backplane_unavailable)."),
        },
        "security": [{"realtimeBearer": []}],
    }
    admin_errors = (
        {
            "401": _error("No Bearer token, or not a valid one (unauthorized, invalid_token)."),
            "403": _error("A valid JWT without admin.role (forbidden)."),
        }
        if admin_secured
        else {}
    )
    out["admin_broadcast"] = {
        "summary": "Publish an event, or several",
        "description": "Publishes to a channel's subscribers (all, or narrowed by target): one "
        "event (type, data), or several in order (events, at most 1000). "
        + (
            ""
            if admin_secured
            else "Open: auth.mode is none and no admin.token is set; keep it off public networks."
        ),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF + "BroadcastRequest"}}},
        },
        "responses": {
            "200": {
                "description": "Published: one event (id), or events (ids, in order).",
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": _REF + "BroadcastReply"},
                                {"$ref": _REF + "BroadcastManyReply"},
                            ]
                        }
                    }
                },
            },
            "400": _error("Not JSON (invalid_json), or not a valid body (invalid_body)."),
            "404": _error("The channel is not configured (unknown_channel)."),
            "503": _error("The backplane could not publish (backplane_unavailable)."),
            **admin_errors,
            **(
                {"429": _error("Over admin.rate_limit for this caller (rate_limited).")}
                if config.admin.rate_limit is not None
                else {}
            ),
        },
    }
    out["admin_stats"] = {
        "summary": "Connection and message figures",
        "description": "The figures of every server process, summed.",
        "responses": {"200": _json(StatsReply, "The figures."), **admin_errors},
    }
    out["admin_presence"] = {
        "summary": "Who is on a presence channel",
        "description": "The users subscribed to a channel with presence, on every worker "
        "(at most 1000 listed; counts only with presence.list: false).",
        "parameters": [
            {
                "name": "channel",
                "in": "path",
                "required": True,
                "description": "A channel or template instance with presence.",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": _json(PresenceBody, "The users present."),
            "400": _error(
                "Not a presence channel (no_presence), or an invalid name (invalid_channel)."
            ),
            "404": _error("No such channel (unknown_channel)."),
            **admin_errors,
        },
    }
    for name, what, media in (
        ("asset_client_js", "The browser client, an ES module", "text/javascript"),
        ("asset_client_d_ts", "The browser client's TypeScript declarations", "text/plain"),
    ):
        out[name] = {
            "summary": what,
            "description": "Cached (max-age=600) with a strong ETag: 304 on If-None-Match.",
            "responses": {
                "200": {
                    "description": what,
                    "content": {media: {"schema": {"type": "string"}}},
                },
                "304": {"description": "Not modified."},
            },
        }
    out["asyncapi"] = {
        "summary": "AsyncAPI document of the WebSocket protocol",
        "description": "AsyncAPI 3.0.0: every WebSocket route (one per channel, and the "
        "general route) with its query parameters, and every message with its JSON Schema. "
        "For code generators (AsyncAPI Generator, Modelina).",
        "responses": {
            "200": {
                "description": "The AsyncAPI document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }
    metrics = getattr(config, "metrics", None)
    metrics_token = bool(getattr(metrics, "token", None))
    out["metrics"] = {
        "summary": "Prometheus metrics",
        "description": "The figures in the Prometheus text exposition format, for scrapers.",
        "responses": {
            "200": {
                "description": "The metrics.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **(
                {"401": _error("No Bearer token, or not metrics.token (unauthorized).")}
                if metrics_token
                else {}
            ),
        },
    }
    if admin_secured:
        out["admin_broadcast"]["security"] = [{"realtimeBearer": []}]
        out["admin_stats"]["security"] = [{"realtimeBearer": []}]
        out["admin_presence"]["security"] = [{"realtimeBearer": []}]
    if metrics_token:
        out["metrics"]["security"] = [{"realtimeBearer": []}]
    if not jwt:
        out["ticket"].pop("security")
    return {name: op for name, op in out.items() if name in route_names}
