"""Backplanes, chosen by the ``backplane`` setting. Only ``memory`` exists so far."""

from __future__ import annotations

from ..config import RealtimeConfig
from ..exceptions import ConfigError
from .base import Backplane
from .memory import MemoryBackplane

__all__ = ["Backplane", "MemoryBackplane", "create"]


def create(config: RealtimeConfig) -> Backplane:
    """The backplane that ``config.backplane`` names."""
    if config.backplane == "memory":
        return MemoryBackplane({name: config.history_for(name) for name in config.channels})
    raise ConfigError(
        "the Redis backplane is not available in this version of sanic-realtime; "
        "use 'memory' (one process)",
        "realtime.backplane",
    )
