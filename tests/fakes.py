"""A recording socket for hub tests: it stands in for the network, nothing else."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from typing import Any


def parse_frames(data: bytes) -> list[bytes]:
    """Split unmasked server frames (RFC 6455 section 5.2) into payloads."""
    out = []
    i = 0
    while i < len(data):
        length = data[i + 1] & 0x7F
        i += 2
        if length == 126:
            (length,) = struct.unpack("!H", data[i : i + 2])
            i += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[i : i + 8])
            i += 8
        out.append(data[i : i + length])
        i += length
    return out


class FakeSocket:
    def __init__(self, *, writable: bool = True) -> None:
        self.written = bytearray()
        self.writes = 0
        self.open = True
        self.fail_writes = False
        self.closed_with: tuple[int, str] | None = None
        self.aborted_with: tuple[int, str] | None = None
        self.pings: list[Callable[[], None]] = []
        self.ping_frames: list[bytes] = []
        self._writable = asyncio.Event()
        if writable:
            self._writable.set()

    def set_writable(self, value: bool) -> None:
        if value:
            self._writable.set()
        else:
            self._writable.clear()

    def is_open(self) -> bool:
        return self.open

    def writable(self) -> bool:
        return self._writable.is_set()

    async def wait_writable(self) -> None:
        await self._writable.wait()
        if not self.open:
            raise ConnectionError("closed")

    def write(self, data: bytes) -> None:
        if self.fail_writes:
            raise OSError("broken pipe")
        self.written += data
        self.writes += 1

    def try_write(self, data: bytes) -> bool:
        if not self.is_open() or not self.writable():
            return False
        try:
            self.write(data)
        except OSError:
            return False
        return True

    def ping(self, frame: bytes, payload: bytes, on_pong: Callable[[], None]) -> None:
        """Records the ping; ``pings[i]()`` is the client's pong."""
        if self.open:
            self.pings.append(on_pong)
            self.ping_frames.append(frame)

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)
        self.open = False

    def abort(self, code: int, reason: str) -> None:
        self.aborted_with = (code, reason)
        self.open = False
        self._writable.set()

    def close_status(self) -> tuple[int, str] | None:
        return self.closed_with or self.aborted_with

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(p) for p in parse_frames(bytes(self.written))]

    def events(self) -> list[dict[str, Any]]:
        return [m for m in self.messages() if "id" in m]
