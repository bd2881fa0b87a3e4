"""The messages on pub/sub and in the streams: ``<header JSON>\\n<envelope>``.

The header names the publishing worker (``o``) and its publish number (``n``), so a
worker never delivers its own event twice and can count its own recipients; the envelope
is the event's frame as clients get it (id spliced in by ``publish.lua``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...events import NO_ID, Event, EventId
from ...log import logger

__all__ = [
    "DECODE_ERRORS",
    "TRANSIENT",
    "Head",
    "decode",
    "decode_entries",
    "head_encoder",
    "id_decoder",
]


class Head(msgspec.Struct, array_like=True):
    """The header of a message: who published it and whom it targets."""

    o: str  # origin: the publishing worker
    n: int  # that worker's publish number
    t: float  # publish time (Unix seconds)
    u: str | None = None  # target user_id
    r: str | None = None  # target role
    x: str | None = None  # the connection left out (a client message's sender)
    c: int = 0  # 1: each worker answers with its recipients (publish(count="cluster"))


class _Envelope(msgspec.Struct):
    type: str
    channel: str
    id: str | None
    data: Any = None


class _IdOnly(msgspec.Struct):
    id: str


#: What decoding a message that is not one of ours can raise.
DECODE_ERRORS = (ValueError, msgspec.DecodeError, TypeError, RecursionError)

head_encoder = msgspec.json.Encoder()
#: Reads only the envelope's id (msgspec only scans what the small struct does not keep).
id_decoder = msgspec.json.Decoder(_IdOnly)
_head_decoder = msgspec.json.Decoder(Head)
_envelope_decoder = msgspec.json.Decoder(_Envelope)


#: The first byte of a client message not kept in history, on a channel's pub/sub
#: (``!<header>\n<envelope>``, the envelope's id null): no offset, no gap check.
TRANSIENT = b"!"


def decode(raw: bytes, transient: bool = False) -> tuple[Head, Event]:
    """The header and event of a message (raises one of :data:`DECODE_ERRORS`);
    ``transient``: one without an id (``raw`` without its first byte)."""
    header, sep, envelope = raw.partition(b"\n")
    if not sep:
        raise ValueError("no header")
    head = _head_decoder.decode(header)
    env = _envelope_decoder.decode(envelope)
    if env.id is None and not transient:
        raise ValueError("an event without an id")
    event = Event(
        env.channel,
        env.type,
        NO_ID if transient else EventId.parse(env.id or ""),
        head.t,
        env.data,
        user_id=head.u,
        role=head.r,
        payload=envelope,
        exclude=head.x,
    )
    return head, event


def decode_entries(entries: list[Any]) -> list[tuple[Head, Event]]:
    """The messages of stream entries, oldest first; undecodable ones are logged and
    skipped."""
    decoded = []
    for _entry_id, fields in entries:
        # XRANGE through redis-py gives a dict; through a script, [field, value, ...].
        if not isinstance(fields, dict):
            fields = dict(zip(fields[::2], fields[1::2], strict=True))
        try:
            decoded.append(decode(fields[b"d"]))
        except (KeyError, *DECODE_ERRORS) as e:
            logger.error("skipping an undecodable history entry: %s", e)
    return decoded
