"""``deploy/keda-scaledobject.yaml`` and ``compose.yaml`` stay true to the code: the queues
the scaler scales on, the health endpoints and checks, and the time a draining executor needs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml

from shoal.executor.settings import ExecutorSettings
from shoal.metrics import HealthServer
from shoal.names import compute_queue

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "keda-scaledobject.yaml"
COMPOSE = ROOT / "compose.yaml"


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(EXAMPLE.read_text())}


def test_the_scaler_watches_the_compute_queues_of_the_executor_deployment() -> None:
    """The queues of the lanes the Deployment's executors serve: with no ``SHOAL_ENGINES``,
    docker and wasm (the service image has no python runtime for wasm, so not its lane)."""
    docs = documents()
    scaled, deployment = docs["ScaledObject"], docs["Deployment"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "SHOAL_ENGINES" not in env
    triggers = scaled["spec"]["triggers"]
    queues = [compute_queue(lane) for lane in ("docker", "wasm")]
    assert [t["metadata"]["queueName"] for t in triggers] == queues
    auth = docs["TriggerAuthentication"]["metadata"]["name"]
    for trigger in triggers:
        assert trigger["type"] == "rabbitmq"
        assert trigger["authenticationRef"]["name"] == auth
        assert trigger["metadata"]["value"] == env["SHOAL_SLOTS"]


def test_probes_and_grace_match_the_executor() -> None:
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env["SHOAL_METRICS_PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}
    assert container["command"] == ["shoal", "serve", "executor"]
    defaults = ExecutorSettings.model_fields
    drain = sum(
        defaults[name].default for name in ("drain_timeout", "stop_grace", "remove_timeout")
    )
    assert pod["terminationGracePeriodSeconds"] > drain


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_the_compose_requester_health_check_probes_its_metrics_port() -> None:
    requester = compose_services()["requester"]
    port = requester["environment"]["SHOAL_METRICS_PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(requester["healthcheck"]["test"])


async def test_each_compose_executor_health_check_probes_its_own_readyz(tmp_path: Path) -> None:
    """Replicas share the host's network: each listens on a port of its own (``auto``) and
    its health check reads it from the port file in its container. The check is run here
    against a health server, with the file moved to a temporary folder."""
    services = compose_services()
    executor = services["executor"]
    assert executor["network_mode"] == "host"
    assert executor["depends_on"]["requester"]["condition"] == "service_healthy"
    env = executor["environment"]
    settings = ExecutorSettings(
        metrics_port=env["SHOAL_METRICS_PORT"], metrics_port_file=env["SHOAL_METRICS_PORT_FILE"]
    )
    assert settings.metrics_port == "auto"
    kind, program, *args = executor["healthcheck"]["test"]
    assert (kind, program) == ("CMD", "python3")
    port_file = tmp_path / "metrics-port"
    check = [
        sys.executable,
        *(a.replace(str(settings.metrics_port_file), str(port_file)) for a in args),
    ]
    for problem, code in ((None, 0), ("draining", 1)):

        async def ready(answer: str | None = problem) -> str | None:
            return answer

        health = HealthServer("127.0.0.1", settings.metrics_port, ready, port_file=port_file)
        await health.start()
        try:
            process = await asyncio.create_subprocess_exec(
                *check, stderr=asyncio.subprocess.DEVNULL
            )
            assert await process.wait() == code
        finally:
            await health.close()
