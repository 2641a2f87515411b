"""What the cluster can run at all, checked when a job is submitted.

A job asking for what no executor offers is refused at once, with one line naming the limit,
instead of being run differently from what it asked (executors lower a job's limits to their
own maxima, saying so in the run's ``running`` event and ``job describe``) or waiting forever:

- ``resources.gpu``: no executor runs GPU jobs (containers get no devices), so any GPU is
  refused (``UnsupportedError``).
- ``resources.memory`` above ``SHOAL_MAX_JOB_MEMORY``. Executors do not announce their sizes,
  so the operator states the cluster's largest job here; the default is the executors' default
  maximum (``SHOAL_MAX_MEMORY``, 4 GiB). Refusing at submission was chosen over a note in
  ``job describe``: the user learns it before anything ran, and a job that needs the memory
  never runs out of it halfway. An executor smaller than this still lowers a job to its own
  maximum, and ``job describe`` says so (``Limits lowered:``).
- A docker job naming a runtime image (``shoal.images.runtime_images``) that none of the live
  executors serving docker holds (their heartbeats' ``images``, :class:`ImageCheck`). While
  no such executor is alive (or none says which images it holds), the job is accepted and
  waits for one, as a job of an engine no executor serves does (``shoal.requester.waiting``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from shoal.errors import UnsupportedError
from shoal.images import runtime_images
from shoal.model import Job
from shoal.units import format_bytes

DEFAULT_MAX_JOB_MEMORY = 4 * 1024**3


@dataclass(frozen=True)
class Admission:
    """The cluster's limits on what a job may ask for."""

    max_memory: int = DEFAULT_MAX_JOB_MEMORY

    def check(self, job: Job) -> None:
        """``UnsupportedError`` when ``job`` asks for GPUs or more memory than allowed."""
        resources = job.task.resources
        if resources.gpu:
            raise UnsupportedError(
                f"the job asks for {resources.gpu} GPU(s); no executor here runs GPU jobs "
                "(remove resources.gpu)"
            )
        if resources.memory is not None and resources.memory > self.max_memory:
            raise UnsupportedError(
                f"the job asks for {format_bytes(resources.memory)} of memory; executors give a "
                f"job at most {format_bytes(self.max_memory)} (SHOAL_MAX_JOB_MEMORY)"
            )


DEFAULT_ADMISSION = Admission()
"""The default limits (tests and tools that build a pipeline without settings)."""


IMAGES_TTL = 2.0
"""Seconds the live executors' images are reused before the store is asked again."""


@dataclass
class ImageCheck:
    """Refuses docker jobs naming a runtime image no live docker executor holds.

    ``nodes`` gives the live nodes' heartbeats (``JobStore.alive_nodes``); they are asked at
    most every ``ttl`` seconds, so a round of submissions costs no query.
    """

    nodes: Callable[[], Awaitable[list[dict[str, Any]]]]
    ttl: float = IMAGES_TTL
    _asked: float = field(default=-IMAGES_TTL, init=False)
    _held: frozenset[str] | None = field(default=None, init=False)

    async def held(self) -> frozenset[str] | None:
        """The runtime images the live docker executors hold, ``None`` when none says."""
        now = time.monotonic()
        if now - self._asked >= self.ttl:
            self._asked = now
            try:
                nodes = await self.nodes()
            except Exception:  # the store is away: the submission path finds out itself
                return self._held
            reporting = [
                node
                for node in nodes
                if node.get("role") == "executor"
                and "docker" in node.get("engines", [])
                and node.get("images")
            ]
            self._held = (
                frozenset(image for node in reporting for image in node["images"])
                if reporting
                else None
            )
        return self._held

    async def refusal(self, job: Job) -> UnsupportedError | None:
        """Why ``job`` cannot run on the live executors, or ``None``."""
        engine = job.task.engine
        image = engine.params.get("image")
        if engine.type != "docker" or image not in runtime_images():
            return None
        held = await self.held()
        if held is None or image in held:
            return None
        return UnsupportedError(
            f"no executor alive holds the runtime image {image} (they hold: "
            f"{', '.join(sorted(held))}); build it on their nodes with runtime-images/build.sh"
        )
