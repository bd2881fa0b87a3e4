"""A Python client for sanic-realtime servers, on ``websockets`` and msgspec (it imports no
Sanic).

It connects to the general route (``ws://host/ws``), subscribes with ``subscribe``
messages, and keeps the subscriptions through network trouble and server restarts: it
reconnects with exponential backoff and full jitter, and resumes each channel from the last
event id it saw, so with history on the server nothing is missed; when the server cannot
fill the gap, the caller gets a ``resume_failed`` message instead of silence. It also asks
who is on a presence channel (``await client.presence(channel)``) and sends client messages
(``await client.publish(channel, event, data)``), each matched to its reply by a ``ref``.

    async with RealtimeClient("ws://127.0.0.1:8000/ws", channels=["logs"],
                              filters={"level": "error"}) as client:
        async for event in client:
            print(event.type, event.data)

See docs/clients.md. The modules of this package:

- ``core``: :class:`RealtimeClient`, the public surface
- ``connection``: the connection loop: connect, subscribe and resume, heartbeat, reconnect
  with backoff
- ``receive``: reading a connection: events, control messages, replies, closes
- ``state``: what a client holds (options, subscriptions, resume points, the requests
  awaiting replies, in order and by ref) and its status changes
- ``status``: :class:`ConnectionStatus` and the backoff
- ``event``: :class:`Event`, its decoder and the message types the client acts on
- ``errors``: the errors it raises
- ``feed`` and ``cache``: the queue behind ``async for``, and ``latest()``/``recent()``
- ``publish``: :func:`publish`, the admin broadcast route over urllib (not the client
  messages of :meth:`RealtimeClient.publish`, sent on the WebSocket)

Every public name is imported from ``sanic_realtime.client`` itself.
"""

from __future__ import annotations

from ..protocol import PresenceData as PresenceData
from ..protocol import PresenceUser as PresenceUser
from ..protocol import Sender as Sender
from .cache import data_matches as data_matches
from .core import RealtimeClient
from .errors import (
    Dropped,
    GaveUp,
    NoReply,
    RealtimeClientError,
    Refused,
    RequestFailed,
    ServerClosed,
)
from .event import Event
from .event import Handler as Handler
from .publish import DEFAULT_BROADCAST_PATH as DEFAULT_BROADCAST_PATH
from .publish import broadcast_url as broadcast_url
from .publish import publish
from .receive import CLOSE_HEARTBEAT as CLOSE_HEARTBEAT
from .state import Token as Token
from .status import ConnectionStatus, State
from .status import StatusHandler as StatusHandler
from .status import backoff as backoff

__all__ = [
    "ConnectionStatus",
    "Dropped",
    "Event",
    "GaveUp",
    "NoReply",
    "RealtimeClient",
    "RealtimeClientError",
    "Refused",
    "RequestFailed",
    "ServerClosed",
    "State",
    "publish",
]
