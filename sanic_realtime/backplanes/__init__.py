"""Backplanes, chosen by the ``backplane`` setting's scheme: ``memory`` (one process)
or a Redis URL (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``: every
worker and host)."""

from __future__ import annotations

from ..channels import Histories
from ..config import RealtimeConfig
from ..exceptions import ConfigError
from .base import Backplane, Local
from .memory import MemoryBackplane

__all__ = ["REDIS_SCHEMES", "Backplane", "Local", "MemoryBackplane", "create"]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+sentinels")


def create(config: RealtimeConfig) -> Backplane:
    """The backplane that ``config.backplane`` names."""
    histories = Histories(config.catalog, config.history)
    scheme = config.backplane.partition("://")[0] if "://" in config.backplane else ""
    if config.backplane == "memory":
        return MemoryBackplane(histories)
    if scheme in REDIS_SCHEMES:
        try:
            from .redis import RedisBackplane
        except ModuleNotFoundError as e:  # only the redis package is optional
            raise ConfigError(
                f"the Redis backplane needs the redis package ({e}): "
                "pip install 'sanic-realtime[redis]'",
                "realtime.backplane",
            ) from None
        return RedisBackplane(config.backplane, histories, prefix=config.redis.prefix)
    # check_config refuses every other URL first; this guards direct callers.
    raise ConfigError(f"unsupported backplane {config.backplane!r}", "realtime.backplane")
