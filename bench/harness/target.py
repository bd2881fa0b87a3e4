"""One server and the N load-generator connections to it: a timed burst (``Run``), a
steady-rate step (``Step``), the publish-only loop, and the final checks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .loadgen import Counter, Group, WsClient, connect, http
from .servers import KINDS, RedisProbe, Server, peak_rss_kb, server_cpus, socket_owners

#: How a burst's HTTP request can fail.
REQUEST_ERRORS = (OSError, RuntimeError, asyncio.IncompleteReadError, asyncio.TimeoutError)


@dataclass(kw_only=True)
class Run:
    """One timed burst. ``elapsed`` = the server's first publish -> the generator has
    counted every frame; ``publish`` = the server's publishing loop (first publish to
    return); ``rate`` = deliveries / elapsed; ``*_cpu`` = CPU seconds / elapsed."""

    elapsed: float
    publish: float
    rate: float
    srv_cpu: float
    gen_cpu: float
    redis_cpu: float | None = None  # redis-server's, when there is a probe
    publisher: int | None = None  # with per-worker counting: the pid that published
    publisher_clients: int = 0  # ... and how many clients it holds
    done: dict[int, float] = field(default_factory=dict)  # pid -> first publish -> last frame
    publish_only: float = 0.0  # events/s of the publish-only loop after the burst
    publish_only_cpu_us: float = 0.0  # server CPU per event of that loop
    evalsha_us: float | None = None  # Redis's own time per script call in that loop
    publish_many: float | None = None  # events/s of the publish_many loop, if measured
    publish_many_cpu_us: float | None = None

    @property
    def lag(self) -> float:
        """From the end of the publishing loop to the last frame counted."""
        return self.elapsed - self.publish


@dataclass
class Step:
    """One steady-rate step: ``rate`` events/s for a few seconds."""

    rate: float
    events: int = 0
    achieved: float = 0.0
    late_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    srv_cpu: float = 0.0
    gen_cpu: float = 0.0
    problem: str = ""

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]

    def ok(self, p99_ms: float) -> bool:
        return (
            not self.problem
            and self.lost == 0
            and bool(self.latencies)
            and self.pct(0.99) * 1000 <= p99_ms
            and self.achieved >= 0.98 * self.rate
        )


def _wrong_ids(client: WsClient) -> list[str]:
    """The epochs of the ids ``client`` saw, unless they are one epoch with consecutive
    offsets (then [])."""
    ids = [str(i).rpartition(":") for _, _, i in client.seen]
    epochs = sorted({e for e, _, _ in ids})
    offsets = [int(o) if o.isdigit() else -1 for _, _, o in ids]
    consecutive = all(b == a + 1 for a, b in itertools.pairwise(offsets))
    return [] if len(epochs) <= 1 and consecutive else epochs


class Target:
    """One server process (or Sanic workers) and the N generator connections to it.

    By default every client connects to the kind's path and must receive every event of
    every burst. Options: ``path_of(i)`` is client i's path; ``share(i, events)`` is the
    range of ``seq`` values of a burst of ``events`` that client i must receive, in order
    (its frame count and the inspecting client's order are checked against it);
    ``channel`` is passed to the burst route; ``title`` replaces the kind's label.
    ``per_worker``: after connecting, each client is mapped to the worker process holding
    its connection (``/proc``), frames are counted per worker, one client per worker
    inspects, and ``workers`` must all report in ``/admin/ws/stats``. ``check_ids``: the
    inspecting clients' event ids must be one epoch with consecutive offsets.
    ``probe``: redis-server's CPU is measured; ``redis``: the server uses the Redis
    backplane (evalsha timings, ``/ws/health`` of every worker)."""

    def __init__(
        self,
        server: Server,
        clients: int,
        *,
        timeout: float,
        kind: str = "sanic-realtime",
        buffer_size: int = 0,
        pause: bool = False,
        path_of: Callable[[int], str] | None = None,
        share: Callable[[int, int], range] | None = None,
        channel: str | None = None,
        title: str | None = None,
        per_worker: bool = False,
        workers: int = 1,
        check_ids: bool = False,
        probe: RedisProbe | None = None,
        redis: bool = False,
    ) -> None:
        self.server = server
        self.kind = KINDS[kind]
        self.clients = clients
        self.timeout = timeout
        self.buffer_size = buffer_size
        self.pause = pause
        self.path_of = path_of
        self.share = share
        self.channel = channel
        self.label = title or self.kind.label
        self.per_worker = per_worker
        self.workers = workers
        self.check_ids = check_ids
        self.probe = probe
        self.redis = redis
        self.counter = Counter()
        self.conns: list[WsClient] = []
        self.groups: dict[int, Group] = {}  # pid -> its clients, with per_worker
        self.bursts: list[int] = []  # events of every burst, in order
        #: indexes into ``bursts`` of the bursts published by concurrent tasks: their seq
        #: values arrive in the order the publishes completed, so only the set is checked.
        self.unordered: set[int] = set()
        self.loop = "?"
        self.stats: dict[str, Any] | None = None
        self.health: dict[int, dict[str, Any]] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []
        # Filled by check():
        self.lost = 0
        self.extra = 0
        self.order: dict[int | None, str] = {}  # pid (None: one process) -> "ok (client i)"
        self.frame_size: int | None = None
        self.log_problems: list[str] = []

    @classmethod
    def app(
        cls,
        kind: str,
        clients: int,
        buffer_size: int,
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> Target:
        """A server of ``harness.apps`` pinned to CPU 0 (``servers.server_cpus``), with
        ``clients`` connections; ``options``: the keyword arguments of Target."""
        server = Server.app(KINDS[kind], buffer_size, server_cpus(), env)
        shown = buffer_size if KINDS[kind].admin else 0  # only sanic-realtime has buffers
        return cls(server, clients, kind=kind, timeout=timeout, buffer_size=shown, **options)

    # ----------------------------------------------------------------------- expectations

    def seqs(self, index: int, events: int) -> range:
        """The ``seq`` values of a burst of ``events`` that client ``index`` must get."""
        return self.share(index, events) if self.share else range(events)

    def due(self, clients: list[WsClient], events: int) -> int:
        """The frames ``clients`` must get from a burst of ``events``."""
        if self.share is None:
            return events * len(clients)
        return sum(len(self.share(c.index, events)) for c in clients)

    def expected(self, index: int) -> int:
        """Text frames client ``index`` must have counted so far: welcome + its events."""
        if self.share is None:
            return 1 + sum(self.bursts)
        return 1 + sum(len(self.share(index, b)) for b in self.bursts)

    # ----------------------------------------------------------------------- start

    async def start(self) -> None:
        await self.ready()
        await self.connect()

    async def ready(self) -> dict[str, Any]:
        """Wait for the server (and, with per_worker, for all its workers)."""
        info = await self.server.wait_ready()
        self.loop = info["loop"]
        if self.per_worker:
            deadline = time.monotonic() + 60.0
            while (await self.admin_stats()).get("workers", 1) < self.workers:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not all workers reported:\n{self.server.tail()}")
                await asyncio.sleep(0.2)
        return info

    async def connect(self) -> None:
        def path_of(i: int) -> str:
            return self.path_of(i) if self.path_of else self.kind.path

        await connect(
            self.server.port,
            self.clients,
            self.counter,
            path_of,
            self.conns,
            eio=self.kind.eio,
            timeout=self.timeout,
        )
        if self.per_worker:
            self._map_workers()
            await self._check_by_worker()

    async def admin_stats(self) -> dict[str, Any]:
        return await http(self.server.port, "GET", "/admin/ws/stats")

    def _map_workers(self) -> None:
        """Which worker process holds each client's connection; one counter per worker."""
        owners = socket_owners(self.server.pids(), self.server.port)
        members: dict[int, list[WsClient]] = {}
        for c in self.conns:
            pid = owners.get(c.transport.get_extra_info("sockname")[1])
            if pid is None:
                raise RuntimeError(f"client {c.index}: no server process holds its connection")
            members.setdefault(pid, []).append(c)
        for pid, clients in sorted(members.items(), key=lambda kv: -len(kv[1])):
            clients[0].inspect = True
            self.groups[pid] = Group(self.counter, pid, clients)
        if len(self.groups) < self.workers:
            self.notes.append(
                f"the kernel gave all clients to {len(self.groups)} of {self.workers} workers"
            )

    async def _check_by_worker(self) -> None:
        """The admin figures (refreshed by each worker every 2 s) must agree."""
        deadline = time.monotonic() + 15.0
        mine = {pid: g.size for pid, g in self.groups.items()}
        while True:
            stats = await self.admin_stats()
            theirs = {int(node.split(":")[-2]): n for node, n in stats.get("by_worker", {}).items()}
            ok = stats.get("total_clients") == self.clients
            if "by_worker" in stats:
                ok = ok and {p: n for p, n in theirs.items() if n} == mine
            if ok:
                return
            if time.monotonic() > deadline:
                self.problems.append(
                    f"/admin/ws/stats: total_clients={stats.get('total_clients')} "
                    f"by_worker={stats.get('by_worker')}; connections per pid: {mine}"
                )
                return
            await asyncio.sleep(0.5)

    # ----------------------------------------------------------------------- measurements

    async def _redis_cpu(self) -> float:
        return await self.probe.cpu() if self.probe else 0.0

    async def burst(self, events: int, yield_every: int, concurrency: int = 1) -> Run | str:
        """Publish ``events`` in the server (``concurrency`` tasks): a Run, or what went
        wrong."""
        deliveries = self.due(self.conns, events)
        target = self.counter.total + deliveries
        srv0, redis0, gen0 = await self.server.cpu(), await self._redis_cpu(), time.process_time()
        waiter = self.counter.expect(target)
        waiters = {
            pid: g.expect(g.total + self.due(g.members, events)) for pid, g in self.groups.items()
        }
        query = f"/bench/burst?events={events}&yield_every={yield_every}"
        if concurrency != 1:
            query += f"&concurrency={concurrency}"
            self.unordered.add(len(self.bursts))
        if self.channel:
            query += f"&channel={self.channel}"
        if self.pause:  # diagnostic: nothing is read while the server publishes
            for c in self.conns:
                c.transport.pause_reading()
        try:
            answer = await http(self.server.port, self.server.method, query, timeout=self.timeout)
        except REQUEST_ERRORS as e:
            return f"{query} failed ({e!r}); server output:\n{self.server.tail()}"
        finally:
            if self.pause:
                for c in self.conns:
                    c.transport.resume_reading()
        self.bursts.append(events)
        try:
            t_done = await asyncio.wait_for(waiter, self.timeout)
        except asyncio.TimeoutError:
            missing = {
                pid: g.target - g.total for pid, g in self.groups.items() if g.total < g.target
            }
            return (
                f"{target - self.counter.total} of {deliveries} frames not received within "
                f"{self.timeout:g}s" + (f" (missing per worker pid: {missing})" if missing else "")
            )
        gen1, srv1, redis1 = time.process_time(), await self.server.cpu(), await self._redis_cpu()
        publisher = int(answer.get("pid", 0)) if self.groups else None
        local = self.groups[publisher].members if publisher in self.groups else []
        recipients = self.due(local, events) if self.groups else deliveries
        if answer["recipients"] != recipients:
            where = f"the publishing worker {publisher}" if self.groups else "the server"
            return f"{where} reports {answer['recipients']} recipients, expected {recipients}"
        wrong = [c for c in self.conns if c.count != self.expected(c.index)]
        if wrong:
            c = wrong[0]
            return (
                f"{len(wrong)} clients have a frame count other than expected (client "
                f"{c.index}: {c.count}, expected {self.expected(c.index)})"
            )
        elapsed = t_done - answer["t_start"]
        return Run(
            elapsed=elapsed,
            publish=answer["t_end"] - answer["t_start"],
            rate=deliveries / elapsed,
            srv_cpu=(srv1 - srv0) / elapsed,
            gen_cpu=(gen1 - gen0) / elapsed,
            redis_cpu=(redis1 - redis0) / elapsed if self.probe else None,
            publisher=publisher,
            publisher_clients=len(local),
            done={pid: w.result() - answer["t_start"] for pid, w in waiters.items()},
        )

    async def publish_only(
        self, events: int, yield_every: int, run: Run, concurrency: int = 1, batch: int = 0
    ) -> None:
        """Publish to ``idle`` (no subscriber anywhere): the publishing loop alone, with
        ``concurrency`` tasks; then, with ``batch``, the same events through
        ``publish_many`` in batches of ``batch``."""
        calls0 = await self.probe.evalsha() if self.probe else (0, 0)
        cpu0 = await self.server.cpu()
        query = f"/bench/burst?channel=idle&events={events}&yield_every={yield_every}"
        query += f"&concurrency={concurrency}"
        answer = await http(self.server.port, self.server.method, query, timeout=self.timeout)
        cpu1 = await self.server.cpu()
        calls1 = await self.probe.evalsha() if self.probe else (0, 0)
        run.publish_only = events / (answer["t_end"] - answer["t_start"])
        run.publish_only_cpu_us = (cpu1 - cpu0) / events * 1e6
        if self.redis and calls1[0] > calls0[0]:
            run.evalsha_us = (calls1[1] - calls0[1]) / (calls1[0] - calls0[0])
        if batch:
            query = f"/bench/burst?channel=idle&events={events}&batch={batch}"
            answer = await http(self.server.port, self.server.method, query, timeout=self.timeout)
            cpu2 = await self.server.cpu()
            run.publish_many = events / (answer["t_end"] - answer["t_start"])
            run.publish_many_cpu_us = (cpu2 - cpu1) / events * 1e6

    async def steady(self, rate: float, seconds: float, sample_every: int, grace: float) -> Step:
        """The server publishes ``rate`` events/s for ``seconds`` on a fixed schedule;
        latency (receive time - the event's publish time) on every ``sample_every``-th
        client; lost = deliveries not counted ``grace`` s after the loop ended."""
        step = Step(rate)
        n = max(1, round(rate * seconds))
        step.events = n
        base = self.counter.total
        sampled = [c for c in self.conns if c.index % sample_every == 0]
        for c in sampled:
            c.latency = []
        srv0 = await self.server.cpu()
        cpu0, w0 = time.process_time(), time.monotonic()
        waiter = self.counter.expect(base + n * self.clients)
        query = f"/bench/steady?rate={rate:g}&duration={seconds:g}"
        if self.channel:
            query += f"&channel={self.channel}"
        try:
            answer = await http(
                self.server.port, self.server.method, query, timeout=seconds * 4 + 60
            )
        except Exception as e:
            step.problem = f"{query}: {type(e).__name__}: {e}"
            return step
        self.bursts.append(n)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(waiter, grace)
        cpu1, w1 = time.process_time(), time.monotonic()
        srv1 = await self.server.cpu()
        for c in sampled:
            step.latencies.extend(c.latency or [])
            c.latency = None
        step.latencies.sort()
        step.lost = n * self.clients - (self.counter.total - base)
        step.achieved = answer["achieved"]
        step.late_ms = answer["late_ms"]
        step.srv_cpu = (srv1 - srv0) / (w1 - w0)
        step.gen_cpu = (cpu1 - cpu0) / (w1 - w0)
        if self.counter.lost_connections or self.counter.closes:
            step.problem = (
                f"connections lost: {self.counter.lost_connections}, "
                f"close frames: {len(self.counter.closes)}"
            )
        return step

    def peak_rss_kb(self) -> list[int]:
        """VmHWM of each worker holding clients (or of the server process)."""
        pids = list(self.groups) or [self.server.proc.pid]
        return [kb for pid in pids if (kb := peak_rss_kb(pid)) is not None]

    # ----------------------------------------------------------------------- checks

    async def check(self) -> None:
        """After the last burst: exact per-client counts, the inspecting clients' order
        (and ids), the server's figures and log."""
        await asyncio.sleep(0.3)  # let anything extra arrive
        if self.kind.admin:
            self.stats = await self.admin_stats()
        for c in self.conns:
            expected = self.expected(c.index)
            if c.count < expected:
                self.lost += expected - c.count
            elif c.count > expected:
                self.extra += c.count - expected
        inspectors: dict[int | None, WsClient] = {
            pid: g.members[0] for pid, g in self.groups.items()
        } or ({None: self.conns[0]} if self.conns else {})
        for pid, client in inspectors.items():
            if not self._in_order(client):
                self.order[pid] = f"WRONG seq order (client {client.index})"
            elif self.check_ids and (epochs := _wrong_ids(client)):
                self.order[pid] = f"WRONG ids (client {client.index}: epochs {epochs})"
            else:
                self.order[pid] = f"ok (client {client.index})"
        if self.conns and self.conns[0].seen:
            self.frame_size = self.conns[0].seen[0][1]
        if self.redis:
            await self._collect_health()
        self.log_problems = [
            line.rstrip()
            for line in self.server.tail(100000).splitlines()
            if any(w in line for w in ("WARNING", "ERROR", "Traceback", "Exception"))
        ]
        self.problems.extend(self.counter.errors[:5])

    def _in_order(self, client: WsClient) -> bool:
        """``client`` saw each burst's seq values in order (a concurrent burst's: each
        exactly once, in any order)."""
        seen = [s for s, _, _ in client.seen]
        start = 0
        for n, events in enumerate(self.bursts):
            want = list(self.seqs(client.index, events))
            got = seen[start : start + len(want)]
            start += len(want)
            if (sorted(got) if n in self.unordered else got) != want:
                return False
        return start == len(seen)

    async def _collect_health(self) -> None:
        """``/ws/health`` of every worker: concurrent requests, until each one answered."""
        for _ in range(20):
            answers = await asyncio.gather(
                *(http(self.server.port, "GET", "/ws/health") for _ in range(6)),
                return_exceptions=True,
            )
            for a in answers:
                if isinstance(a, dict):
                    node = a.get("backplane", {}).get("node", "")
                    self.health[int(node.split(":")[-2])] = a["backplane"]
            if set(self.groups) <= set(self.health):
                return

    @property
    def lost_connections(self) -> int:
        return self.counter.lost_connections + sum(g.lost_connections for g in self.groups.values())

    @property
    def failed(self) -> bool:
        stats = self.stats or {}
        return bool(
            self.problems
            or self.lost
            or self.extra
            or self.counter.closes
            or self.lost_connections
            or any(not v.startswith("ok") for v in self.order.values())
            or stats.get("messages_dropped")
            or stats.get("slow_disconnects")
        )

    async def stop(self) -> None:
        for c in self.conns:
            c.close()
        await asyncio.sleep(0.05)
        await self.server.stop()
