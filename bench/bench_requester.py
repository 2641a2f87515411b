"""Benchmark the requester against a raw aio-pika relay and a Celery worker; prints Markdown.

1. Throughput. N submissions (``python`` jobs, translated and stored) are queued on
   ``shoal.submit`` with a reply_to; then ``shoal serve requester`` starts (SQLite store) and
   the rate is timed from its first compute message to its N-th, replies included. Baselines
   on the same broker, each its own process, the input queued beforehand the same way:
   - raw relay: consume a quorum queue → publish to another with confirm (mandatory,
     persistent) → ack — the floor any consumer that republishes pays;
   - Celery: a worker running a no-op task, timed by the worker itself from the first task
     to the N-th, in three set-ups (``bench.celery_worker``): a solo pool on a classic queue
     acking on receipt (Celery at its fastest), the same on a quorum queue acking after the
     task (Shoal's guarantees), and the stock worker (prefork pool, one process per CPU,
     Celery's default prefetch); and, beside the no-op, a task doing the requester's work
     with the requester's code (parse, translate, SQLite store, confirmed compute publish,
     queued mark, reply), one submission per task, with Shoal's guarantees.
   The requester's and the relay's output is counted by a consumer in the bench process,
   which shares the machine with them; Celery's workers count their own tasks. The relay and
   the solo workers consume with prefetch 128 (:data:`PREFETCH`; 256 measured no faster
   for the relay here), the requester with its default ``submit_prefetch`` (256). The
   requester and the relay get the same message body (a ``python`` job's submission),
   Celery its own task message. Rounds alternate; the median rate of each is reported.
2. Latency: ``shoal exec python --id-only -- python -c pass`` against a running requester,
   median of R runs, next to ``python -c pass`` (interpreter start-up).

Targets (issue 3): requester ≥ 70% of the relay and faster than Celery; exec < 250 ms median.

Usage: python -m bench.bench_requester [--jobs 2000] [--rounds 3] [--runs 10]
Needs RabbitMQ with ``rabbitmqctl`` (each run uses a private vhost, deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from bench.vhost import private_vhost
from shoal.broker import broker_user, connect
from shoal.model import Job
from shoal.topology import COMPUTE_QUEUE, SUBMIT_QUEUE, declare, work_queue_arguments
from shoal.wire import Submission, encode

ROOT = Path(__file__).resolve().parents[1]
RELAY_IN, RELAY_OUT = "bench.relay.in", "bench.relay.out"
CELERY_COMPUTE, CELERY_REPLIES = "bench.celery.compute", "bench.celery.replies"
PREFETCH = 128
"""The relay's and Celery's prefetch (the requester runs with its own default)."""


def python_job() -> Job:
    """What ``shoal exec python -- python app.py`` submits (without code)."""
    return Job.model_validate(
        {
            "name": "python",
            "labels": {"job-type": "python"},
            "tasks": [
                {
                    "engine": {
                        "type": "python",
                        "params": {
                            "version": "3.11",
                            "command": "python",
                            "arguments": ["python", "app.py"],
                        },
                    }
                }
            ],
        }
    )


class Arrivals:
    """Counts messages arriving on a queue; the times of the first and of the N-th."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = 0.0
        self.done = asyncio.Event()
        self.last = 0.0

    def on_message(self, _message: AbstractIncomingMessage) -> None:
        self.count += 1
        now = time.perf_counter()
        if self.count == 1:
            self.first = now
        if self.count == self.expected:
            self.last = now
            self.done.set()

    @property
    def rate(self) -> float:
        return (self.expected - 1) / (self.last - self.first)


async def _watch(channel: AbstractChannel, queue: str, arrivals: Arrivals) -> None:
    declared = await channel.get_queue(queue)

    async def on_message(message: AbstractIncomingMessage) -> None:
        arrivals.on_message(message)

    await declared.consume(on_message, no_ack=True)


async def _preload(
    channel: AbstractChannel, queue: str, bodies: list[bytes], **props: object
) -> None:
    exchange = channel.default_exchange
    for start in range(0, len(bodies), 200):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        body,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        **props,  # type: ignore[arg-type]
                    ),
                    routing_key=queue,
                    mandatory=True,
                )
                for body in bodies[start : start + 200]
            )
        )


@contextlib.asynccontextmanager
async def process(*argv: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL if not os.environ.get("BENCH_VERBOSE") else None,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def requester_env(url: str, data: Path) -> dict[str, str]:
    return {
        "SHOAL_BROKER_URL": url,
        "SHOAL_DATABASE_URL": f"sqlite+aiosqlite:///{data / f'{uuid.uuid4().hex}.sqlite3'}",
        "SHOAL_LOG_LEVEL": "warning",
        "SHOAL_LOG_FORMAT": "json",
    }


async def bench_requester(
    conn: AbstractRobustConnection,
    url: str,
    jobs: int,
    data: Path,
    extra_env: dict[str, str] | None = None,
) -> float:
    channel = await conn.channel()
    topology = await declare(channel)
    for name in (SUBMIT_QUEUE, COMPUTE_QUEUE):
        await topology.queues[name].purge()
    replies = Arrivals(jobs)
    raw = await channel.get_underlay_channel()

    async def on_reply(_message: object) -> None:
        replies.on_message(None)  # type: ignore[arg-type]

    await raw.basic_consume("amq.rabbitmq.reply-to", on_reply, no_ack=True)
    bodies = [encode(Submission(job=python_job())) for _ in range(jobs)]
    await _preload(
        channel,
        SUBMIT_QUEUE,
        bodies,
        reply_to="amq.rabbitmq.reply-to",
        user_id=broker_user(url),
    )
    computed = Arrivals(jobs)
    await _watch(channel, COMPUTE_QUEUE, computed)
    argv = (sys.executable, "-m", "shoal.client.main", "serve", "requester")
    async with process(*argv, env={**requester_env(url, data), **(extra_env or {})}):
        await asyncio.wait_for(asyncio.gather(computed.done.wait(), replies.done.wait()), 300)
    await channel.close()
    return (jobs - 1) / (max(computed.last, replies.last) - computed.first)


async def relay(url: str, prefetch: int) -> None:
    """The raw relay process: consume → publish with confirm → ack."""
    conn = await connect(url, name="bench-relay")
    channel = await conn.channel()
    await channel.set_qos(prefetch_count=prefetch)
    source = await channel.declare_queue(RELAY_IN, durable=True, arguments=work_queue_arguments())
    exchange = channel.default_exchange

    async def on_message(message: AbstractIncomingMessage) -> None:
        await exchange.publish(
            aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=RELAY_OUT,
            mandatory=True,
        )
        await message.ack()

    await source.consume(on_message)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await conn.close()


async def bench_relay(conn: AbstractRobustConnection, url: str, jobs: int) -> float:
    channel = await conn.channel()
    for name in (RELAY_IN, RELAY_OUT):
        queue = await channel.declare_queue(name, durable=True, arguments=work_queue_arguments())
        await queue.purge()
    bodies = [encode(Submission(job=python_job())) for _ in range(jobs)]
    await _preload(channel, RELAY_IN, bodies)
    arrivals = Arrivals(jobs)
    await _watch(channel, RELAY_OUT, arrivals)
    argv = (sys.executable, "-m", "bench.bench_requester", "relay", url, str(PREFETCH))
    async with process(*argv, env={}):
        await asyncio.wait_for(arrivals.done.wait(), 300)
    await channel.close()
    return arrivals.rate


async def bench_celery(url: str, jobs: int, setup: str, data: Path | None = None) -> float:
    """Celery's rate in one of ``bench.celery_worker``'s set-ups (solo, quorum, stock, work;
    ``work`` keeps its store under ``data``)."""
    env = {
        "BENCH_BROKER_URL": url,
        "BENCH_TASKS": str(jobs),
        "BENCH_PREFETCH": str(PREFETCH),
        "BENCH_CELERY_SETUP": setup,
    }
    if data is not None:
        env["BENCH_DATABASE_URL"] = requester_env(url, data)["SHOAL_DATABASE_URL"]
    os.environ.update(env)
    import importlib

    import bench.celery_worker

    app = importlib.reload(bench.celery_worker).app
    app.conf.broker_url = url
    bodies = [encode(Submission(job=python_job())).decode() for _ in range(jobs)]

    def preload() -> None:
        with app.producer_or_acquire() as producer:
            if setup == "work":
                channel = producer.channel
                quorum = work_queue_arguments()
                channel.queue_declare(
                    CELERY_COMPUTE, durable=True, auto_delete=False, arguments=quorum
                )
                channel.queue_declare(CELERY_REPLIES, durable=True, auto_delete=False)
                for queue in (CELERY_COMPUTE, CELERY_REPLIES):
                    channel.queue_purge(queue)
            for index in range(jobs):
                if setup == "work":
                    args: list[object] = [bodies[index], CELERY_COMPUTE, CELERY_REPLIES]
                    app.send_task("bench.submit", args=args, producer=producer)
                else:
                    app.send_task("bench.noop", args=[index], producer=producer)

    await asyncio.to_thread(preload)
    celery = str(Path(sys.executable).with_name("celery"))
    argv = (
        celery,
        "-A",
        "bench.celery_worker",
        "worker",
        *(() if setup == "stock" else ("--pool=solo",)),
        "--loglevel=WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-Q",
        f"bench.celery.{setup}",
    )
    async with process(*argv, env=env) as proc:
        assert proc.stdout is not None
        first = last = 0.0
        async with asyncio.timeout(300):
            while not last:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("the celery worker ended early")
                if line.startswith("CELERY-FIRST"):
                    first = float(line.split()[1])
                elif line.startswith("CELERY-DONE"):
                    last = float(line.split()[1])
    return (jobs - 1) / (last - first)


async def exec_latency(url: str, runs: int, data: Path) -> tuple[float, float]:
    argv = (sys.executable, "-m", "shoal.client.main", "serve", "requester")
    env = {**os.environ, "SHOAL_BROKER_URL": url}
    shoal = [
        sys.executable,
        "-m",
        "shoal.client.main",
        "exec",
        "python",
        "--id-only",
        "--",
        "python",
        "-c",
        "pass",
    ]
    async with process(*argv, env=requester_env(url, data)):
        await asyncio.to_thread(
            subprocess.run, shoal, env=env, check=True, capture_output=True, cwd=ROOT
        )
        shoal_times = [await asyncio.to_thread(_timed, shoal, env) for _ in range(runs)]
    python_times = [
        await asyncio.to_thread(_timed, [sys.executable, "-c", "pass"], env) for _ in range(runs)
    ]
    return statistics.median(shoal_times), statistics.median(python_times)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


async def main(jobs: int, rounds: int, runs: int) -> None:
    rates: dict[str, list[float]] = {
        "requester": [],
        "relay": [],
        "celery": [],
        "celery_q": [],
        "celery_stock": [],
        "celery_work": [],
    }
    with private_vhost() as url, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        conn = await connect(url, name="bench")
        steps: dict[str, Callable[[], Awaitable[float]]] = {
            "requester": lambda: bench_requester(conn, url, jobs, data),
            "relay": lambda: bench_relay(conn, url, jobs),
            "celery": lambda: bench_celery(url, jobs, "solo"),
            "celery_q": lambda: bench_celery(url, jobs, "quorum"),
            "celery_stock": lambda: bench_celery(url, jobs, "stock"),
            "celery_work": lambda: bench_celery(url, jobs, "work", data),
        }
        for round_ in range(rounds):
            for name, step in steps.items():
                rate = await step()
                rates[name].append(rate)
                print(f"round {round_ + 1}: {name} {rate:.0f}/s", file=sys.stderr, flush=True)
        exec_median, python_median = await exec_latency(url, runs, data)
        await conn.close()
    report(
        jobs,
        rounds,
        runs,
        {k: statistics.median(v) for k, v in rates.items()},
        rates,
        exec_median,
        python_median,
    )


def report(
    jobs: int,
    rounds: int,
    runs: int,
    median: dict[str, float],
    rates: dict[str, list[float]],
    exec_median: float,
    python_median: float,
) -> None:
    ratio_relay = median["requester"] / median["relay"]
    ratio_celery = median["requester"] / median["celery"]
    print("## Requester throughput and `shoal exec` latency\n")
    print(f"`python -m bench.bench_requester --jobs {jobs} --rounds {rounds} --runs {runs}`\n")
    print(
        f"{jobs} messages per round, {rounds} rounds, median rate; each system its own process.\n"
    )
    print("| system | msgs/s (median) | rounds | requester ÷ row |")
    print("|---|---:|---|---:|")
    for name, label in (
        ("requester", "shoal requester (translate + SQLite + compute publish + reply)"),
        ("relay", "raw aio-pika relay (consume → confirmed publish → ack)"),
        ("celery", "Celery no-op task, solo pool (classic queue, ack on receipt)"),
        ("celery_q", "Celery no-op task, solo pool, quorum queue + acks_late"),
        ("celery_stock", "Celery no-op task, stock worker (prefork pool, default prefetch)"),
        ("celery_work", "Celery task doing the requester's work, quorum queue + acks_late"),
    ):
        others = ", ".join(f"{r:.0f}" for r in rates[name])
        print(
            f"| {label} | {median[name]:.0f} | {others} "
            f"| {median['requester'] / median[name]:.2f}x |"
        )
    print()
    print(f"- requester / relay: **{ratio_relay:.0%}** (target ≥ 70%)")
    print(
        f"- requester / Celery: solo **{ratio_celery:.2f}x**, "
        f"solo on a quorum queue **{median['requester'] / median['celery_q']:.2f}x**, "
        f"stock worker **{median['requester'] / median['celery_stock']:.2f}x** (target > 1); "
        f"requester / Celery doing the requester's work: "
        f"**{median['requester'] / median['celery_work']:.2f}x**"
    )
    print(
        "- `shoal exec python --id-only -- python -c pass`: "
        f"**{exec_median * 1000:.0f} ms** median of {runs} (target < 250 ms); "
        f"`python -c pass`: {python_median * 1000:.0f} ms"
    )


def cli() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "relay":
        asyncio.run(relay(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else PREFETCH))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds, args.runs))


if __name__ == "__main__":
    cli()
