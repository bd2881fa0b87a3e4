"""The registry: one hub's connections, by id and by user, and the slots reserved for
connections about to be upgraded (what ``max_clients`` and
``max_connections_per_user`` bound); it counts and logs each connection's end.

With ``connection_limits: cluster`` a reservation also holds a slot of its user counted
by the backplane across every worker (taken by admission, :attr:`Reservation.give_back`
set); that slot is given back with the reservation (a refused or expired handshake) or
passes to the connection and is given back when it is removed (a close, an abort, a
stop): every exit path gives it back once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ..config import RealtimeConfig
from ..exceptions import ServerUnavailable, TooManyRequests
from ..log import connection_logger
from .connection import OPEN, Connection

__all__ = ["RESERVATION_TTL", "Registry", "Reservation"]

#: How long a slot reserved before the upgrade waits for its connection.
RESERVATION_TTL = 30.0


class Reservation:
    """A slot held between the checks before the upgrade and the connection's start."""

    __slots__ = ("deadline", "give_back", "user_id")

    def __init__(self, deadline: float, user_id: str | None = None) -> None:
        self.deadline = deadline
        self.user_id = user_id
        #: Gives back the user's cluster-wide slot (``connection_limits: cluster``), once.
        self.give_back: Callable[[], None] | None = None

    def hand_back(self) -> None:
        """Give back the cluster-wide slot, if it holds one (idempotent)."""
        give_back, self.give_back = self.give_back, None
        if give_back is not None:
            give_back()


class Registry:
    """The connections of one hub and the slots reserved for more."""

    def __init__(self, config: RealtimeConfig, monotonic: Callable[[], float]) -> None:
        self._config = config
        self._monotonic = monotonic
        self.conns: dict[str, Connection] = {}
        #: user id -> open connections of that user
        self.users: Counter[str] = Counter()
        self._reservations: set[Reservation] = set()
        #: connection id -> how to give back its user's cluster-wide slot
        self._cluster_slots: dict[str, Callable[[], None]] = {}
        #: Connections opened; closed, by close code (read by the metrics).
        self.opened = 0
        self.disconnects: Counter[int] = Counter()
        #: Called with each connection's duration when it ends (set by the metrics).
        self.observe_duration: Callable[[float], None] | None = None

    def reserve(self, user_id: str | None, closing: bool) -> Reservation:
        """Hold a slot (see :meth:`Hub.reserve`); ``closing``: the hub is shutting down."""
        now = self._monotonic()
        if self._reservations:
            expired = [r for r in self._reservations if r.deadline <= now]
            for r in expired:
                self._reservations.discard(r)
                r.hand_back()
        if closing:
            raise ServerUnavailable("the server is shutting down", code="shutting_down")
        limit = self._config.max_clients
        if len(self.conns) + len(self._reservations) >= limit:
            raise ServerUnavailable(f"server full: at most {limit} connections per process")
        per_user = self._config.max_connections_per_user
        if per_user is not None and user_id is not None:
            held = self.users[user_id] + sum(1 for r in self._reservations if r.user_id == user_id)
            if held >= per_user:
                raise TooManyRequests(
                    f"user {user_id!r} already has {held} connections (at most {per_user}); "
                    "close one first",
                    code="too_many_connections",
                )
        reservation = Reservation(now + RESERVATION_TTL, user_id)
        self._reservations.add(reservation)
        return reservation

    def release(self, reservation: Reservation) -> None:
        self._reservations.discard(reservation)
        reservation.hand_back()

    def add(self, conn: Connection, reservation: Reservation | None) -> None:
        """``conn`` takes its reserved slot (if any)."""
        if reservation is not None:
            self._reservations.discard(reservation)
            give_back, reservation.give_back = reservation.give_back, None
            if give_back is not None:
                self._cluster_slots[conn.id] = give_back
        self.conns[conn.id] = conn
        self.opened += 1
        if conn.user_id is not None:
            self.users[conn.user_id] += 1

    def remove(self, conn: Connection) -> bool:
        """Forget ``conn``, counting and logging its end; False if it was not here."""
        if self.conns.pop(conn.id, None) is None:
            return False
        self._log_end(conn)
        give_back = self._cluster_slots.pop(conn.id, None)
        if give_back is not None:
            give_back()
        if conn.user_id is not None:
            self.users[conn.user_id] -= 1
            if self.users[conn.user_id] <= 0:
                del self.users[conn.user_id]
        return True

    def matching(self, user_id: str | None, role: str | None) -> list[Connection]:
        """The open connections of ``user_id`` or holding ``role``."""
        return [
            c
            for c in self.conns.values()
            if c.state is OPEN
            and ((user_id is not None and c.user_id == user_id) or (role in c.roles))
        ]

    def _log_end(self, conn: Connection) -> None:
        code, reason = conn.end_status()
        duration = self._monotonic() - conn.opened
        self.disconnects[code] += 1
        if self.observe_duration is not None:
            self.observe_duration(duration)
        connection_logger.info(
            "realtime disconnect %s user=%s channels=%s code=%d reason=%r duration=%.3fs",
            conn.id,
            conn.user_id if conn.user_id is not None else "-",
            ",".join(conn.channels) or "-",
            code,
            reason,
            duration,
            extra={
                "realtime_event": "disconnect",
                "client_id": conn.id,
                "user_id": conn.user_id,
                "channels": list(conn.channels),
                "close_code": code,
                "close_reason": reason,
                "duration_s": round(duration, 3),
            },
        )
