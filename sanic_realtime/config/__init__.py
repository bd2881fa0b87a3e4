"""The configuration: strict msgspec Structs, loaded from YAML or built in Python.

Pure: no I/O beyond reading the file in :func:`load_yaml`, no sanic, no asyncio.

Decoding is strict (unknown keys and wrong types are errors) and every error is a
:class:`~sanic_realtime.exceptions.ConfigError` whose ``path`` names the key, e.g.
``realtime.channels.logs.filters.level.op``. msgspec writes map keys as ``[...]`` in
its paths, so the maps (``channels``, ``filters``) are converted one entry at a time
to put their names into the path.

``schema`` holds the Structs, ``loading`` reads and decodes, ``checks`` checks across keys.
"""

from __future__ import annotations

from .checks import check_config
from .loading import expand_env, load_yaml, parse_config, revalidate
from .schema import (
    RESERVED_CHANNEL_NAMES,
    RESERVED_FILTER_NAMES,
    AdminConfig,
    AdminRateLimit,
    AuthConfig,
    ChannelConfig,
    ClientMessagesConfig,
    ConnectRateLimit,
    Duration,
    FilterSpec,
    HistoryConfig,
    MessageRate,
    MetricsConfig,
    ParamSpec,
    PresenceConfig,
    RateLimit,
    RealtimeConfig,
    RedisConfig,
    ThrottleConfig,
    parse_duration,
)

__all__ = [
    "RESERVED_CHANNEL_NAMES",
    "RESERVED_FILTER_NAMES",
    "AdminConfig",
    "AdminRateLimit",
    "AuthConfig",
    "ChannelConfig",
    "ClientMessagesConfig",
    "ConnectRateLimit",
    "Duration",
    "FilterSpec",
    "HistoryConfig",
    "MessageRate",
    "MetricsConfig",
    "ParamSpec",
    "PresenceConfig",
    "RateLimit",
    "RealtimeConfig",
    "RedisConfig",
    "ThrottleConfig",
    "check_config",
    "expand_env",
    "load_yaml",
    "parse_config",
    "parse_duration",
    "revalidate",
]
