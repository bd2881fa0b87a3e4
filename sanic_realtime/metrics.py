"""Prometheus metrics (``metrics.enabled``), served at ``metrics.path``.

The hub keeps plain integer counts on its hot path (one dict increment per event, none
per delivery); this module turns them into Prometheus metrics when scraped, and reads
the gauges (connections, subscribers, buffers, backplane) from the hub's state at that
moment. Only two things are observed as they happen: each connection's duration when it
ends, and each event's time from publish to write (once per event, not per subscriber).

With ``--workers N`` each worker is its own process: prometheus_client's multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``) writes every worker's values to files that one scrape
sums, whichever worker answers it. The blueprint sets the directory up in the main
process when it starts more than one worker (and removes it at exit), unless the
variable is already set; each worker then samples its own gauges every second, and
removes its live gauges when it stops. See docs/reference/metrics.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    values,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .protocol import CloseCode

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["MULTIPROC_ENV", "Metrics", "make_multiprocess_dir", "multiprocess_mode"]

#: prometheus_client reads it when it is imported: set it before a worker starts.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: How often a worker refreshes its gauges in multiprocess mode (a scrape reads files).
SAMPLE_INTERVAL = 1.0
#: Close codes kept as label values; any other (clients may send 3000-4999) is "other",
#: so that a client cannot create label values at will.
KNOWN_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
    | {CloseCode.SLOW_CONSUMER, CloseCode.RATE_LIMITED}
)
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


def multiprocess_mode() -> bool:
    """Whether prometheus_client was imported with ``PROMETHEUS_MULTIPROC_DIR`` set."""
    return values.ValueClass is not values.MutexValue


def make_multiprocess_dir() -> str | None:
    """In the main process, before workers start: create a fresh directory for the
    workers' metric files and export it; returns it (to remove at exit), or None when
    ``PROMETHEUS_MULTIPROC_DIR`` is already set (then it is the operator's, to wipe
    between runs as prometheus_client's docs say)."""
    if os.environ.get(MULTIPROC_ENV):
        return None
    path = tempfile.mkdtemp(prefix="sanic-realtime-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]


class Metrics:
    """The metrics of one :class:`~sanic_realtime.hub.Hub`, in their own registry
    (``realtime.metrics.registry``: register your own metrics there to serve them on the
    same path)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.multiprocess = multiprocess_mode()
        self.registry = r = CollectorRegistry()
        channels = list(hub.config.channels)
        self.connections = Gauge(
            "sanic_realtime_connections",
            "Open WebSocket connections.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections_by_role = Gauge(
            "sanic_realtime_connections_by_role",
            "Open connections holding each role (a connection with several roles counts "
            "under each; connections without a role are not counted).",
            ["role"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.subscribers = Gauge(
            "sanic_realtime_subscribers",
            "Connections subscribed to each channel.",
            ["channel"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.present_users = Gauge(
            "sanic_realtime_present_users",
            "Users present on each presence channel (by template), through a connection of "
            "this worker: with several workers a user present through two counts twice.",
            ["channel"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queued = Gauge(
            "sanic_realtime_outbound_queue_messages",
            "Messages waiting in the outbound buffers of all connections.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_max = Gauge(
            "sanic_realtime_outbound_queue_max_messages",
            "Events waiting in the fullest outbound buffer (buffer_size is the bound).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.blocked = Gauge(
            "sanic_realtime_blocked_connections",
            "Connections whose socket is over its high-water mark (reading too slowly).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.backplane_up = Gauge(
            "sanic_realtime_backplane_up",
            "1 while the backplane can publish (Redis reachable), else 0; with several "
            "workers, the lowest of them.",
            ["backplane"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.opened = Counter(
            "sanic_realtime_connections_opened",
            "WebSocket connections accepted (upgraded).",
            registry=r,
        )
        self.disconnects = Counter(
            "sanic_realtime_disconnects",
            "Connections closed, by close code (1006: no close frame; other: a code a "
            "client chose outside the protocol's).",
            ["code"],
            registry=r,
        )
        self.refusals = Counter(
            "sanic_realtime_refusals",
            "Handshakes refused before the upgrade, by HTTP status and error code.",
            ["status", "code"],
            registry=r,
        )
        self.admin_rate_limited = Counter(
            "sanic_realtime_admin_rate_limited",
            "Admin broadcasts refused with 429 by admin.rate_limit.",
            registry=r,
        )
        self.published = Counter(
            "sanic_realtime_messages_published",
            "Events published by this app (publish() and the admin broadcast route).",
            ["channel"],
            registry=r,
        )
        self.delivered = Counter(
            "sanic_realtime_messages_delivered",
            "Copies of events handed to subscribers (one per matching subscriber).",
            ["channel"],
            registry=r,
        )
        self.sent = Counter(
            "sanic_realtime_messages_sent",
            "Messages written to sockets: events and control messages.",
            registry=r,
        )
        self.dropped = Counter(
            "sanic_realtime_messages_dropped",
            "Events a subscriber did not get: dropped from a full buffer (drop_oldest, "
            "reported to the client) or discarded with a closing connection.",
            registry=r,
        )
        self.slow_disconnects = Counter(
            "sanic_realtime_slow_disconnects",
            "Connections closed with 4008 because their buffer was full.",
            registry=r,
        )
        self.backplane_reconnects = Counter(
            "sanic_realtime_backplane_reconnects",
            "Times the backplane's listener reconnected (Redis).",
            registry=r,
        )
        self.duration = Histogram(
            "sanic_realtime_connection_duration_seconds",
            "How long connections stayed open.",
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self.latency = Histogram(
            "sanic_realtime_publish_to_write_seconds",
            "Time from an event's publish to the write of its copies to every subscriber "
            "that could take them (once per event; the publishing host's clock).",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        if not self.multiprocess:  # per-process figures do not sum across workers
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self._presence = [c for c, spec in hub.config.channels.items() if spec.presence_config]
        for channel in self._presence:
            self.present_users.labels(channel).set(0)
        for channel in channels:  # every channel shows, with 0, before its first event
            self.subscribers.labels(channel).set(0)
            self.published.labels(channel)
            self.delivered.labels(channel)
        self._roles: set[str] = set()
        self._codes: set[str] = set()
        #: counter key -> the hub's value when last read
        self._last: dict[Any, int] = {}
        self._sampler: asyncio.Task[None] | None = None
        hub.observe_duration = self.duration.observe
        hub.observe_latency = self.latency.observe

    # ----------------------------------------------------------------- reading the hub

    def _advance(self, key: Any, counter: Any, value: int) -> None:
        last = self._last.get(key, 0)
        if value > last:
            counter.inc(value - last)
        self._last[key] = value

    def sample(self) -> None:
        """Bring every metric up to date with the hub (cheap: O(connections))."""
        hub = self.hub
        stats = hub.stats()
        self.connections.set(stats["total_clients"])
        for channel in self.hub.config.channels:
            self.subscribers.labels(channel).set(stats["by_channel"].get(channel, 0))
        for channel in self._presence:
            self.present_users.labels(channel).set(stats["present_users"].get(channel, 0))
        by_role: dict[str, int] = stats["by_role"]
        self._roles.update(by_role)
        for role in self._roles:
            self.connections_by_role.labels(role).set(by_role.get(role, 0))
        queued = deepest = blocked = 0
        for conn in hub.connections.values():
            queued += len(conn.queue)
            if conn.events > deepest:
                deepest = conn.events
            if conn.blocked:
                blocked += 1
        self.queued.set(queued)
        self.queue_max.set(deepest)
        self.blocked.set(blocked)
        health = hub.backplane.health()
        self.backplane_up.labels(str(health.get("kind", "?"))).set(1 if health.get("ok") else 0)

        self._advance("opened", self.opened, hub.connections_opened)
        others = 0
        for code, n in hub.disconnects.items():
            if code in KNOWN_CLOSE_CODES:
                self._advance(("code", code), self.disconnects.labels(str(code)), n)
            else:
                others += n
        if others:
            self._advance(("code", "other"), self.disconnects.labels("other"), others)
        for channel, n in hub.published.items():
            self._advance(("published", channel), self.published.labels(channel), n)
        for channel, n in hub.delivered.items():
            self._advance(("delivered", channel), self.delivered.labels(channel), n)
        self._advance("sent", self.sent, hub.messages_sent)
        self._advance("dropped", self.dropped, hub.messages_dropped)
        self._advance("slow", self.slow_disconnects, hub.slow_disconnects)
        self._advance("reconnects", self.backplane_reconnects, int(health.get("reconnects", 0)))

    def refused(self, status: int, code: str) -> None:
        """A handshake was refused before the upgrade."""
        self.refusals.labels(str(status), code).inc()

    # ----------------------------------------------------------------- serving

    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition of this process, or of every worker in multiprocess mode, and
        its content type: Prometheus' text format, or OpenMetrics when ``accept`` (the
        scraper's Accept header) asks for it, as prometheus_client's own handlers do."""
        self.sample()
        encode, content_type = choose_encoder(accept or "")
        if not self.multiprocess:
            return encode(self.registry), content_type

        def read_files() -> bytes:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return encode(registry)

        # Reading every worker's files is file I/O: not on the event loop.
        body = await asyncio.get_running_loop().run_in_executor(None, read_files)
        return body, content_type

    def start(self) -> None:
        """In multiprocess mode, keep this worker's gauges fresh: another worker may be
        the one scraped."""
        if self.multiprocess and self._sampler is None:
            self._sampler = asyncio.create_task(self._sample_forever(), name="realtime-metrics")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        if self.multiprocess:
            self.sample()  # the counters' last values outlive the worker
            # This worker's live gauges (connections, buffers) no longer count.
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL)
            try:
                self.sample()
            except Exception:  # pragma: no cover - a bug must not stop the sampling
                from .log import logger

                logger.exception("sampling the metrics failed")
