"""``EngineWatch``: the engine's event stream ending counts as the engine going away."""

from __future__ import annotations

import asyncio

import aiodocker
import pytest
from aiohttp import web

from shoal.executor.engines.docker.departures import EngineWatch

from .support import http_server

pytestmark = pytest.mark.timeout(30)


async def test_an_ended_event_stream_is_a_departure() -> None:
    opened: asyncio.Queue[None] = asyncio.Queue()
    leave = asyncio.Event()

    async def engine(request: web.Request) -> web.StreamResponse:
        if request.path == "/version":
            return web.json_response({"ApiVersion": "1.41"})
        assert request.path == "/v1.41/events"
        assert request.query["filters"] == '{"type": ["daemon"]}'
        response = web.StreamResponse()
        await response.prepare(request)
        opened.put_nowait(None)
        await leave.wait()
        leave.clear()
        return response

    async with http_server(engine, "127.0.0.1") as port:
        docker = aiodocker.Docker(url=f"tcp://127.0.0.1:{port}")
        watch = EngineWatch(docker)
        try:
            watch.start()
            watch.start()
            await asyncio.wait_for(opened.get(), 10)
            assert not await watch.departed(0, 0.1), "still here"
            leave.set()
            assert await watch.departed(0, 10)
            assert watch.departures == 1
            await asyncio.wait_for(opened.get(), 10)  # followed again
            assert opened.empty(), "one stream at a time"
            assert await watch.departed(0, 0), "a departure seen before is not waited for"
        finally:
            await watch.close()
            await docker.close()
            leave.set()  # the open stream's handler ends
