"""The query parameters of the WebSocket routes, as JSON Schemas (one per parameter).

Pure. The AsyncAPI document puts them in each route's ``ws`` binding; the OpenAPI
document lists them as the routes' query parameters.
"""

from __future__ import annotations

from typing import Any

from ..config import ChannelConfig, FilterSpec, RealtimeConfig, ThrottleConfig

__all__ = [
    "FLAG_VALUES",
    "any_channel_query",
    "channel_query",
    "filter_schema",
    "general_query",
]

#: What a ``flag`` filter accepts (in any case).
FLAG_VALUES = ("true", "false", "1", "0", "yes", "no")


def filter_schema(name: str, spec: FilterSpec) -> dict[str, Any]:
    """The query parameter (a string) of one declared filter, as a JSON Schema."""
    field = spec.field or name
    if spec.op == "min":
        order = list(spec.order or [])
        return {
            "type": "string",
            "enum": order,
            "description": f"`min` filter on the event's `{field}`: events whose `{field}` is "
            f"this value or a later one in the order {', '.join(order)}.",
        }
    if spec.op == "flag":
        equals = True if spec.equals is None else spec.equals
        return {
            "type": "string",
            "enum": list(FLAG_VALUES),
            "description": f"`flag` filter (any case): when true, only events whose `{field}` "
            f"equals {_json_text(equals)}; when false, no filtering.",
        }
    return {
        "type": "string",
        "minLength": 1,
        "description": f"`eq` filter on the event's `{field}`: comma-separated values, any of "
        "(exact, case-sensitive; numbers and booleans compare by their JSON text).",
    }


def _json_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _interval_schema(throttles: dict[str, ThrottleConfig]) -> dict[str, Any]:
    bounds = "; ".join(
        f"{channel}: {t.min:g}s to {t.max:g}s, default {t.default:g}s (0: none)"
        + (f", one event per `{t.key}` value" if t.key else "")
        for channel, t in throttles.items()
    )
    return {
        "type": "string",
        "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(ms|s|m|h)?\s*$",
        "description": "Throttling: at most one event (the latest) per interval, a duration "
        f"(`5s`, `500ms`, `1m`) or seconds. Channels that allow it: {bounds}.",
        "examples": ["5s"],
    }


_SINCE = {
    "type": "string",
    "pattern": r"^.+:[0-9]{1,19}$",
    "description": "Resume after this event id: the missed events that match are replayed "
    "(recovered: true), or none (recovered: false).",
    "examples": ["k3x9:41"],
}
_TYPES = {
    "type": "string",
    "minLength": 1,
    "description": "Built in: only events whose type is one of these (comma-separated).",
    "examples": ["log_update"],
}


def _auth_params(config: RealtimeConfig) -> dict[str, Any]:
    if config.auth.mode != "jwt":
        return {}
    return {
        "token": {
            "type": "string",
            "description": "A JWT, for clients that can do nothing else (URLs end up in logs: "
            "prefer the Authorization header, the bearer subprotocol or a ticket).",
        },
        "ticket": {
            "type": "string",
            "description": f"A one-time ticket from POST {config.url_prefix}/ticket (browsers).",
        },
    }


def channel_query(config: RealtimeConfig, name: str, channel: ChannelConfig) -> dict[str, Any]:
    """``GET {prefix}/{name}``: the channel's filters, ``types``, ``interval`` when it is
    throttled, ``since``, and the credentials."""
    properties: dict[str, Any] = {
        fname: filter_schema(fname, spec) for fname, spec in channel.filters.items()
    }
    properties["types"] = _TYPES
    if channel.throttle is not None:
        properties["interval"] = _interval_schema({name: channel.throttle})
    properties["since"] = _SINCE
    properties.update(_auth_params(config))
    return _object(properties, "Any other parameter is refused with 400 unknown_filter.")


def any_channel_query(config: RealtimeConfig) -> dict[str, Any]:
    """``GET {prefix}/{channel}`` for whichever channel: every declared filter (each says
    which channels declare it), ``types``, ``interval``, ``since``, the credentials."""
    properties = _every_filter(config, "Declared by")
    properties["types"] = _TYPES
    properties.update(_interval(config))
    properties["since"] = _SINCE
    properties.update(_auth_params(config))
    return _object(
        properties,
        "A filter the path's channel does not declare is refused with 400 unknown_filter.",
    )


def general_query(config: RealtimeConfig) -> dict[str, Any]:
    """``GET {prefix}``: ``channels``, every declared filter, ``types``, ``interval``,
    ``since`` and ``since.<channel>``, the credentials."""
    names = list(config.channels)
    properties: dict[str, Any] = {
        "channels": {
            "type": "string",
            "description": "Comma-separated channels to subscribe to at once (of: "
            f"{', '.join(names) or 'none configured'}); `all`: every channel the client may "
            "see. Without it the connection opens with no subscription: send subscribe "
            "messages. Filters and since need it.",
            "examples": [",".join(names[:2]) or "all"],
        }
    }
    properties.update(_every_filter(config, "Applies to the listed channels that declare it:"))
    properties["types"] = _TYPES
    properties.update(_interval(config))
    properties["since"] = {
        **_SINCE,
        "description": "Resume point when exactly one channel is listed (else since.<channel>).",
    }
    for cname in names:
        properties[f"since.{cname}"] = {
            **_SINCE,
            "description": f"Resume channel {cname} after this event id ({cname} must be listed).",
        }
    properties.update(_auth_params(config))
    return _object(
        properties,
        "A parameter that none of the listed channels declares is refused with 400 "
        "unknown_filter. A parameter given twice has its values joined with ','.",
    )


def _object(properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "description": description,
    }


def _interval(config: RealtimeConfig) -> dict[str, Any]:
    throttles = {c: ch.throttle for c, ch in config.channels.items() if ch.throttle is not None}
    return {"interval": _interval_schema(throttles)} if throttles else {}


def _every_filter(config: RealtimeConfig, lead: str) -> dict[str, Any]:
    """Each filter name declared by any channel; one name declared with different meanings
    is a plain string whose description gives each channel's."""
    declared: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for cname, channel in config.channels.items():
        for fname, spec in channel.filters.items():
            declared.setdefault(fname, []).append((cname, filter_schema(fname, spec)))
    properties: dict[str, Any] = {}
    for fname, uses in declared.items():
        on = ", ".join(cname for cname, _ in uses)
        first = uses[0][1]
        if all(schema == first for _, schema in uses):
            schema = dict(first)
        else:
            schema = {
                "type": "string",
                "description": " ".join(
                    f"On {cname}: {use['description']}"
                    + (f" ({', '.join(use['enum'])})" if "enum" in use else "")
                    for cname, use in uses
                ),
            }
        schema["description"] = f"{lead} {on}. {schema['description']}"
        properties[fname] = schema
    return properties
