"""The lives of a cluster's job containers, from Docker's event stream: a job whose container
(an orphan of a killed executor) still ran when another executor's container of the same job
started ran twice at once, whatever the store says.

Only containers of two different executors count (one executor's dependency install and job
containers of a job follow each other). When the event stream breaks (the Docker engine
restarted) the lives seen are incomplete and nothing is judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass
from itertools import combinations

import aiodocker

from shoal.executor.engines.docker.runner import LABEL_EXECUTOR, LABEL_JOB, LABEL_NODE


@dataclass
class Life:
    """One container of a job: who made it, when it started and (once seen) died."""

    job_id: str
    executor: str
    start: int
    end: int | None = None

    def overlaps(self, other: Life) -> bool:
        """Whether the two ran at once (one not seen dying runs still)."""
        ends = [math.inf if life.end is None else life.end for life in (self, other)]
        return self.start < ends[1] and other.start < ends[0]


class ContainerWatch:
    """Records the start and death of the job containers of nodes named ``node_prefix…``."""

    def __init__(self, docker_url: str | None, node_prefix: str) -> None:
        self._docker = aiodocker.Docker(url=docker_url)
        self._prefix = node_prefix
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.broken = False
        self.lives: dict[str, Life] = {}

    def start(self) -> None:
        filters = {"type": ["container"], "event": ["start", "die"], "label": [LABEL_JOB]}
        subscriber = self._docker.events.subscribe(  # type: ignore[no-untyped-call]
            filters=json.dumps(filters)
        )
        self._task = asyncio.create_task(self._read(subscriber))

    async def _read(self, subscriber: aiodocker.channel.ChannelSubscriber) -> None:
        while (event := await subscriber.get()) is not None:  # type: ignore[no-untyped-call]
            labels = (event.get("Actor") or {}).get("Attributes") or {}
            if not str(labels.get(LABEL_NODE, "")).startswith(self._prefix):
                continue
            container, at = str(event.get("id")), int(event.get("timeNano", 0))
            if event.get("Action") == "start":
                owner = str(labels.get(LABEL_EXECUTOR, ""))
                self.lives[container] = Life(str(labels[LABEL_JOB]), owner, at)
            elif container in self.lives:
                self.lives[container].end = at
        self.broken = not self._closing

    async def close(self) -> None:
        """Stop watching (the lives seen so far are kept)."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            await self._docker.events.stop()  # type: ignore[no-untyped-call]
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 5)
        await self._docker.close()

    def overlaps(self) -> list[str]:
        """Each job whose containers of two executors ran at once, as ``overlap: …``."""
        if self.broken:
            return []
        jobs: dict[str, list[Life]] = {}
        for life in self.lives.values():
            jobs.setdefault(life.job_id, []).append(life)
        return [
            f"overlap: {a.job_id} ran on {a.executor} and {b.executor} at once"
            for lives in jobs.values()
            for a, b in combinations(lives, 2)
            if a.executor != b.executor and a.overlaps(b)
        ]
