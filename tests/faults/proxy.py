"""A TCP proxy on loopback between the services and the broker that misbehaves on purpose.

While chaos is on, every connection is, at random (from a seeded generator), cut at once or
stalled (bytes held back) for a bounded time; :meth:`ChaosProxy.calm` turns it off and
:meth:`ChaosProxy.close` ends every connection and the listener, so nothing outlives the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field


@dataclass
class ChaosProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; counts the drops and stalls it caused."""

    target_host: str
    target_port: int
    rng: random.Random
    max_stall: float = 3.0
    drops: int = 0
    stalls: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _stalled_until: float = 0.0
    _chaos: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def storm(self, seconds: float, every: float = 1.0) -> None:
        """Drop or stall connections at random moments for ``seconds``."""
        self._chaos = asyncio.create_task(self._storm(seconds, every))

    async def calm(self) -> None:
        """Wait for the storm to end; connections flow freely afterwards."""
        if self._chaos is not None:
            await self._chaos
        self._stalled_until = 0.0

    async def _storm(self, seconds: float, every: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            await asyncio.sleep(self.rng.uniform(0.2, every * 2))
            if self.rng.random() < 0.5:
                self.drops += 1
                for writer in list(self._writers):
                    if self.rng.random() < 0.5:
                        writer.transport.abort()
            else:
                self.stalls += 1
                self._stalled_until = loop.time() + self.rng.uniform(0.5, self.max_stall)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer, writer)),
            asyncio.create_task(self._pump(up_reader, writer, up_writer)),
        ]
        self._tasks.update(pumps)
        for pump in pumps:
            pump.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, peer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await source.read(65536):
                stall = self._stalled_until - loop.time()
                if stall > 0:
                    await asyncio.sleep(stall)
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (sink, peer):
                self._writers.discard(end)
                end.transport.abort()

    async def close(self) -> None:
        """Stop listening and end every connection still open."""
        if self._chaos is not None:
            self._chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._chaos
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
