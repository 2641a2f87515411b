"""Noticing the Docker engine go away: one event stream, held open, that the engine ends when it
exits.

An engine that stops or restarts stops its containers first, while it still answers, so the
executor's waits end as if someone had killed the containers; the engine exits right after.
:class:`EngineWatch` follows the engine's ``/events`` for daemon events only (next to nothing
is sent on it) and counts each end of that stream, or failed attempt to open it, as a
*departure*; it opens the stream again every :data:`REOPEN_EVERY` seconds until the engine
answers. A caller notes :attr:`EngineWatch.departures` when a container starts and asks
:meth:`EngineWatch.departed` whether the count moved since (waiting a little for it to).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiodocker
import aiohttp
import structlog

log = structlog.get_logger("executor")

REOPEN_EVERY = 0.5
"""Seconds between attempts to open the event stream again after it ended."""
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)
_DAEMON_ONLY = json.dumps({"type": ["daemon"]})


class EngineWatch:
    """Counts the engine's departures (see the module's docstring) once :meth:`start`ed."""

    def __init__(self, docker: aiodocker.Docker) -> None:
        self._docker = docker
        self.departures = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following the engine (nothing happens when it already does)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        structlog.contextvars.unbind_contextvars("job_id")  # started within a job's run
        while True:
            opened = False
            try:
                response = await self._docker._do_query(
                    "events", method="GET", params={"filters": _DAEMON_ONLY}, timeout=_NO_TIMEOUT
                )
                opened = True
                with contextlib.closing(response):
                    while await response.content.readany():
                        pass
            except (aiodocker.DockerError, aiohttp.ClientError, OSError):
                pass
            self.departures += 1
            self._changed.set()
            self._changed = asyncio.Event()
            if opened:
                log.warning("engine.gone", departures=self.departures)
            await asyncio.sleep(REOPEN_EVERY)

    async def departed(self, since: int, within: float) -> bool:
        """Whether the engine went away after the count was ``since``, waiting up to
        ``within`` seconds for it to."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self.departures == since:
                    await self._changed.wait()
        return self.departures != since

    async def close(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
