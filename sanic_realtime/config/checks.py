"""Checks across keys that a Struct's types cannot state (a timeout longer than the
heartbeat, a known algorithm for the key, valid origins, ...). Pure."""

from __future__ import annotations

from ..exceptions import ConfigError
from ..origins import origin_problem
from ..protocol.server import CONTROL_TYPES
from .schema import (
    _FILTER_NAME_RE,
    _NAME_RE,
    _PREFIX_RE,
    RESERVED_CHANNEL_NAMES,
    RESERVED_FILTER_NAMES,
    AuthConfig,
    ChannelConfig,
    ClientMessagesConfig,
    FilterSpec,
    HistoryConfig,
    RealtimeConfig,
    ThrottleConfig,
)


def _check_path(value: str, path: str) -> None:
    if not value.startswith("/") or (len(value) > 1 and value.endswith("/")) or "//" in value:
        raise ConfigError(
            f"must be a path starting with '/' and not ending with '/': {value!r}", path
        )
    if "<" in value or ">" in value or "?" in value or "#" in value:
        raise ConfigError(
            f"must be a plain path (no parameters, query or fragment): {value!r}", path
        )


def _check_sentinel_url(url: str, path: str) -> None:
    """A ``redis+sentinel://`` URL's hosts, service, db and options."""
    try:
        # Imported here: the redis package imports this module (through ..config).
        from ..backplanes.redis.endpoints import BadRedisURL, parse
    except ModuleNotFoundError:
        return  # no redis package: loading the backplane says so
    try:
        parse(url)
    except BadRedisURL as e:
        raise ConfigError(str(e), path) from None


def check_config(config: RealtimeConfig, path: str = "realtime") -> None:
    """Checks that span several keys; raises ConfigError naming the key to fix."""
    _check_path(config.url_prefix, f"{path}.url_prefix")
    if config.url_prefix == "/":
        raise ConfigError(
            "must not be '/': the channel routes need a prefix of their own", f"{path}.url_prefix"
        )
    _check_path(config.admin.broadcast_path, f"{path}.admin.broadcast_path")
    _check_path(config.admin.stats_path, f"{path}.admin.stats_path")
    _check_path(config.admin.presence_path, f"{path}.admin.presence_path")
    if config.admin.broadcast_path == config.admin.stats_path:
        raise ConfigError("must differ from admin.stats_path", f"{path}.admin.broadcast_path")
    if config.admin.presence_path in (config.admin.broadcast_path, config.admin.stats_path):
        raise ConfigError(
            "must differ from admin.broadcast_path and admin.stats_path",
            f"{path}.admin.presence_path",
        )
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
        if not backplane.startswith(("redis+sentinel://", "redis+sentinels://")):
            raise ConfigError(
                f"must be 'memory' or a redis:// URL, got {backplane!r}", f"{path}.backplane"
            )
        _check_sentinel_url(backplane, f"{path}.backplane")
    if not _PREFIX_RE.match(config.redis.prefix):
        raise ConfigError(
            "must be letters, digits, '_', '-', '.' or ':' (no spaces), got "
            f"{config.redis.prefix!r}",
            f"{path}.redis.prefix",
        )
    if config.connection_limits == "cluster" and config.backplane == "memory":
        raise ConfigError(
            "'cluster' counts max_connections_per_user in Redis: set backplane to a Redis "
            "URL, or use connection_limits: process",
            f"{path}.connection_limits",
        )
    if config.connect_rate_limit is not None and config.connect_rate_limit.per <= 0:
        raise ConfigError("must be greater than 0", f"{path}.connect_rate_limit.per")
    if config.admin.rate_limit is not None and config.admin.rate_limit.per <= 0:
        raise ConfigError("must be greater than 0", f"{path}.admin.rate_limit.per")
    _check_auth(config.auth, f"{path}.auth")
    _check_history(config.history, f"{path}.history")

    routes = {
        config.admin.broadcast_path: "admin.broadcast_path",
        config.admin.stats_path: "admin.stats_path",
        config.admin.presence_path: "admin.presence_path",
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
        if "{" in name or "}" in name:
            _check_template(name, channel, cpath)
        elif channel.params:
            raise ConfigError(
                f"params are for templates (a name with {{...}}), and {name!r} has none",
                f"{cpath}.params",
            )
        elif not _NAME_RE.match(name):
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
        if channel.client_messages is not None:
            _check_client_messages(channel.client_messages, f"{cpath}.client_messages")
    from ..channels import Catalog

    problems = list(Catalog(config.channels).problems())
    if problems:
        raise ConfigError(f"{problems[0]}: a name must match one channel only", f"{path}.channels")
    for admin_path, key in routes.items():
        if admin_path == config.url_prefix or admin_path == f"{config.url_prefix}/health":
            raise ConfigError(f"{admin_path} clashes with a route of url_prefix", f"{path}.{key}")


def _check_client_messages(spec: ClientMessagesConfig, path: str) -> None:
    if not spec.types:
        raise ConfigError("must name at least one event type", f"{path}.types")
    for i, name in enumerate(spec.types):
        if not name or len(name) > 64 or name in CONTROL_TYPES:
            raise ConfigError(
                f"{name!r} cannot be a client message type: 1 to 64 characters, and not "
                f"one of the protocol's own types ({', '.join(CONTROL_TYPES)})",
                f"{path}.types[{i}]",
            )
    for i, name in enumerate(spec.history):
        if name not in spec.types:
            raise ConfigError(f"{name!r} is not one of types", f"{path}.history[{i}]")
    if spec.rate.per <= 0:
        raise ConfigError("must be greater than 0", f"{path}.rate.per")
    if spec.handler_timeout <= 0:
        raise ConfigError("must be greater than 0", f"{path}.handler_timeout")


def _check_template(name: str, channel: ChannelConfig, path: str) -> None:
    literals = [part for part in name.split(".") if "{" not in part and "}" not in part]
    for literal in literals:
        if not _NAME_RE.match(literal):
            raise ConfigError(
                f"invalid template {name!r}: use letters, digits, '_', '-', '.' and "
                "{param} segments",
                path,
            )
    from ..channels import Template

    try:
        Template.parse(name, {p: s.pattern for p, s in channel.params.items()})
    except ValueError as e:
        where = f"{path}.params" if "pattern" in str(e) or "params" in str(e) else path
        raise ConfigError(str(e), where) from None
    if not literals:
        raise ConfigError(
            f"invalid template {name!r}: it needs a literal segment (e.g. orders.{{id}})", path
        )


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
