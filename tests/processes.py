"""Servers in their own processes, started through the real `sanic` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import httpx

from .redis_support import free_port

ROOT = Path(__file__).resolve().parent.parent


class SanicProcess:
    """``python -m sanic <target> --factory`` on a free port, in its own process group."""

    def __init__(self, target: str, env: dict[str, str], *, workers: int = 1) -> None:
        self.target = target
        self.env = env
        self.workers = workers
        self.port = free_port()
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
