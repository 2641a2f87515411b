"""A fleet under ``compose.yaml``: how jobs spread over three executors, and a SIGTERM to one
of them in the middle of a batch; prints Markdown.

``docker compose up -d --scale executor=3`` (its own project name and RabbitMQ port, removed
afterwards with ``down -v``), then two batches of N python jobs that each sleep S seconds,
submitted with ``shoal job run --batch`` and awaited with ``shoal job wait --batch``. The
first runs undisturbed. During the second, once the first jobs run, one executor gets
``docker stop`` (SIGTERM, then SIGKILL after the service's 75 s grace): it stops taking jobs,
lets its running ones finish (its drain) or hands them back, and exits. Each job's executions
(``job describe``) tell where it ran. Reported: jobs per executor, how long the stopped one
took to leave, what became of the jobs it was running, and whether any job was lost or ran
to completion twice.

Usage: python -m bench.bench_fleet [--jobs 30] [--sleep 3]
Needs Docker with compose and the images of ``make service-image images``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXECUTORS = 3


def compose_command() -> list[str]:
    """``docker compose`` where the plugin is installed, else ``docker-compose``."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        raise SystemExit("neither `docker compose` nor `docker-compose` is installed")
    return [legacy]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Fleet:
    """One compose project with :data:`EXECUTORS` executors."""

    def __init__(self) -> None:
        self.project = f"shoal-bench-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {**os.environ, "SHOAL_AMQP_PORT": str(self.port)}
        self.command = [*compose_command(), "-p", self.project, "-f", str(ROOT / "compose.yaml")]
        self.url = ""

    def compose(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"compose {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def shoal(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "shoal.client.main", *args],
            cwd=ROOT,
            env={**os.environ, "SHOAL_BROKER_URL": self.url},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and done.returncode != 0:
            raise SystemExit(f"shoal {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def up(self) -> None:
        self.compose("up", "-d", "--scale", f"executor={EXECUTORS}")
        password = self.compose("exec", "-T", "rabbitmq", "cat", "/secrets/demo.password")
        self.url = f"amqp://demo:{password.strip()}@127.0.0.1:{self.port}/"
        deadline = time.monotonic() + 120
        while self.shoal("job", "list", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the requester never answered")
            time.sleep(1)

    def executor_ids(self) -> dict[str, str]:
        """Executor ID (from its log) → container name, for each executor container."""
        found = {}
        for container in self.compose("ps", "-q", "executor").split():
            name = docker("inspect", "-f", "{{.Name}}", container).strip().lstrip("/")
            for line in docker("logs", container).splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("executor"):
                    found[str(record["executor"])] = name
                    break
        return found

    def short(self, container: str) -> str:
        """A container's name without the project's: ``executor_1``."""
        name = container.lstrip("/")
        return name.removeprefix(f"{self.project}_").removeprefix(f"{self.project}-")

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans")


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def batch_file(folder: Path, jobs: int, sleep: float) -> Path:
    code = f"import time; time.sleep({sleep}); print('done')"
    engine = {
        "type": "python",
        "params": {"version": "3.11", "command": "python", "arguments": ["python", "-c", code]},
    }
    path = folder / "fleet.jsonl"
    lines = [json.dumps({"name": f"fleet-{n}", "tasks": [{"engine": engine}]}) for n in range(jobs)]
    path.write_text("\n".join(lines) + "\n")
    return path


def running_on(fleet: Fleet, batch: str) -> int:
    listed = fleet.shoal("job", "summary", "--batch", batch, "--output-format", "json")
    counts: dict[str, Any] = json.loads(listed.stdout)
    states = counts.get("states", counts)
    return int(states.get("running", 0)) if isinstance(states, dict) else 0


def submit(fleet: Fleet, jobs: int, sleep: float) -> tuple[str, list[str]]:
    """Submit a batch of ``jobs``; its ID and its job IDs."""
    with tempfile.TemporaryDirectory() as folder:
        path = batch_file(Path(folder), jobs, sleep)
        submitted = fleet.shoal("job", "run", "--batch", str(path))
    batch, *job_ids = submitted.stdout.split()
    return batch, job_ids


class Outcome:
    """Where a batch's jobs ran and how they ended."""

    def __init__(self, fleet: Fleet, batch: str, job_ids: list[str], names: dict[str, str]):
        listed = fleet.shoal("job", "list", "--batch", batch, "--all", "--output-format", "json")
        self.states = Counter(job["state"] for job in json.loads(listed.stdout)["jobs"])
        self.lost = len(job_ids) - sum(self.states.values())
        self.per_executor: Counter[str] = Counter()
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.twice = 0
        for job_id in job_ids:
            described = fleet.shoal("job", "describe", job_id, "--output-format", "json")
            runs = json.loads(described.stdout).get("executions", [])
            for run in runs:
                run["executor"] = names.get(run["executor"], run["executor"])
            self.runs[job_id] = runs
            completed = [run for run in runs if run.get("state") == "completed"]
            self.twice += len(completed) > 1
            for run in completed:
                self.per_executor[run["executor"]] += 1

    def spread(self) -> str:
        return ", ".join(f"{name}: {n}" for name, n in sorted(self.per_executor.items()))

    def ends(self) -> str:
        return ", ".join(f"{state} {n}" for state, n in sorted(self.states.items()))


def measure(jobs: int, sleep: float) -> str:
    fleet = Fleet()
    stopped: dict[str, float] = {}
    try:
        fleet.up()
        names = {executor: fleet.short(name) for executor, name in fleet.executor_ids().items()}
        batch, job_ids = submit(fleet, jobs, sleep)
        calm_wait = fleet.shoal(
            "job", "wait", "--batch", batch, "--wait-timeout", "10m", check=False
        )
        calm = Outcome(fleet, batch, job_ids, names)

        victim = sorted(fleet.compose("ps", "-q", "executor").split())[0]
        victim_name = fleet.short(docker("inspect", "-f", "{{.Name}}", victim).strip())
        batch, job_ids = submit(fleet, jobs, sleep)
        deadline = time.monotonic() + 120
        while running_on(fleet, batch) < EXECUTORS and time.monotonic() < deadline:
            time.sleep(0.5)

        def stop() -> None:
            began = time.monotonic()
            docker("stop", "-t", "75", victim)
            stopped["seconds"] = time.monotonic() - began

        stopper = threading.Thread(target=stop)
        stopper.start()
        waited = fleet.shoal("job", "wait", "--batch", batch, "--wait-timeout", "10m", check=False)
        stopper.join()
        stormy = Outcome(fleet, batch, job_ids, names)
    finally:
        fleet.down()
    victim_jobs: Counter[str] = Counter()
    for runs in stormy.runs.values():
        mine = [run for run in runs if run["executor"] == victim_name]
        if mine:
            there = any(run.get("state") == "completed" for run in mine)
            victim_jobs["finished by it" if there else "handed on"] += 1
    return "\n".join(
        [
            "## A fleet under compose: spread, and an executor stopped mid-batch",
            "",
            f"`python -m bench.bench_fleet --jobs {jobs} --sleep {sleep:g}`",
            "",
            f"`docker compose up --scale executor={EXECUTORS}` (each executor: its default slots, "
            f"the CPU count); two batches of {jobs} python jobs (`time.sleep({sleep:g})`), "
            "submitted with `shoal job run --batch` and awaited with `shoal job wait --batch`. "
            f"During the second, `docker stop` of `{victim_name}` once {EXECUTORS} jobs ran.",
            "",
            "| measurement | calm batch | batch with an executor stopped |",
            "|---|---|---|",
            f"| jobs completed per executor | {calm.spread()} | {stormy.spread()} |",
            f"| end states (job wait exit) | {calm.ends()} ({calm_wait.returncode}) "
            f"| {stormy.ends()} ({waited.returncode}) |",
            f"| jobs lost / completed twice | {calm.lost} / {calm.twice} "
            f"| {stormy.lost} / {stormy.twice} |",
            f"| the stopped executor's running jobs | | {dict(victim_jobs) or 'none'} |",
            f"| it left after (SIGTERM → exit) | | {stopped.get('seconds', float('nan')):.1f} s "
            "(compose grace 75 s) |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--sleep", type=float, default=3.0)
    args = parser.parse_args()
    print(measure(args.jobs, args.sleep))


if __name__ == "__main__":
    main()
