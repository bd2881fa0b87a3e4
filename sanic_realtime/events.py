"""Events: ids, timestamps and the envelope each event is encoded into once.

Pure: msgspec and the standard library only. Each event is encoded once, when it is
published, from :class:`sanic_realtime.protocol.EventEnvelope`, and the same bytes go to
every subscriber. The other messages of the wire are in :mod:`sanic_realtime.protocol`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, NamedTuple

import msgspec

from .protocol.server import EventEnvelope, Sender

__all__ = [
    "NO_ID",
    "Event",
    "EventId",
    "encode_event",
    "encode_event_parts",
    "utc_timestamp",
]


class EventId(NamedTuple):
    """``epoch:offset``. Offsets grow by one per event of a channel; the epoch names the
    history that gave them out, so ids from before a restart are never mistaken for new ones."""

    epoch: str
    offset: int

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> EventId:
        """Parse ``"k3x9:42"``; ``ValueError`` says what is wrong."""
        epoch, sep, offset = text.rpartition(":")
        if not sep or not epoch or not offset.isdigit() or len(offset) > 19:
            raise ValueError(f"not an event id (expected 'epoch:offset', got {text!r})")
        return cls(epoch, int(offset))


def utc_timestamp(now: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-21T10:00:00.123Z``."""
    t = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


_encoder = msgspec.json.Encoder()


#: The id of a client message not kept in history (``"id": null`` on the wire): it uses
#: up no offset, and no resume or replay ever names it.
NO_ID = EventId("", 0)


def encode_event(
    channel: str,
    type: str,
    id: str | None,
    timestamp: str,
    data: Any,
    sender: Sender | None = None,
) -> bytes:
    """The envelope of a published event, as JSON bytes (``id`` None: a client message
    not kept in history; ``sender``: a client message's ``from``). Raises ``TypeError``
    if ``data`` holds something msgspec cannot encode."""
    return _encoder.encode(
        EventEnvelope(
            type=type,
            channel=channel,
            id=id,
            timestamp=timestamp,
            data=data,
            from_=msgspec.UNSET if sender is None else sender,
        )
    )


def encode_event_parts(
    channel: str, type: str, timestamp: str, data: Any, sender: Sender | None = None
) -> tuple[bytes, bytes]:
    """The envelope of an event whose id is not known yet, as the bytes before and after
    the id: ``head + b"epoch:offset" + tail == encode_event(...)``. The Redis backplane's
    script puts the id it assigns in between. Raises ``TypeError`` like :func:`encode_event`."""
    enc = _encoder.encode
    head = b'{"type":' + enc(type) + b',"channel":' + enc(channel) + b',"id":"'
    tail = b'","timestamp":' + enc(timestamp) + b',"data":' + enc(data)
    if sender is not None:
        tail += b',"from":' + enc(sender)
    return head, tail + b"}"


class Event:
    """One published event: what filters read, and the encoded envelope sent to clients.

    ``user_id`` / ``role`` narrow delivery to one user's or one role's connections;
    ``exclude``, a connection id, is left out (a client message's sender, unless echo).
    """

    __slots__ = (
        "channel",
        "data",
        "exclude",
        "id",
        "payload",
        "role",
        "time",
        "type",
        "user_id",
    )

    def __init__(
        self,
        channel: str,
        type: str,
        id: EventId,
        time: float,
        data: Any,
        *,
        user_id: str | None = None,
        role: str | None = None,
        payload: bytes | None = None,
        exclude: str | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.channel = channel
        self.type = type
        self.id = id
        self.time = time
        self.data = data
        self.user_id = user_id
        self.role = role
        self.exclude = exclude
        self.payload = (
            payload
            if payload is not None
            else encode_event(
                channel, type, str(id) if id.epoch else None, utc_timestamp(time), data, sender
            )
        )

    @property
    def targeted(self) -> bool:
        """Not for every subscriber: a target user or role, or a connection left out."""
        return self.user_id is not None or self.role is not None or self.exclude is not None

    @property
    def offset(self) -> int:
        return self.id.offset

    def __repr__(self) -> str:
        return f"Event({self.channel!r}, {self.type!r}, {str(self.id)!r})"
