"""Benchmark batch submission: ``Session.submit_many`` through a real requester; prints Markdown.

1. Rate. N small ``python`` jobs (no code) submitted with ``submit_many`` (64 to a
   message) to ``shoal serve requester`` (SQLite store), timed from the first publish to
   the last reply: each job parsed, translated, stored, published to ``shoal.compute`` with
   a confirm, answered;
   with the CPU time per job of the client and of the requester process (the ceiling of one
   requester's rate, whatever else shares the machine).
   Baselines in the same run, on the same broker:
   - raw aio-pika: the same N submission bodies published to a quorum queue, persistent,
     ``mandatory``, each confirmed, 1,024 in flight (``submit_many``'s window): the floor of
     any client that publishes with confirms, with nobody doing the requester's work;
   - Celery: ``apply_async`` of a no-op task N times in a loop, and one ``group`` of N, on a
     quorum queue with ``confirm_publish`` (``bench.celery_worker``, set-up ``quorum``); no
     worker runs, so this is the publishing alone.
2. Bytes per job, for J jobs sharing one ``--code`` folder of 1 MiB (a random file, which
   does not compress, and a script): published to the broker (submissions and blob uploads,
   counted at the channel) and stored (job specs and blobs, read from the store), with every
   job carrying the archive inline (``share=False``, as before) and with the shared archive
   sent as a blob; and the time until every job is queued.

Usage: python -m bench.bench_submit [--jobs 10000] [--shared-jobs 100]
Needs RabbitMQ with ``rabbitmqctl`` (a private vhost, deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aio_pika

from bench.bench_requester import process, python_job, requester_env
from bench.vhost import private_vhost
from shoal.broker import connect
from shoal.client.prepare import ExecOptions, prepare_job
from shoal.client.session import SUBMIT_WINDOW, Session, open_session
from shoal.client.settings import ClientSettings, Secret
from shoal.errors import ShoalError, UnavailableError
from shoal.requester.framebatch import FrameBatch
from shoal.topology import work_queue_arguments
from shoal.wire import Submission, encode

RAW_QUEUE = "bench.submit.raw"
MiB = 1024 * 1024


@contextlib.asynccontextmanager
async def requester(url: str, database: Path) -> AsyncIterator[int]:
    """``shoal serve requester`` on ``database``, once it answers API calls; its PID."""
    env = {
        **requester_env(url, database.parent),
        "SHOAL_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
    }
    argv = (sys.executable, "-m", "shoal.client.main", "serve", "requester")
    async with process(*argv, env=env) as proc:
        settings = ClientSettings(broker_url=Secret(url))
        async with asyncio.timeout(60):
            while True:
                try:
                    async with open_session(settings) as session:
                        await session.api("summary")
                    break
                except UnavailableError:
                    await asyncio.sleep(0.2)
        yield proc.pid


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, every thread) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid(port: int = 5672) -> int | None:
    """The process listening on the broker's ``port`` (``ss``), or ``None`` when not told."""
    listing = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    found = re.search(r"pid=(\d+)", listing.stdout)
    return int(found[1]) if found else None


def broker_cpu(pid: int | None) -> float:
    """The broker's CPU seconds so far (``nan`` when its process is not known)."""
    return cpu_seconds(pid) if pid is not None else math.nan


async def shoal_rate(
    url: str, jobs: int, requester_pid: int, broker: int | None
) -> tuple[float, float, float, float]:
    """Jobs per second of ``submit_many`` (all answered, none refused), and the CPU time
    per job, in µs, of this client, of the requester and of the broker."""
    submissions = [Submission(job=python_job()) for _ in range(jobs)]
    async with open_session(ClientSettings(broker_url=Secret(url))) as session:
        client_cpu, requester_cpu = time.process_time(), cpu_seconds(requester_pid)
        broker_before = broker_cpu(broker)
        started = time.perf_counter()
        results = await session.submit_many(submissions)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        requester_cpu = cpu_seconds(requester_pid) - requester_cpu
        broker_used = broker_cpu(broker) - broker_before
    refused = [r for r in results if isinstance(r, ShoalError)]
    assert not refused, refused[0]
    per_job = 1e6 / jobs
    return jobs / elapsed, client_cpu * per_job, requester_cpu * per_job, broker_used * per_job


async def raw_rate(url: str, jobs: int, broker: int | None) -> tuple[float, float]:
    """Publishes per second with aio-pika: persistent, mandatory, confirmed,
    ``SUBMIT_WINDOW`` in flight; and the broker's CPU time per publish, in µs."""
    conn = await connect(url, name="bench-raw")
    channel = await conn.channel(publisher_confirms=True)
    queue = await channel.declare_queue(RAW_QUEUE, durable=True, arguments=work_queue_arguments())
    await queue.purge()
    body = encode(Submission(job=python_job()))
    slots = asyncio.Semaphore(SUBMIT_WINDOW)

    async def one() -> None:
        async with slots:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, RAW_QUEUE, mandatory=True)

    broker_before = broker_cpu(broker)
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(jobs)))
    elapsed = time.perf_counter() - started
    broker_used = broker_cpu(broker) - broker_before
    await queue.delete(if_unused=False, if_empty=False)
    await conn.close()
    return jobs / elapsed, broker_used / jobs * 1e6


def celery_rates(url: str, jobs: int) -> tuple[float, float]:
    """Tasks per second of Celery's ``apply_async`` loop and of one ``group``."""
    os.environ.update({"BENCH_BROKER_URL": url, "BENCH_CELERY_SETUP": "quorum"})
    import importlib

    from celery import group

    import bench.celery_worker

    module = importlib.reload(bench.celery_worker)
    module.app.conf.broker_url = url
    noop: Any = module.noop
    with module.app.connection_for_write() as conn:  # declare the queue, warm the connection
        noop.apply_async(args=[-1], connection=conn)
    started = time.perf_counter()
    for index in range(jobs):
        noop.apply_async(args=[index])
    loop = jobs / (time.perf_counter() - started)
    started = time.perf_counter()
    group(noop.s(index) for index in range(jobs)).apply_async()
    grouped = jobs / (time.perf_counter() - started)
    return loop, grouped


def shared_code(folder: Path) -> Path:
    """A 1 MiB ``--code`` folder: a script and a random (incompressible) file."""
    folder.mkdir()
    (folder / "app.py").write_text("import sys\nprint(sys.argv[1:])\n")
    (folder / "model.bin").write_bytes(os.urandom(MiB))
    return folder


def code_jobs(code: Path, jobs: int, variant: str) -> list[Submission]:
    """``jobs`` submissions of ``shoal exec python --code CODE -- python app.py N``."""
    return [
        Submission(
            job=prepare_job(
                ExecOptions(
                    "python",
                    arguments=["python", "app.py", str(n)],
                    code=str(code),
                    labels=[f"bench={variant}"],
                )
            )
        )
        for n in range(jobs)
    ]


class Counted:
    """Counts the bytes a session's channel publishes: calls (``basic_publish``) and the
    pipelined submissions (``FrameBatch``, one write per round)."""

    def __init__(self, session: Session) -> None:
        channel: Any = session._channel
        self.bytes = 0
        self.blob_bytes = 0
        publish = channel.basic_publish

        async def counted(body: bytes, **kwargs: Any) -> Any:
            self.bytes += len(body)
            if b'"op":"blob' in body[:200]:
                self.blob_bytes += len(body)
            return await publish(body, **kwargs)

        channel.basic_publish = counted

    @contextlib.contextmanager
    def batches(self) -> Iterator[None]:
        """Count what ``FrameBatch`` publishes meanwhile."""
        publish = FrameBatch.publish

        def counted(batch: FrameBatch, routing_key: str, body: bytes, *args: Any, **kw: Any) -> Any:
            self.bytes += len(body)
            return publish(batch, routing_key, body, *args, **kw)

        FrameBatch.publish = counted  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            FrameBatch.publish = publish  # type: ignore[method-assign]


def stored_bytes(database: Path, variant: str) -> tuple[int, int]:
    """Bytes of the ``variant`` jobs' specs (original and translated) and of all blobs."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        specs = db.execute(
            "SELECT coalesce(sum(length(CAST(spec AS BLOB))), 0) FROM jobs WHERE id IN "
            "(SELECT job_id FROM job_labels WHERE key = 'bench' AND value = ?)",
            (variant,),
        ).fetchone()[0]
        blobs = db.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()[0]
    return int(specs), int(blobs)


async def code_bytes(url: str, database: Path, jobs: int, tmp: Path) -> dict[str, dict[str, float]]:
    """Per variant: bytes published (``blob``: of them, in blob uploads) and stored for the
    batch, seconds until all are queued."""
    code = shared_code(tmp / "code")
    found: dict[str, dict[str, float]] = {}
    for variant, share in (("inline", False), ("blob", True)):
        submissions = code_jobs(code, jobs, variant)
        found[variant] = await measured_submit(url, database, submissions, variant, share, 120)
    return found


async def measured_submit(
    url: str,
    database: Path,
    submissions: list[Submission],
    variant: str,
    share: bool,
    rpc_timeout: float,
) -> dict[str, float]:
    """``submit_many`` of ``submissions`` (none refused): bytes published (``blob``: of them,
    in blob uploads) and stored for ``variant``'s jobs, seconds until all were queued."""
    settings = ClientSettings(broker_url=Secret(url), rpc_timeout=rpc_timeout)
    async with open_session(settings) as session:
        counter = Counted(session)
        with counter.batches():
            started = time.perf_counter()
            results = await session.submit_many(submissions, share=share)
            elapsed = time.perf_counter() - started
    refused = [r for r in results if isinstance(r, ShoalError)]
    assert not refused, refused[0]
    specs, blobs = stored_bytes(database, variant)
    return {
        "published": counter.bytes,
        "blob": counter.blob_bytes,
        "stored": specs + blobs,
        "seconds": elapsed,
    }


def report(
    jobs: int, shared: int, rates: dict[str, float], sizes: dict[str, dict[str, float]]
) -> None:
    shoal = rates["shoal"]
    print("## Batch submission: `submit_many` and shared code\n")
    print(f"`python -m bench.bench_submit --jobs {jobs} --shared-jobs {shared}`\n")
    print(f"{jobs} small `python` jobs, submitted once by each system in the same run.\n")
    print("| system | jobs/s | shoal ÷ row |")
    print("|---|---:|---:|")
    for name, label in (
        ("shoal", "Shoal `submit_many` → requester (translate + SQLite + compute publish + reply)"),
        (
            "raw",
            "raw aio-pika publish with confirms (persistent, mandatory, "
            f"{SUBMIT_WINDOW:,} in flight)",
        ),
        ("celery_loop", "Celery `apply_async` loop (quorum queue, confirm_publish)"),
        ("celery_group", "Celery `group(...).apply_async()` (quorum queue, confirm_publish)"),
    ):
        print(f"| {label} | {rates[name]:.0f} | {shoal / rates[name]:.2f}x |")
    print()
    print(
        f"- Shoal / raw publish: **{shoal / rates['raw']:.2f}x** (target ≥ 0.8x); "
        f"Shoal / Celery loop: **{shoal / rates['celery_loop']:.2f}x**, "
        f"/ Celery group: **{shoal / rates['celery_group']:.2f}x** (target ≥ 3x)"
    )
    print(
        f"- CPU per submitted job: client **{rates['client_cpu']:.0f} µs**, requester "
        f"**{rates['requester_cpu']:.0f} µs** (all its threads): one requester process "
        f"takes at most {1e6 / rates['requester_cpu']:.0f} jobs/s on a core of its own"
    )
    if not math.isnan(rates["broker_cpu"]):
        print(
            f"- Broker CPU per job: Shoal **{rates['broker_cpu']:.0f} µs** (its compute message "
            "out and acked, and its share of the batch it came in: submission, reply, ack; "
            "one quorum-queue write and a 64th of another), raw publish "
            f"**{rates['raw_broker_cpu']:.0f} µs** (one quorum-queue write): "
            f"{rates['broker_cpu'] / rates['raw_broker_cpu']:.2f}x"
        )
    print()
    inline, blob = sizes["inline"], sizes["blob"]
    print(f"{shared} jobs sharing one 1 MiB `--code` folder (incompressible):\n")
    print("| | inline (before) | blob (after) | before ÷ after |")
    print("|---|---:|---:|---:|")
    for key, label in (("published", "bytes published"), ("stored", "bytes stored")):
        print(
            f"| {label}, whole batch | {inline[key]:,.0f} | {blob[key]:,.0f} "
            f"| {inline[key] / blob[key]:.0f}x |"
        )
        print(
            f"| {label} per job | {inline[key] / shared:,.0f} | {blob[key] / shared:,.0f} "
            f"| {inline[key] / blob[key]:.0f}x |"
        )
    print(
        f"| seconds until all {shared} are queued | {inline['seconds']:.2f} | "
        f"{blob['seconds']:.2f} | {inline['seconds'] / blob['seconds']:.1f}x |"
    )
    print()
    print(
        "Published: every body the client's channel sent (submissions, and for blob the "
        "`blobs-missing` call and the one `blob-put`). Stored: the specs of the batch's job "
        "rows plus the blobs table. The blob travels and is stored once per batch, so the "
        "ratio grows with the batch: each further job adds only its own message "
        f"(about {(blob['published'] - blob['blob']) / shared:,.0f} bytes here)."
    )


async def main(jobs: int, shared: int) -> None:
    rates: dict[str, float] = {}
    with private_vhost() as url, tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        database = tmp / f"{uuid.uuid4().hex}.sqlite3"
        broker = broker_pid()
        async with requester(url, database) as pid:
            (
                rates["shoal"],
                rates["client_cpu"],
                rates["requester_cpu"],
                rates["broker_cpu"],
            ) = await shoal_rate(url, jobs, pid, broker)
            print(f"shoal {rates['shoal']:.0f}/s", file=sys.stderr, flush=True)
            rates["raw"], rates["raw_broker_cpu"] = await raw_rate(url, jobs, broker)
            print(f"raw {rates['raw']:.0f}/s", file=sys.stderr, flush=True)
            rates["celery_loop"], rates["celery_group"] = await asyncio.to_thread(
                celery_rates, url, jobs
            )
            print(f"celery {rates['celery_loop']:.0f}/s", file=sys.stderr, flush=True)
            sizes = await code_bytes(url, database, shared, tmp)
    report(jobs, shared, rates, sizes)


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--shared-jobs", type=int, default=100)
    args = parser.parse_args(argv)
    asyncio.run(main(args.jobs, args.shared_jobs))


if __name__ == "__main__":
    cli()
