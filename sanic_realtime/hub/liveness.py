"""Liveness: heartbeat pings, the client timeout, and token expiry.

Every tick (a fraction of ``heartbeat_interval`` and ``client_timeout``), each open
connection that has sent nothing for ``client_timeout`` is aborted with 1011, and each
one not pinged for ``heartbeat_interval`` (and not blocked: its transport is full) gets
a ping, the same frame for every connection; any frame from the client, pongs
included, counts as traffic (:meth:`Liveness.touch`). A connection whose token has an
``exp`` is closed with 1008 at ``exp + auth.leeway`` (a loop timer per connection).

The clocks are injected (``monotonic`` for traffic, ``clock`` for token times), so
:meth:`Liveness.tick` can be driven by a test with a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any

from ..auth import Identity
from ..config import RealtimeConfig
from ..framing import ping_frame
from ..log import logger
from ..protocol import CloseCode
from .connection import OPEN, Connection

__all__ = ["Liveness", "expiry_delay", "ping_payload", "tick_interval"]


def tick_interval(heartbeat: float, timeout: float) -> float:
    """How often liveness is checked: a quarter of the shorter period, within 50 ms..5 s."""
    return min(max(min(heartbeat, timeout) / 4, 0.05), 5.0)


def ping_payload(n: int) -> bytes:
    """The payload of the ``n``-th tick's ping (unique per tick)."""
    return b"rt" + n.to_bytes(6, "big")


def expiry_delay(identity: Identity | None, leeway: float, now: float) -> float | None:
    """Seconds until a connection of ``identity`` must close (0 if past); None: never."""
    if identity is None or identity.expires_at is None:
        return None
    return max(identity.expires_at + leeway - now, 0.0)


class Liveness:
    """Heartbeats, timeouts and token expiry for the connections of one hub.

    ``abort(conn, code, reason)`` and ``close(conn, code, reason)`` are the hub's;
    ``spawn`` runs a task the hub tracks."""

    def __init__(
        self,
        config: RealtimeConfig,
        connections: Mapping[str, Connection],
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        abort: Callable[[Connection, int, str], None],
        close: Callable[[Connection, int, str], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._config = config
        self._conns = connections
        self._clock = clock
        self._monotonic = monotonic
        self._abort = abort
        self._close = close
        self._spawn = spawn
        #: heartbeat ticks so far: each tick's ping payload is unique
        self._pings = 0

    def touch(self, conn: Connection) -> None:
        """The client sent something: it is alive."""
        conn.last_seen = self._monotonic()

    # ----------------------------------------------------------------- heartbeats

    async def run(self) -> None:
        """Tick forever (the hub runs this as a task while started)."""
        tick = tick_interval(self._config.heartbeat_interval, self._config.client_timeout)
        while True:
            await asyncio.sleep(tick)
            try:
                self.tick()
            except Exception:  # pragma: no cover - a bug must not stop heartbeats
                logger.exception("heartbeat tick failed")

    def tick(self) -> None:
        now = self._monotonic()
        heartbeat = self._config.heartbeat_interval
        timeout = self._config.client_timeout
        # One ping frame per tick, the same bytes for every connection (as for events).
        self._pings += 1
        payload = ping_payload(self._pings)
        frame = ping_frame(payload)
        for conn in list(self._conns.values()):
            if conn.state is not OPEN:
                continue
            if now - conn.last_seen > timeout:
                self._abort(
                    conn,
                    CloseCode.SERVER_ERROR,
                    f"client timeout: nothing received for {timeout:g}s",
                )
            elif now - conn.last_ping >= heartbeat and not conn.blocked:
                conn.last_ping = now
                try:
                    conn.socket.ping(frame, payload, partial(self.touch, conn))
                except Exception:  # pragma: no cover - a socket must not stop heartbeats
                    logger.debug("ping to %s failed", conn, exc_info=True)

    # ----------------------------------------------------------------- token expiry

    def schedule_expiry(self, conn: Connection) -> None:
        """Close ``conn`` with 1008 at its token's ``exp`` (+ ``auth.leeway``)."""
        self.cancel_expiry(conn)
        delay = expiry_delay(conn.identity, self._config.auth.leeway, self._clock())
        if delay is not None:
            conn.expiry = asyncio.get_running_loop().call_later(delay, self._expire, conn)

    def cancel_expiry(self, conn: Connection) -> None:
        if conn.expiry is not None:
            conn.expiry.cancel()
            conn.expiry = None

    def _expire(self, conn: Connection) -> None:
        conn.expiry = None
        if conn.state is OPEN:  # still registered, not being closed
            self._spawn(self._close(conn, CloseCode.POLICY, "token expired"))
