"""sanic-realtime: real-time event push over WebSocket for Sanic apps.

The server-side names are imported on first use, so that ``sanic_realtime.client`` (the
Python client, on ``websockets`` alone) and the ``sanic-realtime`` command line do not
import Sanic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ChannelConfig, FilterSpec, HistoryConfig, RealtimeConfig
    from .exceptions import BadMessage, ConfigError, Forbidden, RealtimeError
    from .extension import Realtime
    from .hooks import ConnectionView
    from .hub import PublishResult

__version__ = "0.1.0"

__all__ = [
    "BadMessage",
    "ChannelConfig",
    "ConfigError",
    "ConnectionView",
    "FilterSpec",
    "Forbidden",
    "HistoryConfig",
    "PublishResult",
    "Realtime",
    "RealtimeConfig",
    "RealtimeError",
    "__version__",
]

#: name -> the module that defines it
_LAZY = {
    "ChannelConfig": ".config",
    "FilterSpec": ".config",
    "HistoryConfig": ".config",
    "RealtimeConfig": ".config",
    "BadMessage": ".exceptions",
    "ConfigError": ".exceptions",
    "Forbidden": ".exceptions",
    "ConnectionView": ".hooks",
    "RealtimeError": ".exceptions",
    "Realtime": ".extension",
    "PublishResult": ".hub",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sanic_realtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
