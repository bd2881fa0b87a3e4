"""Server-to-client WebSocket frames, built once and written to any connection.

Server frames are unmasked and no extension is negotiated, so the bytes of one frame
are valid for every connection: the hub frames an event once and queues the same bytes
for each subscriber. No I/O here.
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

__all__ = ["ping_frame", "text_frame"]


def text_frame(payload: bytes) -> bytes:
    """A server-to-client text frame. Server frames are unmasked and no extension is
    negotiated, so one frame is valid for every connection."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


def ping_frame(payload: bytes) -> bytes:
    """A server-to-client ping frame carrying ``payload`` (at most 125 bytes)."""
    return Frame(Opcode.PING, payload).serialize(mask=False)
