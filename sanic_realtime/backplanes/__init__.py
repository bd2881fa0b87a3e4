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
    # check_config refuses every other URL first; this guards direct callers.
    raise ConfigError(f"unsupported backplane {config.backplane!r}", "realtime.backplane")
