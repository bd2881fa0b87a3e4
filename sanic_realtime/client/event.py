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
    PresenceJoin,
    PresenceLeave,
    PresenceReply,
    Published,
    Sender,
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
PRESENCE: Final = wire_type(PresenceReply)
PUBLISHED: Final = wire_type(Published)
PRESENCE_JOIN: Final = wire_type(PresenceJoin)
PRESENCE_LEAVE: Final = wire_type(PresenceLeave)
#: The client's own message (the browser client's too): a resume the server could not fill.
RESUME_FAILED: Final = "resume_failed"


class Event(msgspec.Struct, frozen=True, omit_defaults=True):
    """A message from the server: a published event (it has an ``id``, or a ``sender``),
    or one of the data-bearing control messages: ``initial_state``, ``messages_dropped``,
    ``presence_join``, ``presence_leave``, an unsolicited ``error`` or ``unsubscribed``,
    and the client's own ``resume_failed``."""

    type: str
    channel: str | None = None
    #: The event id (``epoch:offset``), opaque; None for control messages, and for a
    #: client message of a type the channel does not keep in history.
    id: str | None = None
    #: When it was published (events) or made (control messages): RFC 3339, UTC.
    timestamp: str | None = None
    data: Any = None
    #: Who sent a client message (``from`` on the wire: ``user_id``, ``client_id``),
    #: stamped by the server; None for events the server published.
    sender: Sender | None = msgspec.field(default=None, name="from")
    #: The ``ref`` of the request a reply answers (replies are not handed over).
    ref: str | None = None

    @property
    def is_event(self) -> bool:
        """A published event (as opposed to a control message): one with an id, or a
        client message (``sender`` set; its id is None when it is not kept in history)."""
        return self.id is not None or self.sender is not None


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
