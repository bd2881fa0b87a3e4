"""Server subprocesses: the kinds, start-up in their own session with CPU pinning, stop
(SIGINT to the process group, SIGKILL after a grace period), and what ``/proc`` says
about them. Also the generator's own connection to Redis (``RedisProbe``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from .loadgen import http

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CPU = 0
GENERATOR_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Kind:
    """A server program of ``harness.apps``, as the load generator talks to it."""

    name: str
    label: str
    method: str = "GET"  # of /bench/burst and /bench/steady
    path: str = "/ws/bench"  # the clients' WebSocket path
    eio: bool = False  # Socket.IO over Engine.IO v4
    admin: bool = False  # serves sanic-realtime's /admin/ws/stats


KINDS = {
    k.name: k
    for k in (
        Kind("sanic-realtime", "sanic-realtime", "POST", admin=True),
        Kind("sanic-realtime-redis", "sanic-realtime redis", "POST", admin=True),
        Kind("websockets", "websockets.broadcast"),
        Kind("sanic-hub", "sanic hub", "POST"),
        Kind("sanic-gather", "sanic gather", "POST"),
        Kind("socketio", "python-socketio", path="/socket.io/?EIO=4&transport=websocket", eio=True),
        Kind("raw", "raw reference server"),
    )
}


def row_label(kind: str, yield_every: int) -> str:
    """A table row's name: the raw server gives the two reference rows."""
    if kind == "raw":
        return "bare write (ref)" if yield_every else "generator ceiling"
    return KINDS[kind].label


# =========================================================================== this process


def can_pin() -> bool:
    return (os.cpu_count() or 1) > 1 and hasattr(os, "sched_setaffinity")


def pin_generator() -> bool:
    """Pin this process (the load generator) to GENERATOR_CPU, if there are 2 CPUs."""
    if not can_pin():
        return False
    try:
        os.sched_setaffinity(0, {GENERATOR_CPU})
    except OSError:
        return False
    return True


def server_cpus() -> set[int] | None:
    """Where the servers of fanout.py and compare.py run: CPU 0, or unpinned."""
    return {SERVER_CPU} if can_pin() else None


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fd_budget() -> int:
    """How many connections the generator can hold at once."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return (soft if soft != resource.RLIM_INFINITY else 1 << 20) - 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
    """utime + stime of ``pids`` (all their threads), in seconds (10 ms ticks)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def status(pid: int, key: str) -> str | None:
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
    """VmHWM: the process image's peak RSS (``ru_maxrss`` would carry over through fork
    and exec from the parent's peak)."""
    kb = status(pid, "VmHWM")
    return None if kb is None else int(kb)


def rss_kb(pid: int) -> int:
    """VmRSS now."""
    kb = status(pid, "VmRSS")
    if kb is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(kb)


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


def find_child(parent: int, words: tuple[bytes, ...], timeout: float) -> int | None:
    """PID of a child of ``parent`` whose command line holds every one of ``words``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            fields = _stat_fields(int(name))
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if fields is not None and int(fields[1]) == parent and all(w in argv for w in words):
                return int(name)
        time.sleep(0.05)
    return None


# =========================================================================== servers


class Server:
    """A server subprocess in its own session (cwd and PYTHONPATH: ``bench/``), pinned to
    ``cpus`` from the start (a child would otherwise inherit the generator's CPU).

    ``Server.app``: ``python -m harness.apps --serve KIND`` (one process, which reports its
    own CPU time at ``/bench/info``). ``Server.cli``: the Sanic CLI with the factory
    ``harness.apps:create_app`` and 1 or more workers (CPU time from ``/proc``, all the
    session's processes)."""

    def __init__(
        self,
        name: str,
        port: int,
        cmd: list[str],
        *,
        method: str,
        cpus: set[int] | None,
        env: dict[str, str] | None = None,
        cpu_from_proc: bool = False,
        grace: float = 5.0,
    ) -> None:
        self.name = name
        self.grace = grace  # seconds between SIGINT and SIGKILL in stop()
        self.port = port
        self.method = method
        self.cpu_from_proc = cpu_from_proc
        self.killed = False
        self.leftovers = 0
        # Closed in stop(); the server's output is read back for checks and on failure.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        full_env = {**os.environ, **(env or {})}
        paths = (BENCH_DIR, os.environ.get("PYTHONPATH"))
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        pin = functools.partial(os.sched_setaffinity, 0, cpus) if cpus else None
        self.proc = subprocess.Popen(
            cmd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
            cwd=BENCH_DIR,
            preexec_fn=pin,
        )

    @classmethod
    def app(
        cls,
        kind: Kind,
        buffer_size: int,
        cpus: set[int] | None,
        env: dict[str, str] | None = None,
    ) -> Server:
        port = free_port()
        cmd = [sys.executable, "-m", "harness.apps", "--serve", kind.name, "--port", str(port)]
        cmd += ["--buffer-size", str(buffer_size)]
        return cls(kind.name, port, cmd, method=kind.method, cpus=cpus, env=env)

    @classmethod
    def cli(cls, name: str, workers: int, cpus: set[int] | None, env: dict[str, str]) -> Server:
        port = free_port()
        cmd = [sys.executable, "-m", "sanic", "harness.apps:create_app", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-logs", "--no-motd"]
        cmd += ["--single-process"] if workers == 1 else ["--workers", str(workers)]
        return cls(
            name, port, cmd, method="POST", cpus=cpus, env=env, cpu_from_proc=True, grace=10.0
        )

    async def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited:\n{self.tail()}")
            try:
                return await self.info(timeout=2.0)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} server not ready:\n{self.tail()}") from None
                await asyncio.sleep(0.1)

    async def info(self, timeout: float = 120.0) -> dict[str, Any]:
        return await http(self.port, "GET", "/bench/info", timeout=timeout)

    def pids(self) -> list[int]:
        return session_pids(self.proc.pid)

    async def cpu(self) -> float:
        """CPU seconds (user+sys) the server has used so far."""
        if self.cpu_from_proc:
            return cpu_seconds(self.pids())
        return float((await self.info())["cpu"])

    def tail(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    async def stop(self) -> None:
        """SIGINT to the process group; SIGKILL to it if it has not exited after
        ``self.grace``, or if a process of its session (a worker) outlived it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, self.grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self.proc.wait, 5)
        # multiprocessing's resource tracker exits a moment after the main process; a
        # worker that outlived it would keep a CPU busy.
        for _ in range(30):
            if not self.pids():
                break
            await asyncio.sleep(0.1)
        rest = self.pids()
        if rest:
            self.leftovers = len(rest)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


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
