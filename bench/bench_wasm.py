"""The wasm engine against the Docker engine, through the whole system; prints Markdown.

A requester (in this process, SQLite) and one executor (``shoal serve executor``, a child
process, so that its memory can be read) on a private vhost; jobs are submitted with
``shoal.AsyncClient`` and timed until each has ended and is recorded (``wait``).

1. One trivial job at a time, end to end: ``shoal exec wasm`` of ``examples/hello.wat``
   against a native docker job printing the same line on the base image (``sh -c echo``):
   median of R runs each, rounds alternating.
2. N such jobs at the executor's concurrency (its ``SHOAL_SLOTS``): jobs/s of each.
3. The executor's resident memory (RSS) idle, and at its highest while the wasm jobs ran.

The trivial job here is a WASI module; ``bench.bench_pywasm`` measures ``print(1)`` in python
on the wasm engine's CPython.

Usage: python -m bench.bench_wasm [--jobs 40] [--runs 5] [--slots 2]
Needs RabbitMQ, Docker and the base image (``bash runtime-images/build.sh``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import wasmtime

from bench.bench_executor import started_requester
from bench.vhost import private_vhost
from shoal.client.api import AsyncClient
from shoal.client.exec_job import exec_job
from shoal.logs import configure
from shoal.model import Job

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "shoal/base:bookworm"


def docker_job() -> Job:
    """A native docker job printing the greeting, on the base image."""
    params = {
        "image": IMAGE,
        "entrypoint": ["sh", "-c"],
        "parameters": ["echo hello from WebAssembly"],
    }
    return Job.model_validate({"tasks": [{"engine": {"type": "docker", "params": params}}]})


def wasm_job(module: Path) -> Job:
    """``shoal exec wasm --code hello.wasm``."""
    return exec_job("wasm", code=module)


async def run_all(client: AsyncClient, jobs: list[Job]) -> float:
    """Seconds from submitting ``jobs`` until every one has ended and is recorded."""
    began = time.perf_counter()
    submitted = await client.submit_many(jobs)
    ids = []
    for result in submitted:
        if isinstance(result, Exception):
            raise result
        ids.append(result.job_id)
    await asyncio.gather(*(client.wait(job_id, timeout=600) for job_id in ids))
    return time.perf_counter() - began


async def peak_rss(process: psutil.Process, done: asyncio.Event) -> int:
    """The highest RSS of ``process`` seen until ``done`` (sampled every 20 ms)."""
    peak = 0
    while not done.is_set():
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.02)
    return peak


async def measure(args: argparse.Namespace, broker: str, folder: Path) -> dict[str, object]:
    module = folder / "hello.wasm"
    module.write_bytes(bytes(wasmtime.wat2wasm((ROOT / "examples" / "hello.wat").read_text())))
    requester = await started_requester(broker, folder)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHOAL_BROKER_URL": broker,
        "SHOAL_NODE_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "SHOAL_SLOTS": str(args.slots),
        "SHOAL_ALLOWED_IMAGES": IMAGE,
        "SHOAL_PULL_POLICY": "never",
        "SHOAL_LOG_FORMAT": "json",
        "SHOAL_LOG_LEVEL": "warning",
    }
    executor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal.client.main", "serve", "executor", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    memory = psutil.Process(executor.pid)
    single: dict[str, list[float]] = {"wasm": [], "docker": []}
    batch: dict[str, float] = {}
    make: dict[str, Callable[[], Job]] = {"wasm": lambda: wasm_job(module), "docker": docker_job}
    try:
        async with AsyncClient(broker) as client:
            await run_all(client, [docker_job(), wasm_job(module)])  # warm-up, and ready
            await asyncio.sleep(1)
            idle = memory.memory_info().rss
            for _ in range(args.runs):
                for kind in ("wasm", "docker"):
                    single[kind].append(await run_all(client, [make[kind]()]))
            finished = asyncio.Event()

            async def wasm_batch() -> float:
                try:
                    return await run_all(client, [wasm_job(module) for _ in range(args.jobs)])
                finally:
                    finished.set()

            batch["wasm"], loaded = await asyncio.gather(wasm_batch(), peak_rss(memory, finished))
            batch["docker"] = await run_all(client, [docker_job() for _ in range(args.jobs)])
    finally:
        executor.terminate()
        await executor.wait()
        await requester.stop()
    return {"single": single, "batch": batch, "idle": idle, "loaded": loaded}


def report(args: argparse.Namespace, results: dict[str, object]) -> str:
    single = results["single"]
    batch = results["batch"]
    assert isinstance(single, dict)
    assert isinstance(batch, dict)
    wasm_one, docker_one = statistics.median(single["wasm"]), statistics.median(single["docker"])
    wasm_rate, docker_rate = args.jobs / batch["wasm"], args.jobs / batch["docker"]
    mib = 1024 * 1024
    idle, loaded = results["idle"], results["loaded"]
    assert isinstance(idle, int)
    assert isinstance(loaded, int)
    return "\n".join(
        [
            "## The wasm engine against the Docker engine",
            "",
            f"`python -m bench.bench_wasm --jobs {args.jobs} --runs {args.runs} "
            f"--slots {args.slots}`",
            "",
            "Through the whole system (requester, one executor, submitted and awaited with "
            "`shoal.AsyncClient`): `examples/hello.wat` on the wasm engine against a docker job "
            f"printing the same line (`sh -c echo` on `{IMAGE}`).",
            "",
            "| measurement | wasm | docker | wasm ÷ docker |",
            "|---|---:|---:|---:|",
            f"| one job end to end, s (median of {args.runs}) | {wasm_one:.3f} | "
            f"{docker_one:.3f} | {wasm_one / docker_one:.2f}x |",
            f"| {args.jobs} jobs at {args.slots} slots, jobs/s | {wasm_rate:.1f} | "
            f"{docker_rate:.1f} | {wasm_rate / docker_rate:.2f}x |",
            "",
            f"Executor RSS: {idle / mib:.0f} MiB idle (after one job of each engine), "
            f"{loaded / mib:.0f} MiB at most while the {args.jobs} wasm jobs ran.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slots", type=int, default=2)
    args = parser.parse_args()
    configure("json", "warning")
    with private_vhost() as broker, tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(measure(args, broker, Path(folder)))
    print(report(args, results))


if __name__ == "__main__":
    main()
