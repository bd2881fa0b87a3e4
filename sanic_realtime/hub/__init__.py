"""The hub: rooms, bounded per-connection buffers, fan-out, heartbeats, shutdown.

Runtime (asyncio), but no sanic. Its parts, each in its own module (imports go from
``core`` to the parts and from the parts to ``connection``; ``connection`` names
``throttle.Throttle`` for typing only):

- ``core``: :class:`Hub`, rooms, publish and fan-out, flushing, closing;
- ``registry``: connections by id and user, slots reserved before the upgrade;
- ``connection``: :class:`Connection` (its state: open, closing, closed) and
  :class:`Socket`, what the hub needs from a WebSocket;
- ``outbox``: bounded queues, the slow-client policy, drop notices, the socket writes;
- ``subscribe``: joining and leaving rooms, setting a subscription up;
- ``recovery``: events held while a subscription is set up, and the replay merge;
- ``throttle``: per-subscription intervals (``?interval=``);
- ``liveness``: heartbeat pings, ``client_timeout``, token expiry.

Frames are built by :mod:`sanic_realtime.framing`.
"""

from __future__ import annotations

from ..framing import text_frame
from ..subscriptions import SubRequest
from .connection import Connection, ConnState, Socket
from .core import LINGER_ITERATIONS, LINGER_SECONDS, Hub, PublishResult
from .outbox import CONTROL_MARGIN
from .registry import RESERVATION_TTL, Reservation
from .subscribe import InitialHook, Reply, subscribed

__all__ = [
    "CONTROL_MARGIN",
    "LINGER_ITERATIONS",
    "LINGER_SECONDS",
    "RESERVATION_TTL",
    "ConnState",
    "Connection",
    "Hub",
    "InitialHook",
    "PublishResult",
    "Reply",
    "Reservation",
    "Socket",
    "SubRequest",
    "subscribed",
    "text_frame",
]
