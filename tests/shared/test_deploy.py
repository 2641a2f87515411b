"""``deploy/keda-scaledobject.yaml`` stays true to the code: the queues it scales on, the
health endpoints and the time a draining executor needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shoal.executor.settings import ExecutorSettings
from shoal.names import compute_queue

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "keda-scaledobject.yaml"


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
