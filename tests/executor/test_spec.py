"""The container spec: limits, user, volumes, environment, labels, prebuilt environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import InvalidJobError
from shoal.executor.engines.docker.runner import ImageInfo
from shoal.executor.engines.docker.spec import (
    OutputLayout,
    SpecInputs,
    check_image,
    container_spec,
    job_user,
    network_type,
    output_layout,
)
from shoal.executor.failures import JobError
from shoal.executor.limits import limits
from shoal.executor.settings import ExecutorSettings
from shoal.images import PYTHON_VERSIONS, duckdb_image, python_image
from shoal.model import parse_job

from .support import BASE_IMAGE, PYTHON_IMAGE, docker_job


@pytest.fixture
def settings() -> ExecutorSettings:
    return ExecutorSettings(
        node_id="n1",
        default_memory="256Mi",
        max_memory="1Gi",
        default_cpu=1,
        max_cpu=2,
        default_execution_timeout=60,
        max_execution_timeout=600,
        ca_bundle=Path("/etc/ssl/certs/ca-certificates.crt"),
    )


def test_limits_defaults_and_maxima(settings: ExecutorSettings) -> None:
    assert limits(docker_job("true").task, settings).memory == 256 * 1024**2
    big = docker_job(
        "true", resources={"memory": "8Gi", "cpu": 16}, timeouts={"execution": "2h"}
    ).task
    found = limits(big, settings)
    assert (found.memory, found.cpu, found.execution_timeout) == (1024**3, 2.0, 600.0)
    assert found.notes == [
        "memory 8.0 GiB → 1.0 GiB (node maximum)",
        "cpu 16 → 2 (node maximum)",
        "execution timeout 2h → 10m (node maximum)",
    ]
    total = docker_job("true", timeouts={"execution": 100, "total": 50}).task
    assert limits(total, settings, waited=20).execution_timeout == 30


def test_stop_grace_from_the_job_else_the_node_capped(settings: ExecutorSettings) -> None:
    node = settings.model_copy(update={"stop_grace": 7.0, "stop_grace_max": 60.0})
    assert limits(docker_job("true").task, node).grace == 7.0
    assert limits(docker_job("true", timeouts={"grace": "3s"}).task, node).grace == 3.0
    capped = limits(docker_job("true", timeouts={"grace": "5m"}).task, node)
    assert capped.grace == 60.0
    assert capped.notes == ["stop grace 5m → 1m (node maximum)"]


@pytest.mark.parametrize(
    ("image_user", "setting", "allow_root", "expected"),
    [
        ("1000:1000", "auto", False, "1000:1000"),
        ("1000", "auto", False, "1000"),
        ("", "auto", False, "65534:65534"),
        ("root", "auto", False, "65534:65534"),
        ("0:0", "auto", False, "65534:65534"),
        ("toor", "auto", False, "65534:65534"),  # a name could be uid 0
        ("", "auto", True, ""),
        ("root", "auto", True, ""),
        ("", "2000:2000", False, "2000:2000"),
    ],
)
def test_job_user_never_root_unless_allowed(
    settings: ExecutorSettings, image_user: str, setting: str, allow_root: bool, expected: str
) -> None:
    chosen = settings.model_copy(update={"job_user": setting, "allow_root": allow_root})
    assert job_user(ImageInfo(user=image_user), chosen) == expected


@pytest.mark.parametrize("user", ["0:0", "root", "", "someone"])
def test_a_root_job_user_needs_allow_root(user: str) -> None:
    with pytest.raises(ValueError, match="SHOAL_ALLOW_ROOT"):
        ExecutorSettings(job_user=user)
    assert ExecutorSettings(job_user=user, allow_root=True).job_user == user


def test_native_images_refused_unless_allowed(settings: ExecutorSettings) -> None:
    """The attack: a native docker job naming any image (pulled if missing)."""
    for image in (*(python_image(v) for v in PYTHON_VERSIONS), PYTHON_IMAGE, duckdb_image()):
        check_image(image, settings)
    for image in (BASE_IMAGE, "alpine", "docker.io/library/alpine:3", "shoal/python:evil"):
        with pytest.raises(JobError, match=rf"^image not allowed: {image} is not an image"):
            check_image(image, settings)
    allowing = settings.model_copy(update={"allowed_images": ["shoal/base:*", "docker.io/*"]})
    for image in (BASE_IMAGE, "docker.io/library/alpine:3"):
        check_image(image, allowing)
    with pytest.raises(JobError, match="^image not allowed: "):
        check_image("alpine", allowing)


def test_comma_list_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOAL_ALLOWED_IMAGES", "busybox:*, ghcr.io/acme/*")
    monkeypatch.setenv("SHOAL_ALLOWED_PORTS", "8080, 9000-9002")
    loaded = ExecutorSettings()
    assert loaded.allowed_images == ["busybox:*", "ghcr.io/acme/*"]
    assert loaded.allowed_ports == [8080, 9000, 9001, 9002]
    monkeypatch.setenv("SHOAL_ALLOWED_PORTS", "70000")
    with pytest.raises(ValueError, match="allowed_ports"):
        ExecutorSettings()


def test_images_are_never_pulled_by_default() -> None:
    assert ExecutorSettings().pull_policy.value == "never"


def test_network_modes(settings: ExecutorSettings) -> None:
    assert network_type(docker_job("true").task, settings).value == "none"
    with pytest.raises(JobError, match="^network not allowed: "):
        network_type(docker_job("true", network={"type": "full"}).task, settings)


def test_spec_for_a_python_job(settings: ExecutorSettings) -> None:
    job = docker_job(
        "",
        image=PYTHON_IMAGE,
        argv=["/usr/local/bin/shoal-launch", "--", "python", "app.py"],
        env={"A": "1"},
        outputs=[{"name": "outputs", "path": "/outputs"}, {"name": "r", "path": "/results"}],
    )
    found = SpecInputs(
        executor_id="n1-1-abc",
        image=ImageInfo(user="1000:1000"),
        limits=limits(job.task, settings),
        input_roots=["/code", "/inputs"],
        output_volumes=("/results",),
        network="shoal-http",
        network_env={"HTTP_PROXY": "http://p"},
        env_volume="shoal-env-abc",
    )
    spec = container_spec(job, settings, found)
    assert spec.entrypoint == ["/usr/local/bin/shoal-launch"]
    assert spec.command == ["--", "python", "app.py"]
    assert spec.user == "1000:1000"
    assert spec.volumes == ("/code", "/outputs", "/inputs", "/results")
    assert spec.labels == {"shoal.job_id": job.id, "shoal.node": "n1", "shoal.executor": "n1-1-abc"}
    assert spec.env["A"] == "1"
    assert spec.env["HTTP_PROXY"] == "http://p"
    assert spec.env["PIP_CERT"] == spec.env["SSL_CERT_FILE"] == "/etc/shoal/ca-bundle.crt"
    assert spec.named_volumes == {}, "a job never mounts a named volume writable"
    assert spec.read_only_volumes == {"shoal-env-abc": "/shoal-env"}
    assert spec.read_only_files == {
        "/etc/ssl/certs/ca-certificates.crt": "/etc/shoal/ca-bundle.crt"
    }
    assert spec.network == "shoal-http"
    assert spec.nano_cpus == 1_000_000_000


def test_no_shared_volume_without_a_prebuilt_environment(settings: ExecutorSettings) -> None:
    job = docker_job("true")
    found = SpecInputs(executor_id="x", image=ImageInfo(user=""), limits=limits(job.task, settings))
    spec = container_spec(job, settings, found)
    assert spec.named_volumes == spec.read_only_volumes == {}


def outputs_of(*paths: str) -> list[dict[str, str]]:
    return [{"name": f"o{number}", "path": path} for number, path in enumerate(paths)]


@pytest.mark.parametrize("user", ["1000:1000", ""])
def test_output_below_a_volume_is_a_folder(user: str) -> None:
    task = docker_job(
        "true", outputs=outputs_of("/outputs", "/outputs/res/", "/data/r", "/code", "/tmp")
    ).task
    assert output_layout(task, ["/data"], user) == OutputLayout(dirs=("/outputs/res", "/data/r"))


def test_output_of_its_own_needs_root() -> None:
    task = docker_job("true", outputs=outputs_of("/results", "/results/sub")).task
    assert output_layout(task, [], "") == OutputLayout(
        volumes=("/results",), dirs=("/results/sub",)
    )
    assert output_layout(task, [], "0:0").volumes == ("/results",)
    with pytest.raises(JobError) as caught:
        output_layout(
            docker_job("true", outputs=[{"name": "results", "path": "/results"}]).task,
            [],
            "1000:1000",
        )
    assert caught.value.error == (
        "output not writable: /results would be owned by root but the job runs as 1000; "
        "collect it under /outputs instead, e.g. -o results:/outputs/results"
    )


def test_a_job_cannot_ask_for_a_user() -> None:
    """A job has no way to ask for root: its docker params have no user field."""
    params = {"image": BASE_IMAGE, "user": "0:0"}
    with pytest.raises(InvalidJobError, match=r"engine\.params\.user: extra inputs"):
        parse_job({"tasks": [{"engine": {"type": "docker", "params": params}}]})
