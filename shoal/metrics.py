"""Prometheus metrics and health endpoints of the ``shoal serve`` processes.

Each service process serves, on ``SHOAL_METRICS_PORT`` (off when 0, the default; ``auto``:
a free port the system picks; bound to ``SHOAL_METRICS_HOST``, loopback by default; the port
is written to ``SHOAL_METRICS_PORT_FILE`` when set, so that a health check inside a container
of ``docker compose --scale`` on the host's network finds its own replica's):

- ``/metrics``: the metrics below in Prometheus' text format (``prometheus-client``);
- ``/livez``: 200 while the process answers (no broker call);
- ``/readyz``: 200 when the service is connected and consuming (an executor: and its Docker
  engine answers, and it is not draining), 503 otherwise, with the reason as the body; a
  check that takes over ``READY_TIMEOUT`` seconds answers 503 too.

Metrics (all ``shoal_``): ``submissions_received_total`` (requester: taken from
``shoal.submit``), ``submissions_total{outcome,reason}`` (requester: accepted, or refused by
error type), ``submission_round_size`` (requester), ``queue_messages_ready{queue}``
(requester: ready messages per work queue, read every ``queue_depth_every`` seconds),
``queue_messages_unacked{queue}`` (requester, at the same time: deliveries of each compute
queue the live executors hold, from their heartbeats; the other queues' count is RabbitMQ's
own, from its Prometheus plugin or management API),
``jobs_started_total{job_type}``, ``jobs_finished_total{state,job_type}``,
``job_duration_seconds{job_type}``, ``job_queue_wait_seconds{job_type}``, ``executor_slots{state}``
(busy or free), ``depcache_lookups_total{result}`` (hit, built, busy) (executors), and
``broker_reconnects_total`` (both).

A ``job_type`` label is the job type a requester translated the job from (``python``,
``duckdb``, ``wasm``, a plug-in's), or the job's engine (``docker``, ``wasm``) for a job
submitted as is: never a value a submitter writes, so the label takes few values.

The metric objects live in the process's default registry, defined once at import; a
process runs one service, so they describe it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Literal

import structlog
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

log = structlog.get_logger(__name__)

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

RECEIVED = Counter(
    "shoal_submissions_received_total",
    "Submissions taken from shoal.submit (a redelivered one counts again)",
)
SUBMISSIONS = Counter(
    "shoal_submissions_total", "Submissions answered, by outcome and refusal", ["outcome", "reason"]
)
ROUND_SIZE = Histogram(
    "shoal_submission_round_size",
    "Submissions handled together in one requester round",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
QUEUE_READY = Gauge("shoal_queue_messages_ready", "Messages ready in a work queue", ["queue"])
QUEUE_UNACKED = Gauge(
    "shoal_queue_messages_unacked",
    "Deliveries of a compute queue the live executors hold unacknowledged",
    ["queue"],
)
JOBS_STARTED = Counter("shoal_jobs_started_total", "Jobs an executor started", ["job_type"])
JOBS_FINISHED = Counter(
    "shoal_jobs_finished_total", "Job runs that ended here, by state", ["state", "job_type"]
)
JOB_DURATION = Histogram(
    "shoal_job_duration_seconds", "Run time of jobs", ["job_type"], buckets=DURATION_BUCKETS
)
QUEUE_WAIT = Histogram(
    "shoal_job_queue_wait_seconds",
    "Time from submission to start",
    ["job_type"],
    buckets=DURATION_BUCKETS,
)
SLOTS = Gauge("shoal_executor_slots", "Executor job slots, busy or free", ["state"])
DEPCACHE = Counter(
    "shoal_depcache_lookups_total", "Prebuilt python environments looked up", ["result"]
)
RECONNECTS = Counter("shoal_broker_reconnects_total", "Broker connections re-established")

READY_TIMEOUT = 3.0
"""Seconds a ``/readyz`` check may take (the Docker engine's answer included)."""

Ready = Callable[[], Awaitable[str | None]]
"""``None`` when the service is ready, else why not."""


def count_reconnects(connection: object) -> None:
    """Count each reconnection of a robust connection in ``shoal_broker_reconnects_total``."""
    callbacks = getattr(connection, "reconnect_callbacks", None)
    if callbacks is not None:
        callbacks.add(lambda *_: RECONNECTS.inc())


def job_type_label(
    translated_from: str | None, engine_type: str, job_types: Collection[str]
) -> str:
    """The ``job_type`` label of a job: ``translated_from`` (the requester's
    ``shoal.job_type`` meta) when it names one of ``job_types`` (lower case), else
    ``engine_type``. A submitter can write that meta on a job it submits as is, so a value not
    in ``job_types`` counts as the engine."""
    name = (translated_from or "").lower()
    return name if name in job_types else engine_type


class HealthServer:
    """``/metrics``, ``/livez`` and ``/readyz`` on one port; :meth:`start`, :meth:`close`.

    ``port`` is 0 for none, ``"auto"`` for one the system picks; once started, :attr:`bound`
    is the port listened on, also written to ``port_file`` when given."""

    def __init__(
        self,
        host: str,
        port: int | Literal["auto"],
        ready: Ready,
        *,
        port_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.port_file = port_file
        self.bound: int | None = None
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen (a port of 0 is left closed: metrics are off)."""
        if not self.port:
            return
        if self.port_file is not None:  # a crashed run's port must not pass for this one's
            self.port_file.unlink(missing_ok=True)
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0 if self.port == "auto" else self.port)
        await site.start()
        self.bound = int(self._runner.addresses[0][1])
        if self.port_file is not None:
            _write_atomically(self.port_file, f"{self.bound}\n")
        log.info("metrics.listening", host=self.host, port=self.bound)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            if self.port_file is not None:
                self.port_file.unlink(missing_ok=True)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _livez(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                problem = await self._ready()
        except TimeoutError:
            problem = f"the check took over {READY_TIMEOUT} s"
        except Exception as error:  # a readiness probe answers, whatever broke
            problem = f"{type(error).__name__}: {error}"
        if problem is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {problem}\n")


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` so that a reader sees the old content or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)
