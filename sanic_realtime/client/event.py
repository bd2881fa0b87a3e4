"""What the client reads: :class:`Event`, its decoder, the message types it acts on (taken
from :mod:`sanic_realtime.protocol`), and how a handler is called."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any, Final, TypeAlias

import msgspec

from ..protocol import (
    ConnectionEstablished,
    InBandError,
    InitialState,
    Pong,
    Subscribed,
    Unsubscribed,
)

__all__ = ["Event", "Handler"]

#: One logger for the whole client (``sanic_realtime.client``), whichever module logs.
logger = logging.getLogger("sanic_realtime.client")


def wire_type(message: type[msgspec.Struct]) -> str:
    """The ``type`` a protocol message has on the wire: its Struct's tag."""
    tag = message.__struct_config__.tag
    assert isinstance(tag, str), f"{message.__name__} is not a tagged protocol message"
    return tag


#: The server's control messages the client acts on.
CONNECTION_ESTABLISHED: Final = wire_type(ConnectionEstablished)
SUBSCRIBED: Final = wire_type(Subscribed)
UNSUBSCRIBED: Final = wire_type(Unsubscribed)
INITIAL_STATE: Final = wire_type(InitialState)
PONG: Final = wire_type(Pong)
ERROR: Final = wire_type(InBandError)
#: The client's own message (the browser client's too): a resume the server could not fill.
RESUME_FAILED: Final = "resume_failed"


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A message from the server: a published event (it has an ``id``), or one of the
    data-bearing control messages: ``initial_state``, ``messages_dropped``, an unsolicited
    ``error`` or ``unsubscribed``, and the client's own ``resume_failed``."""

    type: str
    channel: str | None = None
    #: The event id (``epoch:offset``), opaque; None for control messages.
    id: str | None = None
    #: When it was published (events) or made (control messages): RFC 3339, UTC.
    timestamp: str | None = None
    data: Any = None

    @property
    def is_event(self) -> bool:
        """A published event (as opposed to a control message)."""
        return self.id is not None


Handler: TypeAlias = Callable[[Event], Any]

decoder = msgspec.json.Decoder(Event)
encoder = msgspec.json.Encoder()


async def call_handler(callback: Callable[..., Any], *args: Any) -> None:
    """Run a handler (sync or async); its failure is logged, never raised."""
    try:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("realtime client handler %r failed", callback)
