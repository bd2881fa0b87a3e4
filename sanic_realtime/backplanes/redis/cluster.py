"""Cluster services: one-time tickets, every worker's figures, and cluster-wide commands
(disconnect) on the control channel."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec

from ...exceptions import ServerUnavailable
from ...log import logger
from ..base import Local
from .connection import Connection, OnError, Unattached
from .keys import Keys

__all__ = ["STATS_INTERVAL", "Cluster", "merge_stats"]

#: How often each worker writes its figures (they expire after three periods).
STATS_INTERVAL = 2.0

_COUNTS = ("total_clients", "total_users", "messages_sent", "messages_dropped", "slow_disconnects")


def merge_stats(figures: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Sum the figures of several workers: counts add up, ``by_channel`` and ``by_role``
    add up per key (``channel_instances`` too: an instance used on two workers counts
    twice; ``present_users`` too: a user present through two workers counts twice),
    ``uptime_s`` is the oldest worker's. ``total_users`` is a sum too, so a user
    connected to two workers counts twice. ``by_worker``: each worker's clients."""
    total: dict[str, Any] = {
        "total_clients": 0,
        "total_users": 0,
        "by_channel": {},
        "by_role": {},
        "channel_instances": {},
        "present_users": {},
        "messages_sent": 0,
        "messages_dropped": 0,
        "slow_disconnects": 0,
        "uptime_s": 0.0,
    }
    for f in figures:
        for key in _COUNTS:
            total[key] += int(f.get(key, 0))
        for key in ("by_channel", "by_role", "channel_instances", "present_users"):
            for name, n in dict(f.get(key, {})).items():
                total[key][name] = total[key].get(name, 0) + int(n)
        total["uptime_s"] = max(total["uptime_s"], float(f.get("uptime_s", 0.0)))
    total["workers"] = len(figures)
    total["by_worker"] = {str(f.get("node", "?")): int(f.get("total_clients", 0)) for f in figures}
    return total


class _Control(msgspec.Struct, forbid_unknown_fields=True):
    o: str
    op: str
    user_id: str | None = None
    role: str | None = None
    reason: str = ""


_control_decoder = msgspec.json.Decoder(_Control)
_json = msgspec.json.Encoder()


class Cluster:
    """Tickets, figures and control, on the client with one retry."""

    def __init__(self, conn: Connection, keys: Keys, *, node: str) -> None:
        #: The hub (set by ``RedisBackplane.attach``).
        self.local: Local = Unattached()
        self.node = node
        self._conn = conn
        self._keys = keys
        self._unavailable = conn.errors(OnError.UNAVAILABLE)

    # ------------------------------------------------------------------ tickets

    async def put_ticket(self, ticket: str, value: bytes, ttl: float) -> None:
        with self._unavailable:
            await self._conn.redis.set(self._keys.ticket(ticket), value, px=max(1, int(ttl * 1000)))

    async def peek_ticket(self, ticket: str) -> bytes | None:
        with self._unavailable:
            value = await self._conn.redis.get(self._keys.ticket(ticket))
        return value if isinstance(value, bytes) else None

    async def take_ticket(self, ticket: str) -> bytes | None:
        with self._unavailable:
            value = await self._conn.redis.getdel(self._keys.ticket(ticket))
        return value if isinstance(value, bytes) else None

    # ------------------------------------------------------------------ control

    async def disconnect(self, *, user_id: str | None, role: str | None, reason: str) -> int:
        command = _Control(self.node, "disconnect", user_id, role, reason)
        try:
            with self._unavailable:
                await self._conn.redis.publish(self._keys.control, _json.encode(command))
        except ServerUnavailable as e:  # Redis failed, or the backplane is not started
            # This process's connections are closed all the same; the caller learns
            # that the other workers were not told.
            closed = await self.local.disconnect(user_id=user_id, role=role, reason=reason)
            raise ServerUnavailable(
                f"closed {closed} connection(s) of this worker, but could not tell the other "
                f"workers: {e.message}",
                code="backplane_unavailable",
            ) from None
        return await self.local.disconnect(user_id=user_id, role=role, reason=reason)

    def on_control(self, raw: bytes) -> None:
        """A message on the control channel (the listener's)."""
        try:
            command = _control_decoder.decode(raw)
        except msgspec.DecodeError as e:
            logger.error("ignoring an undecodable control message: %s", e)
            return
        if command.o == self.node:
            return  # done locally when it was sent
        if command.op == "disconnect":
            self._conn.spawn(
                self.local.disconnect(
                    user_id=command.user_id, role=command.role, reason=command.reason
                )
            )

    # ------------------------------------------------------------------ figures

    def _own_figures(self) -> dict[str, Any]:
        figures = self.local.stats()
        figures["node"] = self.node
        return figures

    async def stats(self) -> dict[str, Any]:
        own = self._own_figures()
        with self._conn.errors(OnError.IGNORE) as read:
            match = self._keys.node("*")
            keys = [k async for k in self._conn.redis.scan_iter(match=match, count=1000)]
            values = await self._conn.redis.mget(keys) if keys else []
        if read.error is not None:
            merged = merge_stats([own])
            merged["complete"] = False
            merged["error"] = f"other workers' figures are unavailable ({read.error})"
            return merged
        figures: list[Mapping[str, Any]] = [own]
        for value in values:
            if value is None:
                continue
            try:
                other = msgspec.json.decode(value)
            except msgspec.DecodeError:
                continue
            if isinstance(other, dict) and other.get("node") != self.node:
                figures.append(other)
        merged = merge_stats(figures)
        merged["complete"] = True
        return merged

    async def report_forever(self) -> None:
        """Write this worker's figures every STATS_INTERVAL (they expire unless renewed);
        doubles as the health probe of the command connection."""
        while True:
            with self._conn.errors(OnError.IGNORE):
                await self._conn.redis.set(
                    self._keys.node(self.node),
                    _json.encode(self._own_figures()),
                    px=int(STATS_INTERVAL * 3000),
                )
                self._conn.ok()
            await asyncio.sleep(STATS_INTERVAL)

    async def forget(self) -> None:
        """Remove this worker's figures (at stop)."""
        await self._conn.redis.delete(self._keys.node(self.node))
