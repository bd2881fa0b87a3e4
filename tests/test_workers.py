"""Start-up through the real `sanic` command line."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def test_several_workers_on_memory_backplane_are_refused() -> None:
    """`sanic ... --workers 2` with the memory backplane exits with an error that says why."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sanic",
        "example_app.app:create_app",
        "--factory",
        "--workers",
        "2",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    text = " ".join(output.decode(errors="replace").split())
    assert process.returncode != 0
    assert "cannot run 2 workers on the memory backplane" in text
    assert "Set a Redis URL" in text and "redis://127.0.0.1:6379/0" in text
