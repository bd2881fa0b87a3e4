"""From what a client asked (query string or ``subscribe`` message) to validated
subscription requests. Pure: no I/O.

Rules (docs/protocol.md): ``all`` means every configured channel; each filter
parameter applies to the listed channels that declare it, and one that none of them
declares is an error; ``since`` maps a listed channel to the id of the last event the
client has.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import NamedTuple

from .config import RealtimeConfig
from .events import EventId
from .exceptions import BadMessage, BadSince, Forbidden, UnknownFilter
from .filters import Filter, FilterParam, compile_filter, split_filter_params

__all__ = [
    "ALL",
    "AUTH_PARAMS",
    "SubRequest",
    "channel_plan",
    "check_subscription_limit",
    "general_plan",
    "may_subscribe",
    "plan_subscription",
    "resolve_channels",
]

ALL = "all"


class SubRequest(NamedTuple):
    """One channel of a subscription, validated: its compiled filter and resume point."""

    channel: str
    filter: Filter | None
    since: EventId | None = None


def may_subscribe(config: RealtimeConfig, channel: str, roles: Collection[str] | None) -> bool:
    """``roles`` None: auth is off, every channel is open. Otherwise a channel that lists
    ``roles`` (a template's instances: the template's) needs one of them."""
    allowed = config.catalog.resolve(channel).spec.roles
    return roles is None or not allowed or any(r in roles for r in allowed)


def resolve_channels(
    config: RealtimeConfig, names: Iterable[str], roles: Collection[str] | None = None
) -> list[str]:
    """Expand ``all`` (to the static channels ``roles`` may see: templates have no list
    of instances), drop duplicates (keeping order), refuse unknown names (404), instance
    names whose parameters fail their patterns (400) and channels ``roles`` may not see
    (403)."""
    catalog = config.catalog
    out: dict[str, None] = {}
    for name in names:
        if name == ALL:
            out.update(dict.fromkeys(c for c in catalog.static if may_subscribe(config, c, roles)))
            continue
        spec = catalog.resolve(name).spec
        if roles is None or not spec.roles or any(r in roles for r in spec.roles):
            out[name] = None
        else:
            need = ", ".join(spec.roles)
            raise Forbidden(f"channel {name!r} needs one of the roles: {need}")
    return list(out)


def check_subscription_limit(config: RealtimeConfig, total: int) -> None:
    """``max_subscriptions``: ``total`` is what the connection would hold afterwards."""
    limit = config.max_subscriptions
    if limit is not None and total > limit:
        raise BadMessage(
            f"too many subscriptions: at most {limit} channels per connection "
            f"(this would make {total})",
            code="too_many_subscriptions",
        )


def plan_subscription(
    config: RealtimeConfig,
    channels: Sequence[str],
    params: Mapping[str, FilterParam],
    since: Mapping[str, str],
    *,
    since_names: Mapping[str, str] | None = None,
    roles: Collection[str] | None = None,
) -> list[SubRequest]:
    """Validate and compile. ``since_names`` maps a channel to the name the client used
    for its ``since`` (for error messages), e.g. ``since.logs`` in a query string.
    ``roles``: the client's roles when auth is on (None: off)."""
    names = resolve_channels(config, channels, roles)
    if not names:
        raise BadMessage("no channels to subscribe to", code="invalid_message")
    specs = {n: config.catalog.resolve(n).spec for n in names}
    per_channel = split_filter_params(specs, params)
    resume: dict[str, EventId] = {}
    for channel, text in since.items():
        param = (since_names or {}).get(channel, f"since.{channel}")
        if channel not in names:
            raise BadSince(
                param, f"{param} names channel {channel!r}, which is not subscribed here"
            )
        try:
            resume[channel] = EventId.parse(text)
        except ValueError as e:
            raise BadSince(param, f"{param}: {e}") from None
    return [
        SubRequest(
            name,
            compile_filter(name, specs[name].filters, per_channel[name], specs[name].throttle),
            resume.get(name),
        )
        for name in names
    ]


# --------------------------------------------------------------------------- query strings

#: Query parameters read by authentication, never filters.
AUTH_PARAMS = frozenset({"token", "ticket"})


def channel_plan(
    config: RealtimeConfig,
    channel: str,
    query: Mapping[str, str],
    roles: tuple[str, ...] | None = None,
) -> list[SubRequest]:
    """``GET {prefix}/{channel}?level=warn&types=a,b&since=<id>``."""
    params: dict[str, FilterParam] = {}
    since: dict[str, str] = {}
    for key, value in query.items():
        if key == "since":
            since[channel] = value
        elif key not in AUTH_PARAMS:
            params[key] = value
    return plan_subscription(
        config, [channel], params, since, since_names={channel: "since"}, roles=roles
    )


def general_plan(
    config: RealtimeConfig, query: Mapping[str, str], roles: tuple[str, ...] | None = None
) -> list[SubRequest]:
    """``GET {prefix}?channels=a,b&level=warn&since.a=<id>``; no channels: subscribe later."""
    channels: list[str] = []
    params: dict[str, FilterParam] = {}
    since: dict[str, str] = {}
    names: dict[str, str] = {}
    bare_since: str | None = None
    for key, value in query.items():
        if key == "channels":
            channels = [c.strip() for c in value.split(",") if c.strip()]
        elif key == "since":
            bare_since = value
        elif key.startswith("since."):
            since[key[6:]] = value
            names[key[6:]] = key
        elif key not in AUTH_PARAMS:
            params[key] = value
    if not channels:
        if params:
            param = next(iter(params))
            raise UnknownFilter(param, f"filter {param!r} needs ?channels= on the general endpoint")
        if since or bare_since is not None:
            raise BadSince("since", "since needs ?channels= on the general endpoint")
        return []
    if bare_since is not None:
        resolved = resolve_channels(config, channels, roles)
        if len(resolved) != 1:
            raise BadSince("since", "with several channels, write since.<channel>=<id>")
        if since:
            raise BadSince("since", "give since or since.<channel>, not both")
        since, names = {resolved[0]: bare_since}, {resolved[0]: "since"}
    return plan_subscription(config, channels, params, since, since_names=names, roles=roles)
