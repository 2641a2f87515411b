"""Benchmark a large batch sharing code, and ``shoal job run`` latency; prints Markdown.

1. Shared code at scale: J jobs (default 1,000) of ``shoal exec python --code CODE -- python
   app.py N`` sharing one ``--code`` folder of M MiB (default 5; a random file, which does
   not compress, and a script), submitted with ``submit_many`` to ``shoal serve requester``
   (SQLite store): bytes published to the broker (counted at the client's channel), bytes
   stored (the batch's job specs and the blobs table), and seconds from the first publish
   until every job is queued (the last reply). Against the same jobs with every archive
   inline (``share=False``, the path before blobs). Inline, each job carries its own copy of
   the archive, so its cost is linear in the jobs: it is measured on a sample of K jobs
   (default 50) and scaled to J, which spares the shared broker gigabytes of messages. The
   jobs are built from one packed archive (``--each`` and ``exec_job`` pack it per job; the
   time of one pack is printed too).
2. ``shoal job run FILE --id-only`` of the spec that ``shoal exec … --dry-run`` printed,
   against ``shoal exec … --id-only`` itself: the median wall time of R runs of each, as a
   user's shell runs them, against the same requester.

Usage: python -m bench.bench_batch [--jobs 1000] [--inline-jobs 50] [--code-mib 5] [--runs 10]
Needs RabbitMQ with ``rabbitmqctl`` (a private vhost, deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.bench_requester import ROOT
from bench.bench_submit import measured_submit, requester
from bench.vhost import private_vhost
from shoal.client.prepare import ExecOptions, prepare_job
from shoal.wire import Submission

MiB = 1024 * 1024


def code_folder(folder: Path, size: int) -> Path:
    """A ``--code`` folder of ``size`` bytes and a little: a script and a random file."""
    folder.mkdir()
    (folder / "app.py").write_text("import sys\nprint(sys.argv[1:])\n")
    (folder / "model.bin").write_bytes(os.urandom(size))
    return folder


def code_jobs(code: Path, jobs: int, variant: str) -> tuple[list[Submission], float]:
    """``jobs`` submissions of ``shoal exec python --code CODE -- python app.py N``, the
    archive packed once and shared by every job's body; and the seconds one pack took."""

    def prepared(n: int, with_code: bool) -> dict[str, Any]:
        options = ExecOptions(
            "python",
            arguments=["python", "app.py", str(n)],
            code=str(code) if with_code else None,
            labels=[f"bench={variant}"],
        )
        return prepare_job(options).model_dump(mode="json")

    started = time.perf_counter()
    [code_input] = prepared(0, True)["tasks"][0]["inputs"]
    packing = time.perf_counter() - started
    submissions = []
    for n in range(jobs):
        body = prepared(n, False)
        body["tasks"][0]["inputs"] = [copy.copy(code_input), *body["tasks"][0]["inputs"]]
        submissions.append(Submission.model_validate({"job": body}))
    return submissions, packing


async def shared_code(
    url: str, database: Path, tmp: Path, jobs: int, sample: int, size: int
) -> dict[str, dict[str, float]]:
    """Per variant: jobs measured, bytes published (and of them in blob ops), bytes
    stored, seconds until all were queued; ``pack``: seconds of one pack."""
    code = code_folder(tmp / "code", size)
    found: dict[str, dict[str, float]] = {}
    # inline first: the blobs table then holds only the blob variant's blob
    for variant, share, count in (("inline", False, sample), ("blob", True, jobs)):
        submissions, packing = code_jobs(code, count, variant)
        measured = await measured_submit(url, database, submissions, variant, share, 300)
        found[variant] = {"jobs": count, **measured}
        found["pack"] = {"seconds": packing}
        print(f"{variant}: {found[variant]}", file=sys.stderr, flush=True)
    return found


def _timed(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def run_latency(url: str, tmp: Path, runs: int) -> dict[str, float]:
    """Median seconds of ``shoal exec`` and of ``shoal job run`` of its dry-run spec."""
    env = {**os.environ, "SHOAL_BROKER_URL": url}
    shoal = [sys.executable, "-m", "shoal.client.main"]
    job = ["python", "--", "python", "-c", "pass"]
    spec = tmp / "job.json"
    printed = subprocess.run(
        [*shoal, "exec", *job[:1], "--dry-run", "--output-format", "json", *job[1:]],
        env=env, check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    spec.write_text(printed.stdout)
    commands = {
        "exec": [*shoal, "exec", job[0], "--id-only", *job[1:]],
        "run": [*shoal, "job", "run", str(spec), "--id-only"],
    }
    for argv in commands.values():  # warm the caches and the requester
        _timed(argv, env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):  # interleaved, so a busy moment hits both alike
        for name, argv in commands.items():
            times[name].append(_timed(argv, env))
    return {name: statistics.median(found) for name, found in times.items()}


def report(
    jobs: int, sample: int, mib: int, runs: int, sizes: dict[str, dict[str, float]],
    latency: dict[str, float],
) -> None:  # fmt: skip
    blob, inline = sizes["blob"], sizes["inline"]
    scale = jobs / inline["jobs"]
    print("## A large batch sharing code, and `shoal job run` latency\n")
    print(
        f"`python -m bench.bench_batch --jobs {jobs} --inline-jobs {sample} "
        f"--code-mib {mib} --runs {runs}`\n"
    )
    print(
        f"{jobs} jobs sharing one {mib} MiB `--code` folder (incompressible), submitted with "
        "`submit_many` to a requester on SQLite. Inline (every job carrying the archive, "
        f"`share=False`) is linear in the jobs: measured on {sample} jobs and scaled "
        f"by {scale:g}.\n"
    )
    print(f"| whole batch of {jobs} | inline (no blobs) | blob | inline ÷ blob |")
    print("|---|---:|---:|---:|")
    for key, label in (("published", "bytes published"), ("stored", "bytes stored")):
        whole = inline[key] * scale
        print(f"| {label} | {whole:,.0f} | {blob[key]:,.0f} | {whole / blob[key]:,.0f}x |")
    whole = inline["seconds"] * scale
    print(
        f"| seconds until all {jobs} are queued | {whole:.1f} | {blob['seconds']:.2f} "
        f"| {whole / blob['seconds']:.0f}x |"
    )
    print()
    print(
        f"Blob: the one `blob-put` is {blob['blob']:,.0f} of the bytes published; each job's "
        f"own message {(blob['published'] - blob['blob']) / jobs:,.0f} bytes. Inline per job: "
        f"{inline['published'] / inline['jobs']:,.0f} bytes published, "
        f"{inline['stored'] / inline['jobs']:,.0f} stored ({inline['seconds']:.2f} s for "
        f"{inline['jobs']:.0f} jobs). Packing the folder once took "
        f"{sizes['pack']['seconds']:.2f} s (not in the times above; `--each` and `exec_job` "
        "reuse the archive of an unchanged folder).\n"
    )
    ratio = latency["run"] / latency["exec"]
    print(f"`shoal job run` of one spec against `shoal exec` (median of {runs}, --id-only):\n")
    print("| command | ms | ÷ exec |")
    print("|---|---:|---:|")
    print(
        f"| `shoal exec python --id-only -- python -c pass` "
        f"| {latency['exec'] * 1000:.0f} | 1.00x |"
    )
    print(
        f"| `shoal job run job.json --id-only` (its `--dry-run` spec) "
        f"| {latency['run'] * 1000:.0f} | {ratio:.2f}x |"
    )


async def main(jobs: int, sample: int, mib: int, runs: int) -> None:
    load = os.getloadavg()[0]
    with private_vhost() as url, tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        database = tmp / f"{uuid.uuid4().hex}.sqlite3"
        async with requester(url, database):
            sizes = await shared_code(url, database, tmp, jobs, sample, mib * MiB)
            latency = await asyncio.to_thread(run_latency, url, tmp, runs)
    report(jobs, sample, mib, runs, sizes, latency)
    print(
        f"\nLoad average (1 min) at the start and the end: {load:.1f}, "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (absolute times grow with it; "
        "the ratios compare runs made under the same load)."
    )


def cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--inline-jobs", type=int, default=50)
    parser.add_argument("--code-mib", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    asyncio.run(main(args.jobs, args.inline_jobs, args.code_mib, args.runs))


if __name__ == "__main__":
    cli()
