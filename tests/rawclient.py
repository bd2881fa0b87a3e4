"""A WebSocket client that does only what the test tells it to.

It runs websockets' sans-I/O ``ClientProtocol`` over a plain non-blocking socket:
it reads only when asked (so it can play a client that stopped reading), and it
never sends the pongs the protocol prepares unless asked to send something.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri


class RawClient:
    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.frames: list[Frame] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, path: str, *, rcvbuf: int | None = None) -> RawClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), max_size=None)
        protocol.send_request(protocol.connect())
        client = cls(sock, protocol)
        await client._send_pending()
        while protocol.state is State.CONNECTING:
            await client._read_once(5.0)
        if protocol.state is not State.OPEN:
            raise ConnectionError(f"handshake failed: {protocol.handshake_exc}")
        return client

    async def _send_pending(self) -> None:
        loop = asyncio.get_running_loop()
        for data in self.protocol.data_to_send():
            if data:
                await loop.sock_sendall(self.sock, data)

    def _pump_events(self) -> None:
        events = self.protocol.events_received()
        self.frames.extend(e for e in events if isinstance(e, Frame))

    async def _read_once(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 20), timeout)
        if not data:
            self.protocol.receive_eof()
            self.eof = True
        else:
            self.protocol.receive_data(data)
        self._pump_events()
        return bool(data)

    async def read_until_closed(self, timeout: float = 10.0, *, answer_close: bool = False) -> None:
        """Read everything until the server closes the connection. ``answer_close``:
        reply to the server's close frame (completing the closing handshake), as a
        well-behaved client does; without it the client never answers."""
        async with asyncio.timeout(timeout):
            while not self.eof:
                await self._read_once(timeout)
                if answer_close and self.protocol.close_rcvd is not None:
                    answer_close = False
                    with contextlib.suppress(OSError):  # the server may be gone already
                        await self._send_pending()

    async def read_for(self, seconds: float) -> None:
        """Read whatever arrives during ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.eof and (left := deadline - loop.time()) > 0:
            try:
                await self._read_once(left)
            except TimeoutError:
                return

    async def send_text(self, text: str) -> None:
        """Send a text frame. Pongs the protocol prepared are thrown away: this client
        never answers pings."""
        self.protocol.data_to_send()
        self.protocol.send_text(text.encode())
        await self._send_pending()

    async def send_text_bytes(self, data: bytes) -> None:
        """Send a text frame with exactly these bytes (valid UTF-8 or not)."""
        self.protocol.send_text(data)
        await self._send_pending()

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(f.data) for f in self.frames if f.opcode is Opcode.TEXT]

    def pings(self) -> int:
        return sum(1 for f in self.frames if f.opcode is Opcode.PING)

    @property
    def close_code(self) -> int | None:
        rcvd = self.protocol.close_rcvd
        return None if rcvd is None else rcvd.code

    @property
    def close_reason(self) -> str | None:
        rcvd = self.protocol.close_rcvd
        return None if rcvd is None else rcvd.reason

    def close(self) -> None:
        self.sock.close()
