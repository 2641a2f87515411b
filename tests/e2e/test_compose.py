"""``compose.yaml`` as an operator runs it: RabbitMQ, a requester and two executors in
containers (``shoal/service:local``, from ``make service-image``), used from the host's CLI.

The project gets its own name and a free host port for RabbitMQ, so it stands beside
anything else on the machine; ``down -v`` removes its containers and volumes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.client.conftest import Done

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    """``docker compose`` where the plugin is installed, else ``docker-compose``."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.fail("neither `docker compose` nor `docker-compose`: run scripts/ensure-docker.sh")
    return [legacy]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Deployment:
    """One compose project; :meth:`compose` runs the compose CLI on it."""

    def __init__(self) -> None:
        self.project = f"shoal-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.env = {**os.environ, "SHOAL_AMQP_PORT": str(self.port)}
        self.command = [*compose_command(), "-p", self.project, "-f", str(ROOT / "compose.yaml")]
        self._user_url = ""

    def compose(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [*self.command, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def user_url(self) -> str:
        """The demo user's URL (``shoal broker setup`` ran in the rabbitmq service)."""
        if not self._user_url:
            password = self.compose("exec", "-T", "rabbitmq", "cat", "/secrets/demo.password")
            self._user_url = f"amqp://demo:{password.strip()}@127.0.0.1:{self.port}/"
        return self._user_url

    def docker(self, *args: str) -> str:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout.strip()

    def health(self, containers: list[str]) -> list[str]:
        """Each container's health check status (``starting``, ``healthy``, ``unhealthy``)."""
        return self.docker("inspect", "--format", "{{.State.Health.Status}}", *containers).split()

    def shoal(self, *args: str) -> Done:
        env = {**os.environ, "SHOAL_BROKER_URL": self.user_url()}
        done = subprocess.run(
            [sys.executable, "-m", "shoal.client.main", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Done(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """The compose project, up with two executors, until the module ends."""
    system = Deployment()
    try:
        system.compose("up", "-d", "--scale", "executor=2")
        deadline = time.monotonic() + 90
        while (listed := system.shoal("job", "list")).code != 0:
            assert time.monotonic() < deadline, f"the requester never answered: {listed.err}"
            time.sleep(1)
        yield system
    finally:
        logs = subprocess.run(
            [*system.command, "logs", "--no-color", "--tail", "20"],
            env=system.env,
            capture_output=True,
            text=True,
            check=False,
        )
        system.compose("down", "-v", "--remove-orphans")
        print(logs.stdout[-4000:])


def test_two_executors_come_up(deployment: Deployment) -> None:
    running = deployment.compose("ps", "-q", "executor").split()
    assert len(running) == 2


def test_every_executor_replica_becomes_healthy_on_a_port_of_its_own(
    deployment: Deployment,
) -> None:
    """The replicas share the host's network: each health check finds its own replica's
    ``/readyz`` through the port file in its container."""
    running = deployment.compose("ps", "-q", "executor").split()
    deadline = time.monotonic() + 60
    while (health := deployment.health(running)) != ["healthy"] * len(running):
        assert time.monotonic() < deadline, f"executors not healthy: {health}"
        time.sleep(1)
    ports = {deployment.docker("exec", c, "cat", "/run/shoal/metrics-port") for c in running}
    assert len(ports) == len(running)


def test_the_readme_example_runs_through_the_deployment(deployment: Deployment) -> None:
    done = deployment.shoal(
        "exec",
        "python",
        "--code",
        "examples/stats.py",
        "-i",
        "src=examples/sales.csv,dst=/inputs/sales.csv",
        "--id-only",
        "--wait",
        "--",
        "python",
        "stats.py",
        "/inputs/sales.csv",
    )
    assert done.code == 0, done.err
    job_id = done.out.strip()
    logs = deployment.shoal("job", "logs", job_id)
    assert logs.code == 0, logs.err
    assert "south" in logs.out
    assert "67.50" in logs.out


def test_jobs_spread_over_the_executors(deployment: Deployment) -> None:
    argv = ("exec", "python", "--id-only", "--wait", "--", "python", "-c", "print(1)")
    with ThreadPoolExecutor(6) as pool:
        runs = list(pool.map(lambda _: deployment.shoal(*argv), range(6)))
    assert [r.code for r in runs] == [0] * 6, [r.err for r in runs]
    executors = set()
    for run in runs:
        described = deployment.shoal("job", "describe", run.out.strip(), "--output-format", "json")
        assert described.code == 0, described.err
        executors |= {e["executor"] for e in json.loads(described.out)["executions"]}
    assert len(executors) == 2
