"""Real Redis for tests: the machine's (``REDIS_URL``) and redis-servers a test starts.

Tests that need Redis use :func:`redis_url` (it skips with the reason when Redis is
unreachable, or fails when ``REALTIME_REQUIRE_REDIS=1``, as in CI) and a key prefix of
their own (:func:`new_prefix`), deleted afterwards (:func:`delete_prefix`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE = os.environ.get("REALTIME_REQUIRE_REDIS") == "1"

_reachable: bool | None = None
_reason = ""


def _check() -> None:
    global _reachable, _reason
    if _reachable is not None:
        return
    try:
        import redis
    except ImportError as e:
        _reachable, _reason = False, f"the redis package is not installed ({e})"
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        _reachable = True
    except Exception as e:
        _reachable, _reason = False, f"Redis at {REDIS_URL} is unreachable ({e})"


def redis_url() -> str:
    """The machine's Redis URL; skips (or fails under REALTIME_REQUIRE_REDIS=1) if down."""
    _check()
    if not _reachable:
        message = f"{_reason}; set REDIS_URL to a reachable Redis"
        if REQUIRE:
            pytest.fail(f"REALTIME_REQUIRE_REDIS=1 but {message}")
        pytest.skip(message)
    return REDIS_URL


def new_prefix() -> str:
    return f"rt-test-{uuid.uuid4().hex[:10]}"


async def delete_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The path of redis-server; skips (or fails under REALTIME_REQUIRE_REDIS=1) when it
    is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if REQUIRE:
            pytest.fail(f"REALTIME_REQUIRE_REDIS=1 but {message}")
        pytest.skip(message)
    return binary


class RedisServer:
    """A redis-server of the test's own on a free port, to stop and restart (no
    persistence: a restart loses every key, as a crashed cache does)."""

    def __init__(self) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rt-redis-"))
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    async def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            await self.process.wait()
            self.process = None

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """A master, one replica and ``sentinels`` sentinels (quorum ``quorum``) of the test's
    own, on free ports, monitoring ``mymaster`` (down after 1 s, failover timeout 5 s).
    :meth:`kill_master` SIGKILLs the master process; :meth:`close` kills everything."""

    SERVICE = "mymaster"

    def __init__(self, sentinels: int = 3, quorum: int = 2) -> None:
        self.binary = redis_server_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="rt-sentinel-"))
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.quorum = quorum
        self.processes: dict[int, asyncio.subprocess.Process] = {}

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/{db}"

    async def _spawn(self, port: int, *args: str) -> None:
        self.processes[port] = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {port}")

    async def _redis(self, port: int, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "redis-cli", "-p", str(port), *args, stdout=subprocess.PIPE
        )
        out, _ = await process.communicate()
        return out.decode()

    async def start(self) -> None:
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        for port in (self.master_port, self.replica_port):
            data = self.dir / str(port)
            data.mkdir()
            extra = [] if port == self.master_port else ["--replicaof", "127.0.0.1"]
            extra += [str(self.master_port)] if extra else []
            await self._spawn(port, "--port", str(port), *common, "--dir", str(data), *extra)
        await self._until(
            lambda: self._redis(self.replica_port, "INFO", "replication"),
            "master_link_status:up",
        )
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            await self._spawn(port, str(conf), "--sentinel")
        others = str(len(self.sentinel_ports) - 1)
        for port in self.sentinel_ports:
            # Each sentinel knows the replica and its peers (hello messages, every 2 s).
            await self._until(
                lambda port=port: self._redis(port, "SENTINEL", "master", self.SERVICE),
                f"num-other-sentinels\n{others}\n",
            )
            await self._until(
                lambda port=port: self._redis(port, "SENTINEL", "replicas", self.SERVICE),
                str(self.replica_port),
            )

    async def _until(self, read: Any, text: str, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in (out := await read()):
            if loop.time() > deadline:
                raise RuntimeError(f"timed out waiting for {text!r}; last: {out!r}")
            await asyncio.sleep(0.1)

    async def master_address(self) -> str:
        out = await self._redis(
            self.sentinel_ports[0], "SENTINEL", "get-master-addr-by-name", self.SERVICE
        )
        return ":".join(out.split())

    def kill_master(self) -> None:
        self.processes[self.master_port].kill()

    async def close(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
