"""A TCP proxy on loopback in front of RabbitMQ that fails a connection on cue.

It reads the AMQP frames the client sends and, when the client sends its ``cut_at``-th
``Basic.Publish``, does not forward it: ``how="drop"`` closes both sockets (a broker that
vanished), ``how="close"`` first sends the client the ``Connection.Close`` a broker sends
when it shuts down (320 ``CONNECTION_FORCED``), as in a restart (``cut_at=0``: never).

:meth:`CuttingProxy.go_down` drops every connection at once and refuses new ones until
:meth:`CuttingProxy.come_back`: a broker that is down for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from pamqp import commands, frame

PROTOCOL_HEADER = 8
FRAME_HEADER = struct.Struct(">BHI")
METHOD_FRAME = 1
BASIC_PUBLISH = (60, 40)
SHUTDOWN = commands.Connection.Close(
    320, "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'", 0, 0
)


@dataclass
class CuttingProxy:
    """Forwards to ``upstream``; see the module docstring for when and how it cuts."""

    upstream: tuple[str, int]
    cut_at: int
    how: Literal["drop", "close"] = "drop"
    port: int = 0
    cut: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a connection has been cut."""
    down: bool = False
    """While set, connections are dropped as soon as they are made."""
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)

    def go_down(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`come_back`."""
        self.down = True
        for pump in self._pumps:
            pump.cancel()

    def come_back(self) -> None:
        self.down = False

    async def _client_to_broker(
        self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter,
        broker: asyncio.StreamWriter,
    ) -> None:  # fmt: skip
        broker.write(await client.readexactly(PROTOCOL_HEADER))
        published = 0
        while True:
            head = await client.readexactly(FRAME_HEADER.size)
            kind, _, size = FRAME_HEADER.unpack(head)
            rest = await client.readexactly(size + 1)
            if kind == METHOD_FRAME and struct.unpack(">HH", rest[:4]) == BASIC_PUBLISH:
                published += 1
                if published == self.cut_at:
                    if self.how == "close":
                        to_client.write(frame.marshal(SHUTDOWN, 0))
                        await to_client.drain()
                    self.cut.set()
                    return
            broker.write(head + rest)

    async def _broker_to_client(
        self, broker: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        while data := await broker.read(65536):
            client.write(data)
            await client.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        pumps = {
            asyncio.create_task(self._client_to_broker(reader, writer, up_writer)),
            asyncio.create_task(self._broker_to_client(up_reader, writer)),
        }
        self._pumps |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._pumps -= pumps
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for stream in (up_writer, writer):
                stream.close()
                with contextlib.suppress(OSError):
                    await stream.wait_closed()


@contextlib.asynccontextmanager
async def cutting_proxy(
    upstream: tuple[str, int], cut_at: int, how: Literal["drop", "close"] = "drop"
) -> AsyncIterator[CuttingProxy]:
    """A running proxy on 127.0.0.1 (its ``port`` set), closed on exit."""
    proxy = CuttingProxy(upstream, cut_at, how)
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()
