"""The outbox: every connection's bounded queue, the slow-client policy, drop notices,
and the writes to the sockets (this module is the only one that writes data to one).

Each connection has a queue of framed bytes (``Connection.queue``), bounded by
``buffer_size`` events plus ``CONTROL_MARGIN`` control replies. Publishing never waits
for a socket:

- an event for a connection with nothing queued is written at once if the transport
  takes it (:meth:`Outbox.fan_out`, while no flush is pending); otherwise it is queued,
  the connection is marked dirty, and the hub's flush writes each dirty connection's
  queue in one ``transport.write`` (:meth:`Outbox.write`: the one writer of queues);
- a connection whose transport is over its high-water mark is ``blocked``: not written
  to until it drains. When its queue is full the ``slow_client`` policy applies:
  ``disconnect`` closes it with 4008, ``drop_oldest`` drops its oldest event and tells
  it how many it lost (``messages_dropped``) right before its next event;
- a write that fails closes that connection only (1011), outside the fan-out loop.

The fan-out loop and :meth:`Outbox.enqueue` are the hot path: they read plain slots,
bind locals, and call nothing per connection beyond what they must.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ..config import RealtimeConfig
from ..events import Event
from ..framing import text_frame
from ..log import logger
from ..protocol import CloseCode, ControlMessage, MessagesDropped, MessagesDroppedData, encode
from .connection import OPEN, Connection

__all__ = ["CONTROL_MARGIN", "Outbox"]

#: Control replies (pong, error, ...) a connection may have queued beyond its events.
CONTROL_MARGIN = 64


class Outbox:
    """The queues of one hub's connections and their writes.

    ``abort(conn, code, reason)`` and ``unregister(conn)`` are the hub's (called soon,
    never inside a fan-out loop), ``spawn`` runs a task the hub tracks, and ``flush`` is
    the hub's flush, scheduled when a connection first gets something queued.
    """

    def __init__(
        self,
        config: RealtimeConfig,
        *,
        timestamp: Callable[[], str],
        abort: Callable[[Connection, int, str], None],
        unregister: Callable[[Connection], None],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        flush: Callable[[], None],
    ) -> None:
        self.buffer_size = config.buffer_size
        self.drop_oldest = config.slow_client == "drop_oldest"
        self._timestamp = timestamp
        self._abort = abort
        self._unregister = unregister
        self._spawn = spawn
        self._flush = flush
        #: Connections with something queued since the last flush.
        self.dirty: list[Connection] = []
        #: A flush is scheduled (the hub's flush clears it when it stops lingering).
        self.flush_scheduled = False
        #: Frames written, events lost (never written), connections closed as slow.
        self.messages_sent = 0
        self.messages_dropped = 0
        self.slow_disconnects = 0

    # ----------------------------------------------------------------- queueing

    def fan_out(
        self,
        members: Iterable[Connection],
        channel: str,
        frame: bytes,
        event: Event,
        targeted: bool,
        direct: bool,
    ) -> tuple[int, int]:
        """Give ``frame`` (``event``'s) to every member it targets: written at once when
        ``direct`` and the connection has nothing queued, else queued. Returns (how many
        get it, how many of those it was written to). The caller counts the written
        ones in ``messages_sent``."""
        enqueue = self.enqueue
        count = written = 0
        for conn in members:
            if targeted and not conn.accepts(event):
                continue
            if (
                direct
                and not conn.queue
                and not conn.blocked
                and conn.state is OPEN
                and not conn.dropped
                and conn.socket.try_write(frame)
            ):
                written += 1
            elif not enqueue(conn, channel, frame):
                continue
            count += 1
        return count, written

    def enqueue(
        self, conn: Connection, channel: str | None, frame: bytes, force: bool = False
    ) -> bool:
        """Queue one frame (``channel`` None: a control message). Returns False when the
        connection will not get it. ``force``: an event beyond the bound (a replay, for
        which the caller grants ``conn.allowance``)."""
        if conn.state is not OPEN:
            return False
        queue = conn.queue
        if channel is None:
            # Control replies are not bounded by buffer_size, but a client that keeps
            # asking and never reads must not grow its queue forever.
            if len(queue) >= self.buffer_size + conn.allowance + CONTROL_MARGIN and not (
                self._can_write_now(conn) and self.write(conn)
            ):
                self.overflow(conn, "slow consumer: too many unread replies")
                return False
        else:
            if not force and conn.events >= self.buffer_size + conn.allowance:
                # Full. If the transport can take it, this is a burst, not a slow client:
                # write the queue now. Otherwise the slow_client policy decides.
                if self._can_write_now(conn):
                    if not self.write(conn):  # the connection turned out to be gone
                        self.messages_dropped += 1
                        return False
                elif self.drop_oldest:
                    self._drop_one(conn)
                else:
                    self.messages_dropped += 1  # this event: the client will not get it
                    self.overflow(conn)
                    return False
            conn.events += 1
        queue.append((channel, frame))
        if not conn.dirty:
            conn.dirty = True
            self.dirty.append(conn)
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        return True

    def send(self, conn: Connection, message: ControlMessage) -> None:
        """Queue a control message (bounded by buffer_size + CONTROL_MARGIN, not by events)."""
        self.enqueue(conn, None, text_frame(encode(message)))

    @staticmethod
    def _can_write_now(conn: Connection) -> bool:
        return not conn.blocked and conn.socket.writable()

    # ----------------------------------------------------------------- slow clients

    def count_drop(self, conn: Connection, channel: str) -> None:
        """One event of ``channel`` lost for ``conn``: reported before its next event."""
        conn.dropped[channel] = conn.dropped.get(channel, 0) + 1
        self.messages_dropped += 1

    def _drop_one(self, conn: Connection) -> None:
        """drop_oldest: remove the oldest queued event (control messages are kept)."""
        queue = conn.queue
        for i, (channel, _) in enumerate(queue):
            if channel is not None:
                del queue[i]
                conn.events -= 1
                self.count_drop(conn, channel)
                return

    def overflow(self, conn: Connection, reason: str = "") -> None:
        """The buffer is full and the client is not reading: close with 4008, outside the
        fan-out loop."""
        if conn.state is not OPEN:
            return
        self.slow_disconnects += 1
        reason = reason or f"slow consumer: buffer of {self.buffer_size} events full"
        conn.begin_closing(CloseCode.SLOW_CONSUMER, reason)
        asyncio.get_running_loop().call_soon(self._abort, conn, CloseCode.SLOW_CONSUMER, reason)

    def _drop_notices(self, conn: Connection) -> list[bytes]:
        ts = self._timestamp()
        notices = [
            text_frame(
                encode(MessagesDropped(timestamp=ts, data=MessagesDroppedData(channel=ch, count=n)))
            )
            for ch, n in conn.dropped.items()
        ]
        conn.dropped.clear()
        return notices

    def discard(self, conn: Connection) -> None:
        """Forget what is queued for ``conn`` (counted as dropped): it is gone."""
        if conn.queue:
            self.messages_dropped += conn.events
            conn.queue.clear()
            conn.events = 0

    # ----------------------------------------------------------------- writing

    def write_dirty(self) -> None:
        """Write the queue of every connection that got something since the last time
        (those not blocked: they are written when they drain)."""
        dirty, self.dirty = self.dirty, []
        write = self.write
        for conn in dirty:
            conn.dirty = False
            if not conn.blocked:
                write(conn)

    def write(self, conn: Connection) -> bool:
        """Write everything queued for ``conn`` in one write, or wait until it can be.
        Returns False when the connection turned out to be closed or blocked.

        May run inside a fan-out loop: it never changes rooms itself (closing is deferred).
        """
        queue = conn.queue
        if not queue:
            return True
        socket = conn.socket
        # One frame (a connection that gets few of the events): one call that checks and
        # writes. What it refuses (closed, blocked) is handled below.
        if len(queue) == 1 and not conn.dropped and socket.try_write(queue[0][1]):
            queue.clear()
            conn.events = conn.allowance = 0
            self.messages_sent += 1
            return True
        if not socket.is_open():
            conn.begin_closing()
            asyncio.get_running_loop().call_soon(self._unregister, conn)
            return False
        if not socket.writable():
            conn.blocked = True
            self._spawn(self._write_when_writable(conn))
            return False
        parts: list[bytes] = []
        for channel, frame in queue:
            if channel is not None and conn.dropped:
                # The loss is reported right before the next event the client gets.
                parts.extend(self._drop_notices(conn))
            parts.append(frame)
        events = conn.events
        queue.clear()
        conn.events = 0
        conn.allowance = 0
        try:
            socket.write(b"".join(parts))
        except Exception:
            logger.exception("writing to %s failed; closing it", conn)
            self.messages_dropped += events
            conn.begin_closing()
            asyncio.get_running_loop().call_soon(
                self._abort, conn, CloseCode.SERVER_ERROR, "write failed"
            )
            return False
        self.messages_sent += len(parts)
        return True

    async def _write_when_writable(self, conn: Connection) -> None:
        try:
            await conn.socket.wait_writable()
        except Exception:
            pass  # the connection is gone; write() sees it closed
        finally:
            conn.blocked = False
        self.write(conn)

    async def drain_and_close(self, conn: Connection, code: int, reason: str) -> None:
        """Write what is queued for ``conn``, waiting for its transport as needed, then
        the closing handshake with ``code`` (the caller bounds the time it takes)."""
        socket = conn.socket
        while conn.queue and socket.is_open():
            if socket.writable():
                self.write(conn)
            else:
                await socket.wait_writable()
        if socket.is_open():
            await socket.close(code, reason)
