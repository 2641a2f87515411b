"""The cost of metrics: requester throughput with ``SHOAL_METRICS_PORT`` on against off.

Both runs are ``bench.bench_requester``'s throughput measurement (N submissions queued
beforehand, ``shoal serve requester`` started, timed from its first compute message to its
N-th, replies included), alternating off and on for R rounds in one process and one vhost;
with metrics on, a scraper fetches ``/metrics`` every second as Prometheus would.
Target (issue 11): on ÷ off ≥ 0.97.

Usage: python -m bench.bench_metrics [--jobs 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

from bench.bench_requester import bench_requester
from bench.vhost import private_vhost
from shoal.broker import connect

SCRAPE_EVERY = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def scraping(port: int) -> AsyncIterator[None]:
    """Fetch ``/metrics`` every second (errors ignored: the requester may not be up yet)."""

    def scrape() -> None:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()

    async def loop() -> None:
        while True:
            await asyncio.to_thread(scrape)
            await asyncio.sleep(SCRAPE_EVERY)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def main(jobs: int, rounds: int) -> None:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    with private_vhost() as url, tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        conn = await connect(url, name="bench")
        for round_ in range(rounds):
            rates["off"].append(await bench_requester(conn, url, jobs, data))
            port = free_port()
            async with scraping(port):
                env = {"SHOAL_METRICS_PORT": str(port), "SHOAL_QUEUE_DEPTH_EVERY": "1"}
                rates["on"].append(await bench_requester(conn, url, jobs, data, env))
            print(
                f"round {round_ + 1}: off {rates['off'][-1]:.0f}/s, on {rates['on'][-1]:.0f}/s",
                file=sys.stderr,
                flush=True,
            )
        await conn.close()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print("## The cost of metrics (requester throughput)\n")
    print(f"`python -m bench.bench_metrics --jobs {jobs} --rounds {rounds}`\n")
    print(f"{jobs} submissions per round, {rounds} rounds alternating, median rate.\n")
    print("| requester | msgs/s (median) | rounds |")
    print("|---|---:|---|")
    for name, label in (("off", "metrics off"), ("on", "metrics on, scraped every second")):
        print(
            f"| {label} | {statistics.median(rates[name]):.0f} | "
            + ", ".join(f"{r:.0f}" for r in rates[name])
            + " |"
        )
    verdict = "meets" if on / off >= 0.97 else "misses"
    print(f"\nOn ÷ off: **{on / off:.2f}x** ({verdict} the ≥ 0.97x target).", end=" ")
    print(f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.rounds))


if __name__ == "__main__":
    cli()
