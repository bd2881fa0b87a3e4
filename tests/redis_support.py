"""Real Redis for tests: the machine's (``REDIS_URL``) and redis-servers a test starts.

Tests that need Redis use :func:`redis_url` (it skips with the reason when Redis is
unreachable, or fails when ``REALTIME_REQUIRE_REDIS=1``, as in CI) and a key prefix of
their own (:func:`new_prefix`), deleted afterwards (:func:`delete_prefix`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

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


class RedisServer:
    """A redis-server of the test's own on a free port, to stop and restart (no
    persistence: a restart loses every key, as a crashed cache does)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed (apt-get install -y redis-server)"
            if REQUIRE:
                pytest.fail(f"REALTIME_REQUIRE_REDIS=1 but {message}")
            pytest.skip(message)
        self.binary = binary
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
