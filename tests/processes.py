"""Servers in their own processes, started through the real `sanic` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from .redis_support import free_port

ROOT = Path(__file__).resolve().parent.parent


class SanicProcess:
    """``python -m sanic <target> --factory`` on a free port, in its own process group."""

    def __init__(
        self, target: str, env: dict[str, str], *, workers: int = 1, port: int | None = None
    ) -> None:
        """``port``: a given port, e.g. an earlier process's, to restart a server where
        its clients reconnect; a free one by default."""
        self.target = target
        self.env = env
        self.workers = workers
        self.port = free_port() if port is None else port
        self.process: asyncio.subprocess.Process | None = None
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self._output = bytearray()
        self._reader: asyncio.Task[None] | None = None

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(4096):
            self._output += chunk

    async def start(self, timeout: float = 30.0) -> SanicProcess:
        mode = ["--single-process"] if self.workers == 1 else ["--workers", str(self.workers)]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sanic",
            self.target,
            "--factory",
            *mode,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-logs",
            cwd=ROOT,
            env={**os.environ, **self.env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.create_task(self._read())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process.returncode is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                response = await self.http.get("/ws/health")
                if response.status_code == 200:
                    return self
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"{self.target} did not become healthy:\n{self.output[-3000:]}")

    async def stop(self) -> None:
        await self.http.aclose()
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader, 5)


class Cluster:
    """Processes of ``tests.scale_app`` sharing the machine's Redis under one key prefix,
    so a client can resume on a restarted server (the history is in Redis)."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.env = {"RT_BACKPLANE": redis_url, "RT_PREFIX": prefix}
        self.started: list[SanicProcess] = []

    async def start(self, *, port: int | None = None, workers: int = 1) -> SanicProcess:
        process = SanicProcess("tests.scale_app:create_app", self.env, workers=workers, port=port)
        self.started.append(process)
        return await process.start()

    async def restart(self, process: SanicProcess) -> SanicProcess:
        """Stop ``process`` (SIGTERM: a graceful shutdown, clients get 1001) and start a
        new one on its port."""
        await process.stop()
        return await self.start(port=process.port)

    async def close(self) -> None:
        from .redis_support import delete_prefix

        await asyncio.gather(*(p.stop() for p in self.started))
        await delete_prefix(self.redis_url, self.prefix)


async def cluster_figures(
    server: SanicProcess, token: str, *, clients: int, workers: int, timeout: float = 15.0
) -> dict[str, Any]:
    """The admin stats route's figures once every worker has reported and ``clients``
    connections are counted (workers write their figures every 2 s)."""
    stats: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while stats.get("total_clients") != clients or stats.get("workers") != workers:
            await asyncio.sleep(0.2)
            response = await server.http.get(
                "/admin/ws/stats", headers={"Authorization": f"Bearer {token}"}
            )
            stats = response.json()
    return stats
