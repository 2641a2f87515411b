"""Benchmark the executor against plain Docker; prints a Markdown section.

1. Throughput: N trivial jobs (``sh -c 'echo hello'`` on the base image) published to
   ``shoal.compute`` and run by an in-process executor with ``slots = C``, timed from the first
   publish to the last terminal event; against the same N containers run by a raw aiodocker
   loop (create, start, wait, logs, delete) with the same concurrency C. Rounds alternate.
   The same executor again with execution claims (each run claimed from a requester
   running in-process, as in a deployment, while the run is prepared) against itself
   without: the claims' cost. A
   requester runs during both, so its recorder's work weighs on both alike.
2. Latency: one such job end to end (publish → terminal event) against
   ``docker run --rm`` of the same image and command; median of R runs each.

Targets (issue 4): throughput ≥ 85% of raw; single-job overhead ≤ 1.3x. Issue 13: with
claims ≥ 0.95x the throughput without, measured in the same run.

Usage: python -m bench.bench_executor [--jobs 40] [--concurrency C] [--rounds 3] [--runs 5]
Needs RabbitMQ, Docker and the base image (``bash runtime-images/build.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiodocker
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bench.vhost import private_vhost
from shoal.broker import publish
from shoal.executor.service import Executor, serve
from shoal.executor.settings import ExecutorSettings
from shoal.logs import configure
from shoal.model import TERMINAL_STATES, Job, JobState
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings
from shoal.requester.store import JobStore, NewJob
from shoal.topology import COMPUTE_QUEUE, declare
from shoal.wire import ComputeRequest, JobEvent, decode

IMAGE = "shoal/base:bookworm"
COMMAND = ["sh", "-c", "echo hello"]


def trivial_job() -> Job:
    """The benchmark's job: ``echo hello`` on the base image."""
    params = {"image": IMAGE, "entrypoint": COMMAND[:1], "parameters": COMMAND[1:]}
    return Job.model_validate({"tasks": [{"engine": {"type": "docker", "params": params}}]})


class Terminals:
    """Terminal events seen on a private queue bound to ``shoal.events``."""

    def __init__(self) -> None:
        self.done: dict[str, JobEvent] = {}
        self.changed = asyncio.Condition()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        event = decode(message.body, JobEvent)
        if event.kind == "state" and event.state in TERMINAL_STATES:
            async with self.changed:
                self.done[event.job_id] = event
                self.changed.notify_all()

    async def wait_all(self, ids: set[str], within: float) -> None:
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: ids <= self.done.keys())


async def shoal_batch(
    channel: AbstractChannel, terminals: Terminals, jobs: int, batch: list[Job] | None = None
) -> float:
    """Seconds for ``jobs`` jobs (``batch``, or new ones) through queue, executor and events."""
    batch = batch or [trivial_job() for _ in range(jobs)]
    began = time.perf_counter()
    await asyncio.gather(
        *(publish(channel.default_exchange, COMPUTE_QUEUE, ComputeRequest(job=j)) for j in batch)
    )
    await terminals.wait_all({j.id for j in batch}, within=600)
    elapsed = time.perf_counter() - began
    failed = [j.id for j in batch if terminals.done[j.id].state is not JobState.COMPLETED]
    if failed:
        raise RuntimeError(
            f"{len(failed)} bench jobs did not complete: {terminals.done[failed[0]]}"
        )
    return elapsed


async def raw_container(docker: aiodocker.Docker, label: str) -> None:
    """One container the plain way: create, start, wait, read logs, delete."""
    container = await docker.containers.create(
        {
            "Image": IMAGE,
            "Cmd": COMMAND,
            "Labels": {"shoal.bench": label},
            "HostConfig": {"NetworkMode": "none"},
        }
    )
    try:
        await container.start()
        await container.wait()
        await container.log(stdout=True, stderr=True)
    finally:
        await container.delete(force=True, v=True)


async def raw_batch(docker: aiodocker.Docker, jobs: int, concurrency: int) -> float:
    """Seconds for ``jobs`` raw containers, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)
    label = uuid.uuid4().hex

    async def one() -> None:
        async with gate:
            await raw_container(docker, label)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    return time.perf_counter() - began


async def docker_run_once() -> float:
    """Seconds for ``docker run --rm`` of the benchmark's image and command."""
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "docker",
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        *COMMAND,
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await process.wait() != 0:
        raise RuntimeError("docker run failed")
    return time.perf_counter() - began


@contextlib.asynccontextmanager
async def served(settings: ExecutorSettings) -> AsyncIterator[None]:
    """An executor served in-process while the block runs."""
    stopping = asyncio.Event()
    ready: asyncio.Future[Executor] = asyncio.get_running_loop().create_future()
    started: Callable[[Executor], None] = ready.set_result
    server = asyncio.create_task(serve(settings, stopping, ready=started))
    await asyncio.wait_for(ready, 30)
    try:
        yield
    finally:
        stopping.set()
        await server


async def stored_batch(
    channel: AbstractChannel, terminals: Terminals, store: JobStore, jobs: int
) -> float:
    """:func:`shoal_batch` for jobs that the requester's store knows (as submitted ones are),
    so that a claiming executor may run them; storing them is not timed."""
    batch = [trivial_job() for _ in range(jobs)]
    await store.add_jobs([NewJob(job, job) for job in batch])
    await store.mark_queued([job.id for job in batch])
    return await shoal_batch(channel, terminals, jobs, batch)


async def started_requester(broker: str, folder: Path) -> Requester:
    """A quiet requester in this process on a SQLite store in ``folder``, started."""
    requester = Requester(
        RequesterSettings(
            broker_url=broker,
            database_url=f"sqlite+aiosqlite:///{folder / 'jobs.sqlite3'}",
            log_level="warning",
            log_format="json",
        )
    )
    await requester.start()
    return requester


async def measure(args: argparse.Namespace, broker: str, folder: Path) -> dict[str, Any]:
    """Every timing, with executors served in-process on the vhost ``broker`` names and a
    requester (store in ``folder``) answering the claims of the executor that makes them."""
    settings = ExecutorSettings(
        broker_url=broker,
        node_id=f"bench-{uuid.uuid4().hex[:8]}",
        slots=args.concurrency,
        claims=False,
        pull_policy="never",
        allowed_images=[IMAGE],
        log_level="warning",
        log_format="json",
    )
    claiming = settings.model_copy(update={"claims": True})
    requester = await started_requester(broker, folder)
    assert requester.store is not None
    store = requester.store
    connection = await aio_pika.connect_robust(broker)
    channel = await connection.channel(publisher_confirms=True)
    topology = await declare(channel)
    await topology.queues[COMPUTE_QUEUE].purge()
    terminals = Terminals()
    events = await channel.declare_queue(exclusive=True, auto_delete=True)
    await events.bind(topology.events, routing_key="job.#")
    await events.consume(terminals.on_message, no_ack=True)

    docker = aiodocker.Docker()
    results: dict[str, Any] = {k: [] for k in ("shoal", "claims", "raw", "single", "docker_run")}
    try:
        await raw_batch(docker, args.concurrency, args.concurrency)  # warm-up
        for _ in range(args.rounds):
            results["raw"].append(await raw_batch(docker, args.jobs, args.concurrency))
            for mode, executor in (("shoal", settings), ("claims", claiming)):
                async with served(executor):
                    await stored_batch(channel, terminals, store, args.concurrency)  # warm-up
                    results[mode].append(await stored_batch(channel, terminals, store, args.jobs))
        async with served(settings):
            for _ in range(args.runs):
                results["docker_run"].append(await docker_run_once())
                results["single"].append(await shoal_batch(channel, terminals, 1))
    finally:
        await docker.close()
        await connection.close()
        await requester.stop()
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> str:
    """The Markdown section."""
    raw = statistics.median(results["raw"])
    shoal = statistics.median(results["shoal"])
    single = statistics.median(results["single"])
    docker_run = statistics.median(results["docker_run"])
    ratio = raw / shoal
    overhead = single / docker_run
    claims = statistics.median(results["claims"])
    kept = shoal / claims
    lines = [
        "## Executor",
        "",
        f"{args.jobs} trivial jobs (`{' '.join(COMMAND)}` on `{IMAGE}`), concurrency "
        f"{args.concurrency}, median of {args.rounds} alternating rounds; single job: median "
        f"of {args.runs}.",
        "",
        "| measurement | Shoal | baseline | ratio | target |",
        "|---|---|---|---|---|",
        f"| throughput, jobs/s (queue → executor → terminal event vs raw aiodocker loop) "
        f"| {args.jobs / shoal:.2f} | {args.jobs / raw:.2f} | {ratio:.0%} of raw | ≥ 85% "
        f"{'✅' if ratio >= 0.85 else '❌'} |",
        f"| one job end to end, s (publish → terminal event vs `docker run --rm`) "
        f"| {single:.3f} | {docker_run:.3f} | {overhead:.2f}x | ≤ 1.3x "
        f"{'✅' if overhead <= 1.3 else '❌'} |",
        f"| throughput with execution claims, jobs/s (each run claimed from the requester "
        f"while it is prepared vs the same executor without claims) | {args.jobs / claims:.2f} "
        f"| {args.jobs / shoal:.2f} | {kept:.2f}x | ≥ 0.95x {'✅' if kept >= 0.95 else '❌'} |",
        "",
        "Shoal's jobs run hardened (read-only root, tmpfs /tmp, volumes for /code and "
        "/outputs, no capabilities, limits), stream their logs and publish every event with "
        "a broker confirm; the raw loop creates bare containers.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    configure("json", "warning")
    with private_vhost() as broker, tempfile.TemporaryDirectory() as folder:
        print(report(args, asyncio.run(measure(args, broker, Path(folder)))))


if __name__ == "__main__":
    main()
