"""Fan-out through the Redis backplane (1 and 2 Sanic workers) vs the memory backplane.

What is measured
    The same figure as ``bench/fanout.py``: event deliveries per second to N WebSocket
    clients, ``deliveries/s = E * N / elapsed``, where ``elapsed`` runs from the first
    ``publish`` of a burst of E events (``time.monotonic()`` in the publishing worker)
    until the load generator has counted all E * N frames (its own ``time.monotonic()``;
    CLOCK_MONOTONIC is one clock for every process on Linux). Each row is the median of
    ``--runs`` (default 3) timed bursts, with min..max, and for the Redis rows its ratio
    to the memory row measured in the same run. The rows (``--setups``):

    memory       sanic-realtime with the memory backplane, one process (``--single-process``),
                 pinned to CPU 0: the row of ``bench/fanout.py``.
    redis-1w     the Redis backplane, one process (``--single-process``), pinned to CPU 0.
                 Each ``publish`` runs one Lua script in Redis (offset, XADD to the
                 channel's stream, PUBLISH), awaits its reply, then delivers the event to
                 its own clients; its pub/sub copy comes back and is dropped as a
                 duplicate.
    redis-2w     the Redis backplane, 2 workers (``--workers 2``), NOT pinned: the workers
                 may use both CPUs (the load generator is pinned to CPU 1). The kernel
                 spreads the N connections over the workers as it likes (the output says
                 how many each got). The burst request lands on one worker, which
                 publishes and delivers to its own clients; the other worker gets every
                 event through Redis pub/sub and delivers it to its clients. All N clients
                 must get every event.
    redis-2w-cpu0  the same 2 workers, both pinned to CPU 0: the cost of splitting the
                 fan-out over two processes without a second CPU to run them.

    ``publish only``: after each timed burst, the same worker-side loop publishes
    ``--publish-events`` events to a channel nobody subscribes to (``idle``), so each
    publish is only the Redis round trip (memory: only the history append): events/s of
    the publishing loop. ``evalsha us/call`` is Redis's own execution time of the script
    (delta of ``INFO commandstats`` over that loop; it counts every client of this Redis).

Servers
    Every row is a real server in its own subprocess and session, started with the Sanic
    CLI: ``python -m sanic redis_fanout:create_app --factory --host 127.0.0.1 --port P
    --no-access-logs --no-motd`` plus ``--single-process`` or ``--workers 2``; Sanic picks
    uvloop. The factory reads ``BENCH_BACKPLANE`` (``memory`` or a Redis URL),
    ``BENCH_PREFIX`` and ``BENCH_BUFFER`` from the environment and builds ``Sanic`` +
    ``Realtime(parse_config({...}))`` with channels ``bench`` and ``idle``,
    ``buffer_size`` = max(4096, 2E), ``slow_client: disconnect``, default history (1000
    events, 600 s), and the route ``POST /bench/burst?events=E&yield_every=K[&channel=c]``,
    which runs ``await rt.publish(c, "tick", {"seq": i, "payload": "x" * 150})`` E times
    in the worker that got the request (the same loop as in ``bench/fanout.py``). Each
    Redis server gets its own key prefix ``bench-<random>-<setup>``; every key under
    ``bench-<random>`` is deleted at the end (SCAN + DEL).

Load generator (this process, pinned to CPU 1)
    ``fanout.WsClient`` / ``fanout.Counter`` / ``fanout.http`` of ``bench/fanout.py``: one
    raw ``asyncio.Protocol`` per connection on uvloop that parses frame headers only. After
    the clients are connected, each client is mapped to the worker process that holds its
    server-side socket (``/proc/net/tcp`` + ``/proc/<pid>/fd``); the per-worker counts are
    checked against ``/admin/ws/stats`` ``by_worker``. Per worker, one client (the lowest
    index) decodes every frame and checks that the ``seq`` values of each burst arrive
    complete and in order and that the event ids are one epoch with consecutive offsets.
    Frames are also counted per worker, to give the time at which each worker's clients
    had everything (``done``). After each burst every client's count must equal ``1 +
    events published so far`` and the publishing worker's ``recipients`` must equal E x its
    clients. At the end: lost/extra frames, close frames, lost connections,
    ``messages_dropped`` / ``slow_disconnects`` from ``/admin/ws/stats``, each reachable
    worker's ``recovered_from_stream`` (``/ws/health``), and the warnings and errors in
    the servers' output.

Procedure
    All servers start side by side and get their N clients; for each K: one untimed
    warm-up burst of E/4 events per server, then ``--runs`` rounds in which each server
    gets one timed burst (and one publish-only loop), in an order rotated each round; the
    others are idle. E = ``--deliveries / N`` (default 1,000,000 / N).

Columns
    ``loop`` = the publishing loop (first publish to return), ``lag`` = last frame counted
    - end of that loop. ``srv%`` = CPU time (user+sys, from ``/proc/<pid>/stat``) of all
    the server's processes during the timed window / window (up to 200% with 2 workers).
    ``redis%`` = redis-server's CPU (``INFO cpu``) over the window: the whole server, so
    other clients of the same Redis would be counted too. ``gen%`` = the load generator.
    ``RSS MB`` = each worker's peak RSS (VmHWM) after the row's runs.

Caveats
    Loopback, one 2-CPU machine: redis-server (not pinned by this bench), the servers and
    the load generator share the CPUs, so the 2-worker row does not get a CPU per worker.
    With K=0 the memory backplane coalesces a whole burst into one write per connection;
    the Redis backplane awaits Redis at every publish, so it yields at every event anyway
    and does not coalesce: compare K=1 rows. See ``bench/fanout.py`` for the caveats of
    the method itself.

Usage
    python bench/redis_fanout.py                # 1000 clients, K=1, all four rows (~1.5 min)
    python bench/redis_fanout.py --setups memory,redis-1w,redis-2w --runs 5
    python bench/redis_fanout.py --quick        # 200 clients, 100k deliveries per burst
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fanout

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
REDIS_URL = "redis://127.0.0.1:6379/0"


# =========================================================================== the server


def create_app() -> Any:
    """The Sanic app of every row (``python -m sanic redis_fanout:create_app --factory``)."""
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse
    from sanic.response import json as json_response

    from sanic_realtime import Realtime
    from sanic_realtime.config import parse_config

    backplane = os.environ.get("BENCH_BACKPLANE", "memory")
    config: dict[str, Any] = {
        "buffer_size": int(os.environ.get("BENCH_BUFFER", "4096")),
        "slow_client": "disconnect",
        "max_clients": 20000,
        "channels": {"bench": {}, "idle": {}},
    }
    if backplane != "memory":
        config["backplane"] = backplane
        config["redis"] = {"prefix": os.environ["BENCH_PREFIX"]}
    rt = Realtime(parse_config(config))
    app = Sanic("bench")
    app.config.AUTO_EXTEND = False
    app.blueprint(rt.blueprint)

    @app.post("/bench/burst")
    async def burst(request: Request) -> HTTPResponse:
        channel = request.args.get("channel", "bench")
        events = int(request.args.get("events", "1"))
        every = int(request.args.get("yield_every", "1"))
        recipients = 0
        t_start = time.monotonic()
        for i in range(events):
            result = await rt.publish(channel, "tick", {"seq": i, "payload": fanout.PAYLOAD})
            recipients += result.recipients
            if every and (i + 1) % every == 0:
                await asyncio.sleep(0)
        t_end = time.monotonic()
        return json_response(
            {"t_start": t_start, "t_end": t_end, "recipients": recipients, "pid": os.getpid()}
        )

    @app.get("/bench/info")
    async def info(request: Request) -> HTTPResponse:
        return json_response({**fanout._info(), "pid": os.getpid()})

    return app


# =========================================================================== /proc


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after ``comm``: [0] is field 3 (state)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a server started with start_new_session)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None and int(fields[3]) == sid:
                pids.append(int(name))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (all their threads), in seconds."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def _status(pid: int, key: str) -> str | None:
    """The value of ``key`` in ``/proc/<pid>/status`` (its first word), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def peak_rss_kb(pid: int) -> int | None:
    """VmHWM of any process (``fanout._peak_rss_kb`` reads only this process's own)."""
    kb = _status(pid, "VmHWM")
    return None if kb is None else int(kb)


def socket_owners(pids: list[int], port: int) -> dict[int, int]:
    """client port -> pid of the process holding the server side of that connection."""
    inode_pid: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inode_pid[int(link[8:-1])] = pid
    owners: dict[int, int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in inode_pid:
                owners[int(remote.rsplit(":", 1)[1], 16)] = inode_pid[inode]
    return owners


# =========================================================================== rows


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    redis: bool
    workers: int
    #: "server" = CPU 0 (like bench/fanout.py), "all" = every CPU.
    placement: str


SETUPS = {
    s.name: s
    for s in (
        Setup("memory", "memory, 1 process", False, 1, "server"),
        Setup("redis-1w", "redis, 1 worker", True, 1, "server"),
        Setup("redis-2w", "redis, 2 workers", True, 2, "all"),
        Setup("redis-2w-cpu0", "redis, 2 workers, CPU0", True, 2, "server"),
    )
}
DEFAULT_SETUPS = list(SETUPS)


class Server(fanout.Server):
    """A Sanic CLI server in its own session; ``wait_ready``, ``tail`` and ``stop``
    (SIGINT to the process group, SIGKILL after a grace period) are fanout.py's."""

    def __init__(
        self, setup: Setup, buffer_size: int, redis_url: str, prefix: str, cpus: set[int] | None
    ) -> None:
        self.kind = setup.label
        self.port = fanout.free_port()
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (BENCH_DIR, env.get("PYTHONPATH")) if p)
        env["BENCH_BACKPLANE"] = redis_url if setup.redis else "memory"
        env["BENCH_PREFIX"] = prefix
        env["BENCH_BUFFER"] = str(buffer_size)
        cmd = [sys.executable, "-m", "sanic", "redis_fanout:create_app", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-logs", "--no-motd"]
        cmd += ["--single-process"] if setup.workers == 1 else ["--workers", str(setup.workers)]
        # The generator is pinned to CPU 1 and a child inherits that: set it explicitly.
        pin = functools.partial(os.sched_setaffinity, 0, cpus) if cpus else None
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=BENCH_DIR,
            preexec_fn=pin,
        )
        self.method = "POST"
        self.killed = False
        self.leftovers = 0

    async def stop(self, grace: float = 10.0) -> None:
        await super().stop(grace)
        # multiprocessing's resource tracker exits a moment after the main process; a
        # worker that outlived it would keep a CPU busy.
        for _ in range(30):
            if not session_pids(self.proc.pid):
                break
            await asyncio.sleep(0.1)
        rest = session_pids(self.proc.pid)
        if rest:
            self.leftovers = len(rest)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class Client(fanout.WsClient):
    """fanout.WsClient; when inspecting, it also records each event's id."""

    def _inspect(self, payload: bytes) -> None:
        message = json.loads(payload)
        if message.get("type") == "tick":
            self.seen.append((message["data"]["seq"], message["id"]))


class Group(fanout.Counter):
    """The frames of one worker's clients; every frame also counts in ``parent``."""

    def __init__(self, parent: fanout.Counter, pid: int, members: list[Client]) -> None:
        super().__init__()
        self.parent = parent
        self.pid = pid
        self.size = len(members)
        self.members = members
        self.total = sum(c.count for c in members)
        self.closes = parent.closes
        self.errors = parent.errors

    def add(self, n: int) -> None:
        super().add(n)
        self.parent.add(n)


@dataclass(kw_only=True)
class Run(fanout.Run):
    """fanout.Run (elapsed, publish, rate, srv_cpu, gen_cpu; ``lag``) plus Redis's CPU,
    the publishing worker and the publish-only figures. ``srv_cpu`` here is the CPU of
    all the server's processes (``/proc``), not one process's ``/bench/info``."""

    redis_cpu: float
    publisher: int
    done: dict[int, float]  # pid -> from first publish to its clients' last frame
    publish_only: float = 0.0  # events/s
    publish_only_cpu_us: float = 0.0  # server CPU per event of the publish-only loop
    evalsha_us: float | None = None


@dataclass
class Row(fanout.Row):
    """fanout.Row (clients, events, yield_every, runs, problems; ``median``) whose
    ``kind`` is a SETUPS name; RSS and connections per worker instead of ``maxrss_kb``."""

    rss_kb: list[int] = field(default_factory=list)
    per_worker: list[int] = field(default_factory=list)

    @property
    def setup(self) -> Setup:
        return SETUPS[self.kind]

    @property
    def label(self) -> str:
        return self.setup.label


class RedisProbe:
    """The generator's own Redis connection: CPU, command stats, clean-up."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url)

    async def cpu(self) -> float:
        info = await self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    async def evalsha(self) -> tuple[int, int]:
        stats = (await self.client.info("commandstats")).get("cmdstat_evalsha", {})
        return int(stats.get("calls", 0)), int(stats.get("usec", 0))

    async def server(self) -> dict[str, Any]:
        info: dict[str, Any] = await self.client.info("server")
        return info

    async def delete(self, pattern: str) -> int:
        deleted = 0
        keys = [k async for k in self.client.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 500):
            deleted += await self.client.delete(*keys[i : i + 500])
        return int(deleted)

    async def close(self) -> None:
        await self.client.aclose()


class Target:
    """One server (1 or 2 workers) and the N generator connections to it."""

    def __init__(
        self,
        setup: Setup,
        clients: int,
        buffer_size: int,
        args: argparse.Namespace,
        prefix: str,
        probe: RedisProbe | None,
        cpus: set[int] | None,
    ) -> None:
        self.setup = setup
        self.clients = clients
        self.buffer_size = buffer_size
        self.timeout = args.timeout
        self.probe = probe
        self.prefix = prefix
        self.server = Server(setup, buffer_size, args.redis_url, prefix, cpus)
        self.counter = fanout.Counter()
        self.conns: list[Client] = []
        self.groups: dict[int, Group] = {}
        self.bursts: list[int] = []
        self.loop = "?"
        self.stats: dict[str, Any] | None = None
        self.health: dict[int, dict[str, Any]] = {}
        self.log_problems: list[str] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.lost = 0
        self.extra = 0
        self.order: dict[int, str] = {}  # pid -> "ok (client i)" or what is wrong

    @property
    def label(self) -> str:
        return self.setup.label

    async def _stats(self) -> dict[str, Any]:
        return await fanout.http(self.server.port, "GET", "/admin/ws/stats")

    async def start(self) -> None:
        info = await self.server.wait_ready(timeout=60.0)
        self.loop = info["loop"]
        deadline = time.monotonic() + 60.0
        while (await self._stats()).get("workers", 1) < self.setup.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all workers reported:\n{self.server.tail()}")
            await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with sem:
                _, client = await loop.create_connection(
                    lambda: Client(i, self.counter, "/ws/bench", inspect=False),
                    "127.0.0.1",
                    self.server.port,
                )
                self.conns.append(client)
                await asyncio.wait_for(client.ready, 30)

        await asyncio.gather(*(one(i) for i in range(self.clients)))
        self.conns.sort(key=lambda c: c.index)
        await asyncio.wait_for(self.counter.expect(self.clients), self.timeout)
        self._map_workers()
        await self._check_by_worker()

    def _map_workers(self) -> None:
        """Which worker process holds each client's connection; one counter per worker."""
        owners = socket_owners(session_pids(self.server.proc.pid), self.server.port)
        members: dict[int, list[Client]] = {}
        for c in self.conns:
            pid = owners.get(c.transport.get_extra_info("sockname")[1])
            if pid is None:
                raise RuntimeError(f"client {c.index}: no server process holds its connection")
            members.setdefault(pid, []).append(c)
        for pid, clients in sorted(members.items(), key=lambda kv: -len(kv[1])):
            group = Group(self.counter, pid, clients)
            for c in clients:
                c.counter = group
            clients[0].inspect = True
            self.groups[pid] = group
        if len(self.groups) < self.setup.workers:
            self.notes.append(
                f"the kernel gave all clients to {len(self.groups)} of {self.setup.workers} workers"
            )

    async def _check_by_worker(self) -> None:
        """The admin figures (refreshed by each worker every 2 s) must agree."""
        deadline = time.monotonic() + 15.0
        mine = {pid: g.size for pid, g in self.groups.items()}
        while True:
            stats = await self._stats()
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

    def _server_cpu(self) -> float:
        return cpu_seconds(session_pids(self.server.proc.pid))

    async def _redis_cpu(self) -> float:
        return await self.probe.cpu() if self.probe else 0.0

    async def burst(self, events: int, every: int) -> Run | str:
        """One timed burst on channel ``bench``: a Run, or what went wrong."""
        target = self.counter.total + events * self.clients
        srv0, redis0, gen0 = self._server_cpu(), await self._redis_cpu(), time.process_time()
        waiter = self.counter.expect(target)
        waiters = {pid: g.expect(g.total + events * g.size) for pid, g in self.groups.items()}
        query = f"/bench/burst?events={events}&yield_every={every}"
        try:
            answer = await fanout.http(self.server.port, "POST", query, timeout=self.timeout)
        except (OSError, RuntimeError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
            return f"{query} failed ({e!r}); server output:\n{self.server.tail()}"
        self.bursts.append(events)
        try:
            t_done = await asyncio.wait_for(waiter, self.timeout)
        except asyncio.TimeoutError:
            missing = {
                pid: g.target - g.total for pid, g in self.groups.items() if g.total < g.target
            }
            return (
                f"{target - self.counter.total} of {events * self.clients} frames not received "
                f"within {self.timeout:g}s (missing per worker pid: {missing})"
            )
        gen1, srv1, redis1 = time.process_time(), self._server_cpu(), await self._redis_cpu()
        publisher = int(answer["pid"])
        local = self.groups[publisher].size if publisher in self.groups else 0
        if answer["recipients"] != events * local:
            return (
                f"the publishing worker {publisher} reports {answer['recipients']} recipients, "
                f"expected {events} x {local}"
            )
        expected = 1 + sum(self.bursts)
        wrong = sum(1 for c in self.conns if c.count != expected)
        if wrong:
            return f"{wrong} clients have a frame count other than {expected}"
        elapsed = t_done - answer["t_start"]
        return Run(
            elapsed=elapsed,
            publish=answer["t_end"] - answer["t_start"],
            rate=events * self.clients / elapsed,
            srv_cpu=(srv1 - srv0) / elapsed,
            redis_cpu=(redis1 - redis0) / elapsed,
            gen_cpu=(gen1 - gen0) / elapsed,
            publisher=publisher,
            done={pid: w.result() - answer["t_start"] for pid, w in waiters.items()},
        )

    async def publish_only(self, events: int, every: int, run: Run) -> None:
        """Publish to ``idle`` (no subscriber anywhere): the publishing loop alone."""
        calls0 = await self.probe.evalsha() if self.probe else (0, 0)
        cpu0 = self._server_cpu()
        query = f"/bench/burst?channel=idle&events={events}&yield_every={every}"
        answer = await fanout.http(self.server.port, "POST", query, timeout=self.timeout)
        cpu1 = self._server_cpu()
        calls1 = await self.probe.evalsha() if self.probe else (0, 0)
        run.publish_only = events / (answer["t_end"] - answer["t_start"])
        run.publish_only_cpu_us = (cpu1 - cpu0) / events * 1e6
        if self.setup.redis and calls1[0] > calls0[0]:
            run.evalsha_us = (calls1[1] - calls0[1]) / (calls1[0] - calls0[0])

    def rss(self) -> list[int]:
        return [kb for pid in self.groups if (kb := peak_rss_kb(pid)) is not None]

    async def check(self) -> None:
        """After the last burst: exact counts, order and ids per worker, figures, logs."""
        await asyncio.sleep(0.3)
        self.stats = await self._stats()
        expected = 1 + sum(self.bursts)
        for c in self.conns:
            if c.count < expected:
                self.lost += expected - c.count
            elif c.count > expected:
                self.extra += c.count - expected
        want = [i for b in self.bursts for i in range(b)]
        for pid, group in self.groups.items():
            client = group.members[0]
            seqs = [s for s, _ in client.seen]
            ids = [str(i).rsplit(":", 1) for _, i in client.seen]
            offsets = [int(o) for _, o in ids]
            epochs = {e for e, _ in ids}
            consecutive = all(b == a + 1 for a, b in itertools.pairwise(offsets))
            if seqs != want:
                self.order[pid] = f"WRONG seq order (client {client.index})"
            elif len(epochs) > 1 or not consecutive:
                self.order[pid] = f"WRONG ids (client {client.index}: epochs {sorted(epochs)})"
            else:
                self.order[pid] = f"ok (client {client.index})"
        if self.setup.redis:
            await self._collect_health()
        self.log_problems = [
            line.rstrip()
            for line in self.server.tail(100000).splitlines()
            if any(w in line for w in ("WARNING", "ERROR", "Traceback", "Exception"))
        ]
        self.problems.extend(self.counter.errors[:5])

    async def _collect_health(self) -> None:
        """``/ws/health`` of every worker: concurrent requests, until each one answered."""
        for _ in range(20):
            answers = await asyncio.gather(
                *(fanout.http(self.server.port, "GET", "/ws/health") for _ in range(6)),
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
        return bool(
            self.problems
            or self.lost
            or self.extra
            or self.counter.closes
            or self.lost_connections
            or any(not v.startswith("ok") for v in self.order.values())
            or (self.stats or {}).get("messages_dropped")
            or (self.stats or {}).get("slow_disconnects")
        )

    async def stop(self) -> None:
        for c in self.conns:
            c.close()
        await asyncio.sleep(0.05)
        await self.server.stop()


# =========================================================================== orchestration


def _cpus(setup: Setup) -> set[int] | None:
    n = os.cpu_count() or 1
    if n < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    return {fanout.SERVER_CPU} if setup.placement == "server" else set(range(n))


def _describe(setup: Setup) -> str:
    cpus = _cpus(setup)
    where = "not pinned" if cpus is None else "CPUs " + ",".join(map(str, sorted(cpus)))
    mode = "--single-process" if setup.workers == 1 else f"--workers {setup.workers}"
    backplane = "redis" if setup.redis else "memory"
    return f"{setup.label}: {backplane} backplane, {mode}, {where}"


async def bench_clients(
    clients: int,
    args: argparse.Namespace,
    rows: list[Row],
    targets: list[Target],
    prefix: str,
    probe: RedisProbe | None,
) -> None:
    events = fanout._events_for(args, clients)
    buffer_size = args.buffer_size or max(4096, 2 * events)
    started: list[Target] = []
    try:
        for name in args.setups:
            setup = SETUPS[name]
            target = Target(
                setup, clients, buffer_size, args, f"{prefix}-{name}-{clients}", probe, _cpus(setup)
            )
            started.append(target)
            targets.append(target)
            try:
                await target.start()
            except Exception as e:
                target.problems.append(f"start: {type(e).__name__}: {e}")
                target.problems.append(f"server output:\n{target.server.tail()}")
                continue
            sizes = ", ".join(f"pid {pid}: {g.size}" for pid, g in sorted(target.groups.items()))
            print(f"  {target.label:<24} N={clients}: clients per worker process: {sizes}")
        for every in args.yield_every:
            block = [Row(t.setup.name, clients, events, every) for t in started]
            rows.extend(block)
            live = []
            for row, t in zip(block, started, strict=True):
                if t.problems:
                    row.problems.append("server did not start")
                    continue
                outcome = await t.burst(max(1, events // 4), every)  # warm-up, untimed
                if isinstance(outcome, str):
                    row.problems.append(f"warm-up: {outcome}")
                    continue
                live.append((row, t))
            for i in range(args.runs):
                shift = i % len(live) if live else 0
                for row, t in live[shift:] + live[:shift]:
                    if row.problems:
                        continue
                    outcome = await t.burst(events, every)
                    if isinstance(outcome, str):
                        row.problems.append(f"run {i + 1}: {outcome}")
                        continue
                    try:
                        await t.publish_only(args.publish_events, every, outcome)
                    except Exception as e:
                        row.problems.append(f"run {i + 1}: publish only: {e!r}")
                    row.runs.append(outcome)
                    _print_run(row, t, i + 1, outcome)
            for row, t in zip(block, started, strict=True):
                row.rss_kb = t.rss()
                row.per_worker = sorted((g.size for g in t.groups.values()), reverse=True)
        for t in started:
            if not t.problems:
                try:
                    await t.check()
                except Exception as e:
                    t.problems.append(f"check: {type(e).__name__}: {e}")
    finally:
        for t in started:
            await t.stop()


def _print_run(row: Row, t: Target, i: int, r: Run) -> None:
    size = t.groups[r.publisher].size if r.publisher in t.groups else 0
    done = " / ".join(
        f"{r.done[pid]:.3f}" for pid in sorted(r.done, key=lambda p: p != r.publisher)
    )
    evalsha = f", evalsha {r.evalsha_us:.1f} us/call" if r.evalsha_us is not None else ""
    print(
        f"  {row.label:<24} N={row.clients:<5} K={row.yield_every} run {i}: "
        f"{r.rate:>11,.0f} deliveries/s ({r.elapsed:.3f} s; loop {r.publish:.3f} s; "
        f"srv {r.srv_cpu:.0%}, redis {r.redis_cpu:.0%}, gen {r.gen_cpu:.0%}; published by "
        f"pid {r.publisher} [{size} clients]; done s: {done}) | publish only "
        f"{r.publish_only:,.0f} events/s{evalsha}",
        flush=True,
    )


def print_report(rows: list[Row], targets: list[Target]) -> None:
    loops = {t.label: t.loop for t in targets}
    print("server event loops: " + ", ".join(f"{k}: {v}" for k, v in loops.items()))
    print()
    header = (
        f"{'setup':<25}{'clients':>7}{'events':>7}{'K':>3}{'deliveries/s':>14}  "
        f"{'min..max':<21}{'vs memory':>10}{'elapsed':>9}{'loop':>8}{'lag':>7}{'srv%':>6}"
        f"{'redis%':>7}{'gen%':>6}  {'clients/worker':<15}{'RSS MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        base = next(
            (
                b
                for b in rows
                if b.kind == "memory" and b.clients == r.clients and b.yield_every == r.yield_every
            ),
            None,
        )
        if r.runs:
            rates = [x.rate for x in r.runs]
            spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
            ratio = f"{r.median / base.median:.2f}x" if base and base.median else "n/a"
            cols = (
                f"{r.median:>14,.0f}  {spread:<21}{ratio:>10}"
                f"{statistics.median(x.elapsed for x in r.runs):>8.3f}s"
                f"{statistics.median(x.publish for x in r.runs):>7.3f}s"
                f"{round(statistics.median(x.lag for x in r.runs) * 1000):>5d}ms"
                f"{statistics.median(x.srv_cpu for x in r.runs):>6.0%}"
                f"{statistics.median(x.redis_cpu for x in r.runs):>7.0%}"
                f"{statistics.median(x.gen_cpu for x in r.runs):>6.0%}"
            )
        else:
            cols = f"{'FAILED':>14}  {'':<21}{'':>10}{'':>9}{'':>8}{'':>7}{'':>6}{'':>7}{'':>6}"
        split = "+".join(map(str, r.per_worker)) or "?"
        rss = "+".join(f"{kb / 1024:.0f}" for kb in r.rss_kb) or "?"
        print(
            f"{r.label:<25}{r.clients:>7}{r.events:>7}{r.yield_every:>3}{cols}  {split:<15}{rss:>8}"
        )
    print()
    header = (
        f"{'publishing loop':<25}{'clients':>7}{'K':>3}{'fan-out: events/s':>18}"
        f"{'srv CPU us/event':>18}{'publish only: events/s':>24}  {'min..max':<19}"
        f"{'srv CPU us/event':>17}{'evalsha us/call':>16}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if not r.runs:
            continue
        during = statistics.median(r.events / x.publish for x in r.runs)
        cpu = statistics.median(x.srv_cpu * x.elapsed / r.events * 1e6 for x in r.runs)
        only_cpu = statistics.median(x.publish_only_cpu_us for x in r.runs)
        only = [x.publish_only for x in r.runs]
        spread = f"{min(only):,.0f}..{max(only):,.0f}"
        us = [x.evalsha_us for x in r.runs if x.evalsha_us is not None]
        evalsha = f"{statistics.median(us):.1f}" if us else "-"
        print(
            f"{r.label:<25}{r.clients:>7}{r.yield_every:>3}{during:>18,.0f}{cpu:>18,.0f}"
            f"{statistics.median(only):>24,.0f}  {spread:<19}{only_cpu:>17,.0f}{evalsha:>16}"
        )
    print()
    print("checks, per server (all its bursts):")
    for t in targets:
        c = t.counter
        closes = ",".join(sorted({str(code) for _, code, _ in c.closes})) or "none"
        order = "; ".join(f"pid {pid}: {v}" for pid, v in t.order.items()) or "n/a"
        line = (
            f"  {t.label:<24} N={t.clients:<5} events published={sum(t.bursts)}: lost frames="
            f"{t.lost} extra={t.extra} close frames={len(c.closes)} (codes {closes}) "
            f"connections lost={t.lost_connections}; seq order and ids: {order}"
        )
        if t.stats is not None:
            s = t.stats
            line += (
                f"; /admin/ws/stats: workers={s.get('workers')} total_clients="
                f"{s.get('total_clients')} messages_dropped={s.get('messages_dropped')} "
                f"slow_disconnects={s.get('slow_disconnects')} "
                f"messages_sent={s.get('messages_sent')}; buffer_size={t.buffer_size}"
            )
        if t.setup.redis:
            rec = ", ".join(
                f"pid {pid}: {h.get('recovered_from_stream')} (reconnects {h.get('reconnects')})"
                for pid, h in sorted(t.health.items())
            )
            unreached = [pid for pid in t.groups if pid not in t.health]
            line += f"; recovered_from_stream: {rec or 'n/a'}"
            if unreached:
                line += f" (no /ws/health answer from pid {unreached})"
        line += f"; server log warnings/errors: {len(t.log_problems)}"
        if t.server.killed or t.server.leftovers:
            line += "; the server needed SIGKILL"
        print(line)
        for note in t.notes:
            print(f"    NOTE: {note}")
        for p in t.log_problems[:5]:
            print(f"    LOG: {p}")
        for p in t.problems:
            print(f"    PROBLEM: {p}")
    for r in rows:
        for p in r.problems:
            print(f"  PROBLEM {r.label} N={r.clients} K={r.yield_every}: {p}")
    print()
    print(
        "deliveries/s = events x clients / (first publish -> last frame counted by the "
        "generator); median of the runs\n"
        "vs memory = this row's median / the memory row's median (same run)\n"
        "elapsed, loop, lag, srv%, redis%, gen% = medians; loop = the publishing worker's "
        "loop, first publish to return;\n  lag = last frame counted - end of that loop; "
        "srv% = all the server's processes (2 workers: up to 200%)\n"
        "clients/worker = connections per worker process (from /proc); RSS MB = each "
        "worker's peak RSS (VmHWM)\n"
        "done s (per run) = first publish -> last frame of the publishing worker's clients "
        "/ of the other worker's\n"
        "fan-out: events/s = events / loop (the publishing worker); srv CPU us/event = CPU "
        "of all the server's processes\n  during the timed window / events\n"
        "publish only = the same loop on a channel without subscribers: events/s "
        "(memory: history append only;\n  redis: one EVALSHA round trip per event), and the "
        "server's CPU per event (/proc, 10 ms ticks)\n"
        "evalsha us/call = Redis's own time per script call (INFO commandstats)"
    )


async def orchestrate(args: argparse.Namespace) -> int:
    import uvloop

    pinned = fanout._pin(fanout.CLIENT_CPU) if (os.cpu_count() or 1) > 1 else False
    started = time.monotonic()
    prefix = f"bench-{secrets.token_hex(4)}"
    print("fan-out through the Redis backplane vs the memory backplane")
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(f"machine: nproc={os.cpu_count()}, {platform.machine()}, Linux {platform.release()}")
    print(f"python {platform.python_version()}; {fanout._versions()}, {_redis_versions()}")
    source = fanout._source_digest()
    print(f"sanic_realtime sources: sha256 {source} (all .py files of the package){fanout._git()}")
    probe: RedisProbe | None = None
    if any(SETUPS[s].redis for s in args.setups):
        probe = RedisProbe(args.redis_url)
        try:
            info = await probe.server()
        except Exception as e:
            print(f"Redis at {args.redis_url} is not reachable: {e}")
            return 1
        allowed = _cpus_allowed(int(info["process_id"]))
        print(
            f"redis-server {info['redis_version']} at {args.redis_url} (pid "
            f"{info['process_id']}, CPUs allowed {allowed}); key prefix {prefix}-*"
        )
    print(
        f"pinning: load generator on CPU {fanout.CLIENT_CPU}"
        if pinned
        else "pinning: NOT pinned (needs 2 CPUs and sched_setaffinity)"
    )
    loop_name = type(asyncio.get_running_loop()).__module__
    print(f"load generator: raw asyncio.Protocol clients on {loop_name} {uvloop.__version__}")
    for name in args.setups:
        print(f"  {_describe(SETUPS[name])}")
    buffer = args.buffer_size or "auto = max(4096, 2 x events)"
    print(
        f"per row: 1 warm-up burst of E/4 events, then {args.runs} timed bursts (each followed "
        f"by {args.publish_events} publish-only events), interleaved; buffer_size: {buffer}, "
        "slow_client: disconnect"
    )
    print()
    rows: list[Row] = []
    targets: list[Target] = []
    deleted = 0
    try:
        for clients in args.clients:
            await bench_clients(clients, args, rows, targets, prefix, probe)
    finally:
        if probe is not None:
            with contextlib.suppress(Exception):
                deleted = await probe.delete(f"{prefix}-*")
            await probe.close()
    print()
    print_report(rows, targets)
    if probe is not None:
        print(f"\nRedis clean-up: deleted {deleted} keys matching {prefix}-*")
    print(f"total time {time.monotonic() - started:.0f} s")
    if fanout._source_digest() != source:
        print("WARNING: the sanic_realtime sources changed during this run; rows may have")
        print("measured different code. Run again.")
        return 1
    failed = any(r.problems or not r.runs for r in rows) or any(t.failed for t in targets)
    return 1 if failed else 0


def _cpus_allowed(pid: int) -> str:
    """``Cpus_allowed_list`` of a process, e.g. ``0-1``."""
    return _status(pid, "Cpus_allowed_list") or "?"


def _redis_versions() -> str:
    parts = []
    for name in ("redis", "hiredis"):
        try:
            parts.append(f"{name}-py {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts).replace("hiredis-py", "hiredis")


def _setups(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(SETUPS)}: {text!r}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Fan-out deliveries/s through the Redis backplane (1 and 2 workers) vs "
        "the memory backplane. See the module docstring for the method."
    )
    parser.add_argument("--clients", type=fanout._int_list, default=[1000])
    parser.add_argument(
        "--yield-every",
        type=fanout._int_list,
        default=[1],
        help="await asyncio.sleep(0) after every K events, 0 = never (default 1)",
    )
    parser.add_argument("--events", type=int, default=0, help="events per timed burst")
    parser.add_argument(
        "--deliveries",
        type=int,
        default=1_000_000,
        help="deliveries per timed burst when --events is not given (default 1000000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed bursts per row (default 3)")
    parser.add_argument(
        "--publish-events",
        type=int,
        default=5000,
        help="events of each publish-only loop (default 5000)",
    )
    parser.add_argument(
        "--setups",
        type=_setups,
        default=DEFAULT_SETUPS,
        help=f"rows, comma-separated, from {', '.join(SETUPS)} "
        f"(default {','.join(DEFAULT_SETUPS)})",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"default {REDIS_URL}")
    parser.add_argument("--buffer-size", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 clients, 100000 deliveries"
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.quick:
        args.clients = [200]
        args.deliveries = 100_000
    if args.buffer_size and args.events > args.buffer_size:
        parser.error("--events must not exceed --buffer-size (a burst would overflow buffers)")
    fanout._raise_nofile()
    import uvloop

    return uvloop.run(orchestrate(args))


if __name__ == "__main__":
    sys.exit(main())
