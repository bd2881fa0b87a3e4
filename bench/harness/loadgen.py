"""The load generator: raw ``asyncio.Protocol`` WebSocket clients on uvloop that count the
server's text frames by parsing frame headers only, and one-shot HTTP requests.

A client sends the HTTP Upgrade itself (no permessage-deflate offered, so no server
compresses), skips the 101 response, then counts unmasked server text frames; it answers
pings with pongs and records close frames. An inspecting client (client 0, and for
multi-worker servers one client per worker) also decodes every event and records its
``seq``, its size and its ``id``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any


class Counter:
    """Frames counted over a set of connections; resolves a waiter when a target is reached."""

    def __init__(self) -> None:
        self.total = 0
        self.target = -1
        self.waiter: asyncio.Future[float] | None = None
        self.closes: list[tuple[int, int, str]] = []  # (client, close code, reason)
        self.lost_connections = 0
        self.errors: list[str] = []
        self.pings = 0  # WebSocket pings received (and answered)

    def expect(self, target: int) -> asyncio.Future[float]:
        self.target = target
        self.waiter = asyncio.get_running_loop().create_future()
        if self.total >= target:
            self.waiter.set_result(time.monotonic())
        return self.waiter

    def add(self, n: int) -> None:
        self.total += n
        if self.total >= self.target and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(time.monotonic())


class Group(Counter):
    """The frames of one worker process's clients; every frame also counts in ``parent``."""

    def __init__(self, parent: Counter, pid: int, members: list[WsClient]) -> None:
        super().__init__()
        self.parent = parent
        self.pid = pid
        self.members = members
        self.total = sum(c.count for c in members)
        self.closes = parent.closes
        self.errors = parent.errors
        for c in members:
            c.counter = self

    @property
    def size(self) -> int:
        return len(self.members)

    def add(self, n: int) -> None:
        super().add(n)
        self.parent.add(n)


class WsClient(asyncio.Protocol):
    """Counts the server's text frames by parsing frame headers only.

    ``eio``: the server speaks Socket.IO over Engine.IO v4 (websocket transport); only
    ``42[...]`` event frames are counted; the ``0{...}`` open packet is answered with ``40``
    (connect to the default namespace) and ``2`` (ping) with ``3`` (pong).
    ``latency``: when a list, the receive time minus the event's ``"pt"`` (publish time,
    CLOCK_MONOTONIC) of every event frame is appended to it (one clock reading per read).
    """

    def __init__(
        self, index: int, counter: Counter, path: str, inspect: bool, eio: bool = False
    ) -> None:
        self.index = index
        self.counter = counter
        self.path = path
        self.inspect = inspect
        self.eio = eio
        self.latency: list[float] | None = None
        self.buf = b""
        self.upgraded = False
        self.count = 0
        self.closing = False
        self.transport: Any = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        #: when inspecting: (seq, payload size, event id) of every event, in arrival order.
        self.seen: list[tuple[int, int, str | None]] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.counter.lost_connections += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"client {self.index}: connection lost"))

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if not status.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(data[:300].decode("latin-1")))
                self.buf = b""
                return
            self.upgraded = True
            if not self.ready.done():
                self.ready.set_result(None)
            data = data[end + 4 :]
        pos = 0
        n = len(data)
        texts = 0
        eio = self.eio
        latency = self.latency
        now = time.monotonic() if latency is not None else 0.0
        while n - pos >= 2:
            b0 = data[pos]
            length = data[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            stop = start + length
            if stop > n:
                break
            if b0 == 0x81:  # FIN + text
                if eio and not (
                    stop - start >= 2 and data[start] == 0x34 and data[start + 1] == 0x32
                ):
                    self._engineio(data[start:stop])  # not a 42 (Socket.IO event) packet
                else:
                    texts += 1
                    if self.inspect:
                        self._inspect(data[start:stop])
                    if latency is not None:
                        at = data.find(b'"pt":', start, stop)
                        if at >= 0:
                            end = at + 5
                            while data[end] not in b",}":
                                end += 1
                            latency.append(now - float(data[at + 5 : end]))
            else:
                self._control(b0, data[start:stop])
            pos = stop
        self.buf = data[pos:] if pos < n else b""
        if texts:
            self.count += texts
            self.counter.add(texts)

    def _inspect(self, payload: bytes) -> None:
        if self.eio:  # 42["tick",{...}]
            name, *rest = json.loads(payload[2:])
            if name == "tick":
                data = rest[0].get("data", rest[0])
                self.seen.append((data["seq"], len(payload), rest[0].get("id")))
            return
        message = json.loads(payload)
        if message.get("type") == "tick":
            self.seen.append((message["data"]["seq"], len(payload), message.get("id")))

    def _send_text(self, payload: bytes) -> None:
        """A masked client text frame (short payloads only)."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes((0x81, 0x80 | len(payload))) + mask + masked)

    def _engineio(self, payload: bytes) -> None:
        if payload[:1] == b"0":  # Engine.IO open -> Socket.IO connect to "/"
            self._send_text(b"40")
        elif payload == b"2":  # Engine.IO ping -> pong
            self._send_text(b"3")
        elif payload[:2] in (b"40", b"6"):  # Socket.IO connected; noop
            pass
        elif payload[:1] == b"1" or payload[:2] in (b"41", b"44"):
            self.counter.errors.append(f"client {self.index}: engine.io {payload[:80]!r}")

    def _control(self, b0: int, payload: bytes) -> None:
        opcode = b0 & 0x0F
        if opcode == 0x9:  # ping -> masked pong with the same payload
            self.counter.pings += 1
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + mask + masked)
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.counter.closes.append((self.index, code, payload[2:].decode(errors="replace")))
            self.closing = True
            self.transport.close()
        elif opcode != 0xA:
            self.counter.errors.append(f"client {self.index}: unexpected frame byte {b0:#x}")

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


async def connect(
    port: int,
    clients: int,
    counter: Counter,
    path_of: Callable[[int], str],
    into: list[WsClient],
    *,
    eio: bool = False,
    timeout: float = 60.0,
) -> None:
    """Open ``clients`` connections (50 handshakes at a time) into ``into``, sorted by
    index, and wait until every one has its welcome message. Client 0 inspects."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(50)

    async def one(i: int) -> None:
        async with sem:
            _, client = await loop.create_connection(
                lambda: WsClient(i, counter, path_of(i), inspect=i == 0, eio=eio),
                "127.0.0.1",
                port,
            )
            into.append(client)
            await asyncio.wait_for(client.ready, 30)

    await asyncio.gather(*(one(i) for i in range(clients)))
    into.sort(key=lambda c: c.index)
    await asyncio.wait_for(counter.expect(clients), timeout)


async def http(port: int, method: str, target: str, timeout: float = 120.0) -> dict[str, Any]:
    """One HTTP/1.1 request (Connection: close); the JSON body of a 200 answer."""

    async def go() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # No Content-Length on a GET: Sanic logs "body not consumed" for one, even 0.
            length = "" if method == "GET" else "Content-Length: 0\r\n"
            writer.write(
                f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"{length}Connection: close\r\n\r\n".encode()
            )
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            lines = head.split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status = int(lines[0].split()[1])
            if status != 200:
                raise RuntimeError(f"{method} {target} -> {status}: {body[:300]!r}")
            result: dict[str, Any] = json.loads(body)
            return result
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)
