"""``deploy/keda-scaledobject.yaml`` stays true to the code: the queue it scales on, the
health endpoints and the time a draining executor needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shoal.executor.settings import ExecutorSettings
from shoal.names import COMPUTE_QUEUE

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "keda-scaledobject.yaml"


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(EXAMPLE.read_text())}


def test_the_scaler_watches_the_compute_queue_of_the_executor_deployment() -> None:
    docs = documents()
    scaled, deployment = docs["ScaledObject"], docs["Deployment"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"]["queueName"] == COMPUTE_QUEUE
    auth = docs["TriggerAuthentication"]["metadata"]["name"]
    assert trigger["authenticationRef"]["name"] == auth
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
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
