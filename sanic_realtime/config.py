"""The configuration: strict msgspec Structs, loaded from YAML or built in Python.

Pure: no I/O beyond reading the file in :func:`load_yaml`, no sanic, no asyncio.

Decoding is strict (unknown keys and wrong types are errors) and every error is a
:class:`~sanic_realtime.exceptions.ConfigError` whose ``path`` names the key, e.g.
``realtime.channels.logs.filters.level.op``. msgspec writes map keys as ``[...]`` in
its paths, so the maps (``channels``, ``filters``) are converted one entry at a time
to put their names into the path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from .exceptions import ConfigError
from .origins import origin_problem

__all__ = [
    "AdminConfig",
    "AuthConfig",
    "ChannelConfig",
    "ConnectRateLimit",
    "Duration",
    "FilterSpec",
    "HistoryConfig",
    "MetricsConfig",
    "RateLimit",
    "RealtimeConfig",
    "RedisConfig",
    "ThrottleConfig",
    "expand_env",
    "load_yaml",
    "parse_config",
    "parse_duration",
]

#: Query parameters and filter keys with a fixed meaning; a channel may not declare them.
RESERVED_FILTER_NAMES = frozenset({"types", "since", "channels", "token", "ticket", "interval"})
#: Names under ``url_prefix`` that are routes of their own, or keywords of the protocol.
RESERVED_CHANNEL_NAMES = frozenset(
    {"all", "health", "ticket", "client.js", "client.d.ts", "asyncapi.json"}
)

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")
# No dots: ``since.<channel>`` is a query parameter of the general route.
_FILTER_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# An origin, or a pattern whose first host label is ``*`` (one or more labels).
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_AT_PATH_RE = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>.*)`$", re.DOTALL)


class Duration(float):
    """Seconds. Written in YAML as ``250ms``, ``30s``, ``5m``, ``1h`` or a number of seconds."""

    def __repr__(self) -> str:
        return f"Duration({float(self)!r})"


def parse_duration(value: object) -> Duration:
    """``"250ms"`` -> 0.25; numbers are seconds. Raises ``ValueError`` naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(
            f"invalid duration {value!r}: write a number with a unit, e.g. 250ms, 30s, 5m, 1h"
        )
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return Duration(seconds)


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is Duration:
        return parse_duration(obj)
    raise NotImplementedError(f"unsupported type {tp!r}")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Duration):
        return float(obj)
    raise NotImplementedError(f"unsupported type {type(obj)!r}")


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every config Struct: unknown keys are errors."""


PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class RateLimit(_Strict):
    """At most ``messages`` client frames per ``per`` seconds."""

    #: Frames allowed per window; one more closes the connection with 4429.
    messages: PositiveInt = 50
    #: The window.
    per: Duration = Duration(1.0)


class HistoryConfig(_Strict):
    """The last ``size`` events of a channel, each kept at most ``ttl`` seconds."""

    #: Events kept per channel for resume (``since``) and ``initial: last``; 0 keeps none.
    size: Annotated[int, msgspec.Meta(ge=0)] = 1000
    #: How long an event stays resumable.
    ttl: Duration = Duration(600.0)
    #: ``initial: last`` looks at most this many of the newest kept events for one that
    #: matches the subscriber's filters (newest first); none among them: no
    #: ``initial_state``. Bounds what one subscribe makes the server read and decode.
    initial_scan: PositiveInt = 100


class AuthConfig(_Strict):
    """How WebSocket clients and admin callers prove who they are (``mode: jwt``).

    Keys: ``jwt_secret`` for HS256/384/512; for RS*/PS*/ES*/EdDSA one of ``public_key``
    (PEM text, usually ``${VAR}``), ``public_key_file`` (a PEM file) or ``jwks_file``
    (a JSON Web Key Set; the token's ``kid`` picks the key).
    """

    #: ``none``: every client may connect and subscribe to every channel. ``jwt``: a
    #: client must present a valid JWT (header, ``bearer`` subprotocol, ``?token=``, or a
    #: one-time ``?ticket=``); its roles decide which channels it may subscribe to.
    mode: Literal["none", "jwt"] = "none"
    #: With ``mode: jwt``: a WebSocket connection that presents no credential at all is let
    #: in anonymously (no user, no roles): it may subscribe to channels without ``roles``
    #: and gets untargeted events. A credential that is present must still be valid.
    anonymous: bool = False
    #: The HMAC secret of HS256/384/512 (at least as long as the hash: 32, 48, 64 bytes).
    #: Secrets usually come from ``${VAR:-}``, which leaves YAML a null when unset.
    jwt_secret: str | None = None
    #: A PEM public key (RS*, PS*, ES*, EdDSA), usually from ``${VAR}``.
    public_key: str | None = None
    #: A file holding a PEM public key.
    public_key_file: str | None = None
    #: A file holding a JSON Web Key Set; the token's ``kid`` picks the key.
    jwks_file: str | None = None
    #: Accepted algorithms; HS* and public-key algorithms cannot be mixed, ``none`` never.
    algorithms: list[str] = msgspec.field(default_factory=lambda: ["HS256"])
    #: Checked when set: the token's ``aud`` must name one of these.
    audience: str | list[str] | None = None
    #: Checked when set: the token's ``iss`` must equal it.
    issuer: str | None = None
    #: The claim that names the user (``user_id`` in targeted publishes).
    user_claim: str = "sub"
    #: The claim that holds the roles: a string (one role) or a list of strings (several).
    role_claim: str = "role"
    #: Tokens without ``exp`` are refused (a token must not be valid forever).
    require_exp: bool = True
    #: Allowed clock skew, also added to ``exp`` before a live connection is closed.
    leeway: Duration = Duration(0.0)
    #: Lifetime of a one-time ticket minted by ``POST {url_prefix}/ticket``.
    ticket_ttl: Duration = Duration(30.0)


class AdminConfig(_Strict):
    """The admin routes: publish over HTTP, and the server's figures."""

    #: ``POST``: publish ``{"channel", "type", "data", "target"?}``.
    broadcast_path: str = "/admin/ws/broadcast"
    #: ``GET``: connections by channel and role, messages sent and dropped, uptime.
    stats_path: str = "/admin/ws/stats"
    #: With ``auth.mode: jwt``, a token holding this role may use the admin routes.
    role: str = "admin"
    #: A static bearer token for the admin routes; read it from the environment (``${...}``).
    #: Unset, null or empty: no token (the admin routes are open when auth is off).
    token: str | None = None


class ConnectRateLimit(_Strict):
    """At most ``connections`` WebSocket handshakes (and tickets) per ``per`` seconds per
    client IP (``request.remote_addr`` when a proxy is configured in Sanic, else the peer)."""

    #: Handshakes (and tickets) allowed per window; one more gets HTTP 429.
    connections: PositiveInt = 20
    #: The window.
    per: Duration = Duration(10.0)


class FilterSpec(_Strict):
    """One declared filter of a channel.

    ``eq``: the event's field is one of the client's values (``a,b`` = any of).
    ``min``: the field's position in ``order`` is at least the client's value's.
    ``flag``: when the client sets it true, the field must equal ``equals``.
    """

    #: How the client's value is compared with the event's field.
    op: Literal["eq", "min", "flag"] = "eq"
    #: The event data field to read (dotted for nesting: ``log.level``); default: the filter's name.
    field: str | None = None
    #: ``min`` only: the values from lowest to highest (required for ``min``).
    order: list[str] | None = None
    #: ``flag`` only: the value the field must have when the client sets the flag.
    equals: bool | int | str | None = None


class RedisConfig(_Strict):
    """Settings of the Redis backplane (used when ``backplane`` is a Redis URL)."""

    #: Every key and pub/sub channel starts with ``{prefix}:``, so several apps (or test
    #: runs) can share one Redis database. Apps that share a prefix share channels.
    prefix: str = "realtime"


class ThrottleConfig(_Strict):
    """Per-subscription throttling: a client that asks ``?interval=5s`` (or ``interval`` in
    a ``subscribe`` filter) gets at most one event per ``key`` value per interval, and
    always the latest one; the events in between are skipped on purpose (conflation).
    For channels of states (stats, prices, gauges), never for streams of records (logs)."""

    #: The shortest interval a client may ask for.
    min: Duration = Duration(1.0)
    #: The longest interval a client may ask for.
    max: Duration = Duration(60.0)
    #: The interval of a subscription that asks for none (0: not throttled).
    default: Duration = Duration(0.0)
    #: The event data field (dotted for nesting) whose values are throttled separately,
    #: e.g. ``window``: the latest of each window. Null: the whole channel is one value.
    key: str | None = None


class MetricsConfig(_Strict):
    """Prometheus metrics (docs/reference/metrics.md): served at ``path`` in the text
    exposition format. With ``--workers N`` every worker's figures are summed into each
    scrape (prometheus_client's multiprocess mode)."""

    #: Serve the metrics (off by default, as in Centrifugo: the figures name channels).
    enabled: bool = False
    #: Where to serve them, at the root of the app (not under ``url_prefix``).
    path: str = "/metrics"
    #: A bearer token the scraper must send (``Authorization: Bearer ...``); read it from
    #: the environment (``${...}``). Unset, null or empty: the path is open, so keep it
    #: off public networks.
    token: str | None = None


class ChannelConfig(_Strict):
    """One channel: ``{url_prefix}/{name}``, its filters and who may subscribe."""

    #: Query parameters a subscriber may filter events with (``?level=warn``).
    filters: dict[str, FilterSpec] = {}
    #: Lets each subscriber ask for at most one event per interval (``?interval=``).
    throttle: ThrottleConfig | None = None
    #: ``last``: a new subscriber first gets the channel's last event as ``initial_state``.
    initial: Literal["none", "last"] = "none"
    #: Overrides the top-level ``history`` for this channel.
    history: HistoryConfig | None = None
    #: Who may subscribe when auth is on (ignored with ``auth.mode: none``).
    roles: list[str] = []


class RealtimeConfig(_Strict):
    """The ``realtime:`` key of the YAML file."""

    #: Where the WebSocket routes live: ``{url_prefix}``, ``{url_prefix}/{channel}``,
    #: ``{url_prefix}/health``, ``/ticket``, ``/client.js``, ``/asyncapi.json``.
    url_prefix: str = "/ws"
    #: Connections per server process; one more gets HTTP 503 before the upgrade.
    max_clients: PositiveInt = 1000
    #: Events queued per connection: the bound on a slow client's memory.
    buffer_size: PositiveInt = 256
    #: What a full buffer does: close with 4008 (the client resumes without loss), or
    #: drop the oldest event and tell the client (``messages_dropped``).
    slow_client: Literal["disconnect", "drop_oldest"] = "disconnect"
    #: Bytes per client frame; a larger one closes the connection with 1009.
    max_message_size: Annotated[int, msgspec.Meta(ge=64)] = 4096
    #: How often the server pings each client.
    heartbeat_interval: Duration = Duration(30.0)
    #: A client silent (no frame, no pong) for this long is closed with 1011.
    client_timeout: Duration = Duration(90.0)
    #: Client-to-server frames per connection; over it: close with 4429.
    client_rate_limit: RateLimit = msgspec.field(default_factory=RateLimit)
    #: Handshakes per client IP; over it: HTTP 429 with Retry-After. Null: no limit.
    connect_rate_limit: ConnectRateLimit | None = None
    #: Channels one connection may be subscribed to at once. Null: no limit.
    max_subscriptions: PositiveInt | None = None
    #: Open connections per authenticated user (all tabs, all devices). Null: no limit.
    max_connections_per_user: PositiveInt | None = None
    #: Browser origins allowed to connect (``scheme://host[:port]``, ``*.`` for
    #: subdomains, ``*`` for any); others get HTTP 403. Requests without ``Origin`` pass.
    allowed_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    #: ``memory`` (one process) or a Redis URL (``redis://``, ``rediss://``, ``unix://``)
    #: for several workers and hosts.
    backplane: str = "memory"
    #: Settings of the Redis backplane.
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)
    #: What each channel keeps for resume, unless the channel sets its own.
    history: HistoryConfig = msgspec.field(default_factory=HistoryConfig)
    #: Who may connect, and with which roles.
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    #: The admin broadcast and stats routes.
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    #: Prometheus metrics.
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    #: The channels, by name; a client can subscribe to no other.
    channels: dict[str, ChannelConfig] = {}
    #: How long a graceful shutdown waits for buffered messages to be flushed.
    shutdown_timeout: Duration = Duration(5.0)

    def history_for(self, channel: str) -> HistoryConfig:
        """The history settings that apply to ``channel``."""
        own = self.channels[channel].history
        return own if own is not None else self.history


# --------------------------------------------------------------------------- loading


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (default also when VAR is empty, as in sh)."""
    env = os.environ if environ is None else environ

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:  # set but empty, no default: empty is what was asked for
            return value
        line = text.count("\n", 0, m.start()) + 1
        raise ConfigError(
            f"environment variable {name} is not set (line {line}); "
            f"set it or write ${{{name}:-default}}"
        )

    return _ENV_RE.sub(repl, text)


def load_yaml(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> RealtimeConfig:
    """Read ``path``, expand ``${VAR}``, decode its ``realtime:`` key strictly, and check it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {os.fspath(path)!r}: {e}") from None
    text = expand_env(text, environ)
    try:
        document = msgspec.yaml.decode(text)
    except msgspec.DecodeError as e:
        raise ConfigError(f"{os.fspath(path)} is not valid YAML: {e}") from None
    if not isinstance(document, dict) or "realtime" not in document:
        raise ConfigError(f"{os.fspath(path)} has no top-level 'realtime:' key", "realtime")
    return parse_config(document["realtime"] or {})


def _error_from(e: msgspec.ValidationError, prefix: str) -> ConfigError:
    m = _AT_PATH_RE.match(str(e))
    if m is None:
        return ConfigError(str(e), prefix)
    return ConfigError(m.group("msg"), prefix + m.group("path"))


def _convert(obj: Any, tp: type[Any], path: str) -> Any:
    try:
        return msgspec.convert(obj, tp, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _error_from(e, path) from None


def _mapping(obj: Any, path: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"expected a mapping, got {type(obj).__name__}", path)
    for key in obj:
        if not isinstance(key, str):
            raise ConfigError(f"keys must be strings, got {key!r}", path)
    return dict(obj)


def parse_config(data: Any, path: str = "realtime") -> RealtimeConfig:
    """Decode builtins (a YAML or JSON document's ``realtime`` value) into a checked config."""
    data = _mapping(data, path)
    channels: dict[str, ChannelConfig] = {}
    for name, raw_channel in _mapping(data.pop("channels", None), f"{path}.channels").items():
        cpath = f"{path}.channels.{name}"
        raw_channel = _mapping(raw_channel, cpath)
        filters = {
            fname: _convert(
                _mapping(raw_filter, f"{cpath}.filters.{fname}"),
                FilterSpec,
                f"{cpath}.filters.{fname}",
            )
            for fname, raw_filter in _mapping(
                raw_channel.pop("filters", None), f"{cpath}.filters"
            ).items()
        }
        channel = _convert(raw_channel, ChannelConfig, cpath)
        channels[name] = msgspec.structs.replace(channel, filters=filters)
    config: RealtimeConfig = _convert(data, RealtimeConfig, path)
    config = msgspec.structs.replace(config, channels=channels)
    check_config(config, path)
    return config


def revalidate(config: RealtimeConfig) -> RealtimeConfig:
    """Check a config built in Python exactly as a YAML file would be checked."""
    if not isinstance(config, RealtimeConfig):
        raise ConfigError(f"expected a RealtimeConfig, got {type(config).__name__}")
    try:
        builtins = msgspec.to_builtins(config, enc_hook=_enc_hook)
    except TypeError as e:
        raise ConfigError(str(e), "realtime") from None
    return parse_config(builtins)


# --------------------------------------------------------------------------- cross-key checks


def _check_path(value: str, path: str) -> None:
    if not value.startswith("/") or (len(value) > 1 and value.endswith("/")) or "//" in value:
        raise ConfigError(
            f"must be a path starting with '/' and not ending with '/': {value!r}", path
        )
    if "<" in value or ">" in value or "?" in value or "#" in value:
        raise ConfigError(
            f"must be a plain path (no parameters, query or fragment): {value!r}", path
        )


def check_config(config: RealtimeConfig, path: str = "realtime") -> None:
    """Checks that span several keys; raises ConfigError naming the key to fix."""
    _check_path(config.url_prefix, f"{path}.url_prefix")
    if config.url_prefix == "/":
        raise ConfigError(
            "must not be '/': the channel routes need a prefix of their own", f"{path}.url_prefix"
        )
    _check_path(config.admin.broadcast_path, f"{path}.admin.broadcast_path")
    _check_path(config.admin.stats_path, f"{path}.admin.stats_path")
    if config.admin.broadcast_path == config.admin.stats_path:
        raise ConfigError("must differ from admin.stats_path", f"{path}.admin.broadcast_path")
    _check_path(config.metrics.path, f"{path}.metrics.path")

    for key in ("heartbeat_interval", "client_timeout", "shutdown_timeout"):
        if getattr(config, key) <= 0:
            raise ConfigError("must be greater than 0", f"{path}.{key}")
    if config.client_rate_limit.per <= 0:
        raise ConfigError("must be greater than 0", f"{path}.client_rate_limit.per")
    if config.client_timeout <= config.heartbeat_interval:
        raise ConfigError(
            f"must be longer than heartbeat_interval ({config.heartbeat_interval:g}s), "
            "or clients that only answer pings are closed",
            f"{path}.client_timeout",
        )
    if not config.allowed_origins:
        raise ConfigError(
            "must not be empty: write ['*'] to allow every origin", f"{path}.allowed_origins"
        )
    for i, origin in enumerate(config.allowed_origins):
        if (problem := origin_problem(origin)) is not None:
            raise ConfigError(problem, f"{path}.allowed_origins[{i}]")
    backplane = config.backplane
    if backplane != "memory" and not backplane.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(
            f"must be 'memory' or a redis:// URL, got {backplane!r}", f"{path}.backplane"
        )
    if not _PREFIX_RE.match(config.redis.prefix):
        raise ConfigError(
            "must be letters, digits, '_', '-', '.' or ':' (no spaces), got "
            f"{config.redis.prefix!r}",
            f"{path}.redis.prefix",
        )
    if config.connect_rate_limit is not None and config.connect_rate_limit.per <= 0:
        raise ConfigError("must be greater than 0", f"{path}.connect_rate_limit.per")
    _check_auth(config.auth, f"{path}.auth")
    _check_history(config.history, f"{path}.history")

    routes = {
        config.admin.broadcast_path: "admin.broadcast_path",
        config.admin.stats_path: "admin.stats_path",
    }
    if config.metrics.enabled:
        if config.metrics.path in routes:
            raise ConfigError(
                f"{config.metrics.path} is also {routes[config.metrics.path]}",
                f"{path}.metrics.path",
            )
        routes[config.metrics.path] = "metrics.path"
    for name, channel in config.channels.items():
        cpath = f"{path}.channels.{name}"
        if not name:
            raise ConfigError("channel names must not be empty", f"{path}.channels")
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"invalid channel name {name!r}: use letters, digits, '_', '-' and '.'",
                f"{path}.channels",
            )
        if name in RESERVED_CHANNEL_NAMES:
            raise ConfigError(
                f"{name!r} is reserved (reserved: {', '.join(sorted(RESERVED_CHANNEL_NAMES))})",
                cpath,
            )
        route = f"{config.url_prefix}/{name}"
        if route in routes:
            raise ConfigError(f"the channel route {route} clashes with {routes[route]}", cpath)
        if channel.history is not None:
            _check_history(channel.history, f"{cpath}.history")
        for fname, spec in channel.filters.items():
            _check_filter(fname, spec, f"{cpath}.filters.{fname}")
        if channel.throttle is not None:
            _check_throttle(channel.throttle, f"{cpath}.throttle")
    for admin_path, key in routes.items():
        if admin_path == config.url_prefix or admin_path == f"{config.url_prefix}/health":
            raise ConfigError(f"{admin_path} clashes with a route of url_prefix", f"{path}.{key}")


def _check_throttle(throttle: ThrottleConfig, path: str) -> None:
    if throttle.min <= 0:
        raise ConfigError("must be greater than 0", f"{path}.min")
    if throttle.max < throttle.min:
        raise ConfigError(f"must be at least min ({throttle.min:g}s)", f"{path}.max")
    if throttle.default and not throttle.min <= throttle.default <= throttle.max:
        raise ConfigError(
            f"must be 0 (not throttled) or between min and max "
            f"({throttle.min:g}s..{throttle.max:g}s)",
            f"{path}.default",
        )
    if throttle.key is not None and not all(throttle.key.split(".")):
        raise ConfigError(f"not a field path: {throttle.key!r}", f"{path}.key")


#: RFC 7518 section 3.2: an HMAC key at least as long as the hash.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


def _check_auth(auth: AuthConfig, path: str) -> None:
    """With ``mode: jwt``, the key material must fit the algorithms. (With ``mode: none``
    the other auth keys are not used, and not checked.) Key files are read, and their
    contents checked, when :class:`~sanic_realtime.Realtime` is built."""
    if auth.mode == "none":
        return
    from jwt.algorithms import get_default_algorithms  # PyJWT: a required dependency

    known = set(get_default_algorithms()) - {"none"}
    if not auth.algorithms:
        raise ConfigError("must list at least one algorithm, e.g. [HS256]", f"{path}.algorithms")
    for i, alg in enumerate(auth.algorithms):
        if alg not in known:
            raise ConfigError(
                f"unknown or unsafe algorithm {alg!r} (known: {', '.join(sorted(known))})",
                f"{path}.algorithms[{i}]",
            )
    hmac = [a for a in auth.algorithms if a.startswith("HS")]
    if hmac and len(hmac) != len(auth.algorithms):
        raise ConfigError(
            "do not mix HMAC (HS*) and public-key algorithms: a public key must never be "
            "accepted as an HMAC secret",
            f"{path}.algorithms",
        )
    if not auth.user_claim:
        raise ConfigError("must not be empty", f"{path}.user_claim")
    if not auth.role_claim:
        raise ConfigError("must not be empty", f"{path}.role_claim")
    if auth.ticket_ttl <= 0:
        raise ConfigError("must be greater than 0", f"{path}.ticket_ttl")
    if hmac:
        if not auth.jwt_secret:
            raise ConfigError(
                f"{', '.join(hmac)} needs a secret: set jwt_secret, from the environment "
                "(jwt_secret: ${REALTIME_JWT_SECRET})",
                f"{path}.jwt_secret",
            )
        need = max(_HMAC_MIN_BYTES[a] for a in hmac)
        if len(auth.jwt_secret.encode()) < need:
            raise ConfigError(
                f"too short for {', '.join(hmac)}: use at least {need} bytes (RFC 7518 3.2), "
                "e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'",
                f"{path}.jwt_secret",
            )
        for key in ("public_key", "public_key_file", "jwks_file"):
            if getattr(auth, key):
                raise ConfigError(
                    f"{key} is for public-key algorithms; {', '.join(hmac)} use jwt_secret",
                    f"{path}.{key}",
                )
        return
    given = [k for k in ("public_key", "public_key_file", "jwks_file") if getattr(auth, k)]
    if len(given) != 1:
        raise ConfigError(
            f"{', '.join(auth.algorithms)} need exactly one of public_key, public_key_file "
            f"or jwks_file (got {', '.join(given) or 'none'})",
            f"{path}.{given[1] if len(given) > 1 else 'public_key'}",
        )
    if auth.jwt_secret:
        raise ConfigError(
            "jwt_secret is for HS* algorithms; public-key algorithms verify with a public key",
            f"{path}.jwt_secret",
        )


def _check_history(history: HistoryConfig, path: str) -> None:
    if history.ttl <= 0:
        raise ConfigError("must be greater than 0", f"{path}.ttl")


def _check_filter(name: str, spec: FilterSpec, path: str) -> None:
    if not name or not _FILTER_NAME_RE.match(name):
        raise ConfigError(f"invalid filter name {name!r}: use letters, digits, '_' and '-'", path)
    if name in RESERVED_FILTER_NAMES:
        raise ConfigError(
            f"{name!r} is a reserved query parameter ({', '.join(sorted(RESERVED_FILTER_NAMES))})",
            path,
        )
    if spec.field is not None and (not spec.field or any(not p for p in spec.field.split("."))):
        raise ConfigError(f"invalid field path {spec.field!r}", f"{path}.field")
    if spec.op == "min":
        if not spec.order:
            raise ConfigError(
                "a 'min' filter needs an 'order' list (lowest first)", f"{path}.order"
            )
        if len(set(spec.order)) != len(spec.order):
            raise ConfigError("values in 'order' must be unique", f"{path}.order")
    elif spec.order is not None:
        raise ConfigError(
            f"'order' only applies to op: min (this filter is op: {spec.op})", f"{path}.order"
        )
    if spec.op != "flag" and spec.equals is not None:
        raise ConfigError(
            f"'equals' only applies to op: flag (this filter is op: {spec.op})", f"{path}.equals"
        )
