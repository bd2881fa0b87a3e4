"""sanic-realtime: real-time event push over WebSocket for Sanic apps."""

from .config import ChannelConfig, FilterSpec, HistoryConfig, RealtimeConfig
from .exceptions import ConfigError, RealtimeError
from .extension import Realtime
from .hub import PublishResult

__version__ = "0.1.0"

__all__ = [
    "ChannelConfig",
    "ConfigError",
    "FilterSpec",
    "HistoryConfig",
    "PublishResult",
    "Realtime",
    "RealtimeConfig",
    "RealtimeError",
    "__version__",
]
