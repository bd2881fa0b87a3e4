"""The configuration's shape: strict msgspec Structs with their defaults. Pure."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

if TYPE_CHECKING:
    from ..channels import Catalog

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
    #: ``GET {presence_path}/{channel}``: who is subscribed to a presence channel.
    presence_path: str = "/admin/ws/presence"
    #: With ``auth.mode: jwt``, a token holding this role may use the admin routes.
    role: str = "admin"
    #: A static bearer token for the admin routes; read it from the environment (``${...}``).
    #: Unset, null or empty: no token (the admin routes are open when auth is off).
    token: str | None = None
    #: A limit on ``POST broadcast_path`` per caller; null (the default): none.
    rate_limit: AdminRateLimit | None = None


class AdminRateLimit(_Strict):
    """At most ``requests`` admin broadcasts per ``per`` seconds per caller: per bearer
    token when the request has one, else per client IP."""

    #: Broadcasts allowed per window; one more gets HTTP 429 ``rate_limited``.
    requests: PositiveInt = 100
    #: The window.
    per: Duration = Duration(1.0)


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


#: What a template parameter must match unless its ``params`` entry says otherwise.
DEFAULT_PARAM_PATTERN = r"[A-Za-z0-9_-]{1,64}"


class ParamSpec(_Strict):
    """One parameter of a channel template (``orders.{order_id}``)."""

    #: What a value must be, as a Python regular expression matched against the whole
    #: value (anchored). The default: 1 to 64 letters, digits, ``_`` or ``-``.
    pattern: str = DEFAULT_PARAM_PATTERN


class PresenceConfig(_Strict):
    """Who is subscribed to a channel, per user, on every worker (``presence: true`` is
    this with its defaults)."""

    #: Send ``presence_join`` / ``presence_leave`` to the channel's subscribers when a
    #: user's first connection joins and their last one leaves.
    events: bool = True
    #: How long after a user's last connection leaves ``presence_leave`` is sent; a
    #: connection of the same user that joins within it (a page reload) cancels it.
    leave_delay: Duration = Duration(2.0)
    #: A presence query lists the users; false (huge channels): counts only.
    list: bool = True


class MessageRate(_Strict):
    """At most ``messages`` client messages per ``per`` seconds, per connection and
    channel; one more is refused with ``rate_limited`` (the connection stays open)."""

    messages: PositiveInt = 10
    per: Duration = Duration(1.0)


class ClientMessagesConfig(_Strict):
    """What subscribers may send to a channel (``{"type": "publish", ...}``); the
    server stamps the sender and fans the message out like any event."""

    #: The event types a client may send; any other is refused with ``unknown_type``.
    types: list[str]
    #: Who may send; null (the default): whoever may subscribe.
    roles: list[str] | None = None
    #: The bound per connection and channel.
    rate: MessageRate = msgspec.field(default_factory=MessageRate)
    #: Types kept in history (with ids, replayed on resume); the others are ephemeral:
    #: delivered live with ``id: null``, never replayed.
    history: list[str] = []
    #: Whether the sender gets its own message back.
    echo: bool = False
    #: Bytes of a message's ``data`` (as JSON); a larger one is refused with
    #: ``message_too_large``.
    max_size: Annotated[int, msgspec.Meta(ge=2)] = 2048
    #: How long a message handler may take; past it the message is refused with
    #: ``handler_timeout``.
    handler_timeout: Duration = Duration(5.0)


class ChannelConfig(_Strict):
    """One channel: ``{url_prefix}/{name}``, its filters and who may subscribe. A name
    with parameters in braces (``orders.{order_id}``) is a template: each instance
    (``orders.42``) is a channel of its own with these settings."""

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
    #: A template's parameters (only for a name with ``{...}``); one not listed here gets
    #: the default pattern.
    params: dict[str, ParamSpec] = {}
    #: Who is here: ``true`` (``{events: true, leave_delay: 2s, list: true}``) or a
    #: mapping of :class:`PresenceConfig` keys. False: no presence.
    presence: bool | PresenceConfig = False
    #: What subscribers may send to the channel; null: nothing.
    client_messages: ClientMessagesConfig | None = None

    @property
    def presence_config(self) -> PresenceConfig | None:
        """The presence settings, ``presence: true`` spelled out; None without presence."""
        if self.presence is True:
            return PresenceConfig()
        return self.presence or None


class RealtimeConfig(_Strict, dict=True):
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
    #: Where ``max_connections_per_user`` is counted: ``process`` (each worker on its own,
    #: free) or ``cluster`` (across every worker in Redis: one script per connect and per
    #: disconnect; needs a Redis backplane).
    connection_limits: Literal["process", "cluster"] = "process"
    #: Browser origins allowed to connect (``scheme://host[:port]``, ``*.`` for
    #: subdomains, ``*`` for any); others get HTTP 403. Requests without ``Origin`` pass.
    allowed_origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    #: ``memory`` (one process) or a Redis URL (``redis://``, ``rediss://``, ``unix://``,
    #: or ``redis+sentinel://`` through Sentinel) for several workers and hosts.
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
    #: The channels, by name (or template: ``orders.{order_id}``); a client can subscribe
    #: to no other.
    channels: dict[str, ChannelConfig] = {}
    #: Template instances (``orders.42``) one process keeps at once; a new one past it
    #: is refused with ``too_many_channels``. Static channels do not count.
    max_channels: PositiveInt = 100_000
    #: How long an ``authorize`` hook may take; past it the subscription is refused
    #: (``authorize_failed``).
    authorize_timeout: Duration = Duration(5.0)
    #: How long a graceful shutdown waits for buffered messages to be flushed.
    shutdown_timeout: Duration = Duration(5.0)

    def history_for(self, channel: str) -> HistoryConfig:
        """The history settings that apply to ``channel`` (a name, a template, or an
        instance of one)."""
        spec = self.channels.get(channel)
        if spec is None:
            spec = self.catalog.resolve(channel).spec
        return spec.history if spec.history is not None else self.history

    @property
    def catalog(self) -> Catalog:
        """The channels and templates, compiled once: :class:`~sanic_realtime.channels.Catalog`."""
        found = self.__dict__.get("_catalog")
        if found is None:
            from ..channels import Catalog

            found = self.__dict__["_catalog"] = Catalog(self.channels)
        return found
