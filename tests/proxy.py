"""A TCP proxy for fault tests: it forwards bytes both ways until told to swallow what the
server sends on the connections open at that moment (a peer that went silent without
closing, as behind a dead NAT or a hung host). New connections are forwarded normally."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        #: per open connection: a flag that, once set, swallows the server's bytes
        self._silenced: set[asyncio.Event] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def blackhole(self) -> None:
        """From now on, the server's bytes on the open connections are dropped."""
        for flag in self._silenced:
            flag.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        silenced = asyncio.Event()
        self._silenced.add(silenced)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(
                self._pump(reader, up_writer, None),
                self._pump(up_reader, writer, silenced),
                return_exceptions=True,
            )
            up_writer.close()
        finally:
            writer.close()
            self._silenced.discard(silenced)
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, silenced: asyncio.Event | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if silenced is not None and silenced.is_set():
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()
