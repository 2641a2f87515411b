"""A job plus the node's settings → the container spec: limits, user, volumes, env, labels.

Pure functions, no I/O: the network and input steps hand in what they found.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from shoal.executor.engines.docker.runner import (
    LABEL_EXECUTOR,
    LABEL_JOB,
    LABEL_NODE,
    ContainerSpec,
    ImageInfo,
)
from shoal.executor.failures import (
    IMAGE_NOT_ALLOWED,
    NETWORK_NOT_ALLOWED,
    OUTPUT_NOT_WRITABLE,
    UNSUPPORTED,
    JobError,
)
from shoal.executor.limits import Limits
from shoal.executor.settings import NOBODY, ExecutorSettings, user_is_root
from shoal.images import ENV_MOUNT, runtime_images
from shoal.model import DockerParams, Job, NetworkType, Task

CA_MOUNT = "/etc/shoal/ca-bundle.crt"
"""Where the operator's CA bundle appears inside jobs."""
ALWAYS_VOLUMES = ("/code", "/outputs")
NOT_VOLUMES = ("/", "/tmp")
"""Paths never made volumes: the read-only root, and the tmpfs."""


def docker_params(job: Job) -> DockerParams:
    """The job's docker engine params; ``JobError(UNSUPPORTED)`` for any other engine."""
    if job.task.engine.type != "docker":
        raise JobError(
            UNSUPPORTED,
            f"engine {job.task.engine.type!r} cannot run here; executors run docker jobs only",
        )
    return DockerParams.model_validate(job.task.engine.params)


def check_image(image: str, settings: ExecutorSettings) -> None:
    """``JobError(IMAGE_NOT_ALLOWED)`` unless ``image`` is a runtime image or matches one of
    the operator's ``allowed_images`` patterns (shell-style, case-sensitive)."""
    if image in runtime_images():
        return
    if any(fnmatchcase(image, pattern) for pattern in settings.allowed_images):
        return
    raise JobError(
        IMAGE_NOT_ALLOWED,
        f"{image} is not an image this node runs; native docker jobs may use the runtime "
        "images and those the operator allows (SHOAL_ALLOWED_IMAGES)",
    )


def network_type(task: Task, settings: ExecutorSettings) -> NetworkType:
    """The job's network; ``JobError(NETWORK_NOT_ALLOWED)`` for ``full`` on a closed node."""
    kind = task.network.type if task.network else NetworkType.NONE
    if kind is NetworkType.FULL and not settings.allow_full_network:
        raise JobError(
            NETWORK_NOT_ALLOWED,
            "this node does not give jobs full network access (SHOAL_ALLOW_FULL_NETWORK); "
            "use --network http with --domain for the hosts the job needs",
        )
    return kind


def job_user(image: ImageInfo, settings: ExecutorSettings) -> str:
    """The user the job runs as (see ``ExecutorSettings.job_user``): never root unless
    ``allow_root``, whatever the image says."""
    if settings.job_user != "auto":
        return settings.job_user
    if not user_is_root(image.user):
        return image.user
    return "" if settings.allow_root else NOBODY


def numeric_uid(user: str) -> int:
    """The uid files placed for the job are owned by (0 when the user is not numeric)."""
    head = user.split(":")[0]
    return int(head) if head.isdigit() else 0


def uses_dep_cache(params: DockerParams, settings: ExecutorSettings) -> bool:
    """Whether the job gets a prebuilt environment (``depcache``): its translator asked for
    one (``DockerParams.dep_cache``) and the node builds them."""
    return settings.dep_cache and params.dep_cache


def runs_as_root(user: str) -> bool:
    """Whether ``user`` (as from :func:`job_user`) is root; ``""`` keeps the image's root."""
    return user.split(":")[0] in ("", "0", "root")


def _under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class OutputLayout:
    """Where a job's result folders live in its container.

    A result path that is a volume (``/outputs``, an input's top folder) needs nothing. One
    below a volume (``/outputs/results``) is created in it before start, owned by the job's
    user (``dirs``). Any other gets its own anonymous volume (``volumes``), whose root Docker
    makes owned by root (0755) unless the image has that folder, so only a job running as
    root may have one; otherwise the job fails with ``OUTPUT_NOT_WRITABLE``.
    """

    volumes: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()


def output_layout(task: Task, input_roots: list[str], user: str) -> OutputLayout:
    """The layout of ``task``'s outputs for a job running as ``user``; ``JobError`` if unfit."""
    mounted = [p for p in (*ALWAYS_VOLUMES, *input_roots) if p not in NOT_VOLUMES]
    own: list[str] = []
    dirs: list[str] = []
    for result in task.outputs:
        path = posixpath.normpath(result.path)
        if path in NOT_VOLUMES or path in mounted or path in own or path in dirs:
            continue
        if any(_under(path, root) for root in (*mounted, *own)):
            dirs.append(path)
        elif runs_as_root(user):
            own.append(path)
        else:
            raise JobError(
                OUTPUT_NOT_WRITABLE,
                f"{path} would be owned by root but the job runs as {user.split(':')[0]}; "
                f"collect it under /outputs instead, e.g. -o {result.name}:/outputs{path}",
            )
    return OutputLayout(volumes=tuple(own), dirs=tuple(dirs))


def volumes(input_roots: list[str], output_volumes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Anonymous volumes: /code, /outputs, each input's top folder, outputs needing their own."""
    unique: list[str] = []
    for path in (*ALWAYS_VOLUMES, *input_roots, *output_volumes):
        path = posixpath.normpath(path)
        if path not in unique and path not in NOT_VOLUMES:
            unique.append(path)
    return tuple(unique)


def ca_env(settings: ExecutorSettings) -> dict[str, str]:
    """The variables that make common tools trust the operator's CA bundle."""
    if settings.ca_bundle is None:
        return {}
    return {
        "SSL_CERT_FILE": CA_MOUNT,
        "REQUESTS_CA_BUNDLE": CA_MOUNT,
        "PIP_CERT": CA_MOUNT,
        "CURL_CA_BUNDLE": CA_MOUNT,
        "NODE_EXTRA_CA_CERTS": CA_MOUNT,
    }


@dataclass(frozen=True)
class SpecInputs:
    """What the other steps found out, needed to build the spec."""

    executor_id: str
    image: ImageInfo
    limits: Limits
    input_roots: list[str] = field(default_factory=list)
    output_volumes: tuple[str, ...] = ()
    """Result paths that get a volume of their own (``OutputLayout.volumes``)."""
    network: str = "none"
    network_env: dict[str, str] = field(default_factory=dict)
    env_volume: str | None = None
    """The prebuilt environment, mounted read-only at ``ENV_MOUNT``."""


def container_spec(job: Job, settings: ExecutorSettings, found: SpecInputs) -> ContainerSpec:
    """The hardened container for ``job``."""
    params = docker_params(job)
    task = job.task
    env = {**params.env, **task.env, **found.network_env, **ca_env(settings)}
    files = {str(settings.ca_bundle): CA_MOUNT} if settings.ca_bundle else {}
    tmp_size = min(task.resources.disk or settings.tmp_size, settings.tmp_size)
    return ContainerSpec(
        image=params.image,
        command=list(params.parameters),
        entrypoint=list(params.entrypoint) or None,
        env=env,
        working_dir=params.working_dir,
        user=job_user(found.image, settings),
        labels={
            LABEL_JOB: job.id,
            LABEL_NODE: settings.node_id,
            LABEL_EXECUTOR: found.executor_id,
        },
        volumes=volumes(found.input_roots, found.output_volumes),
        tmpfs={"/tmp": f"rw,exec,nosuid,nodev,size={tmp_size}"},
        read_only_volumes={found.env_volume: ENV_MOUNT} if found.env_volume else {},
        read_only_files=files,
        memory=found.limits.memory,
        nano_cpus=int(found.limits.cpu * 1_000_000_000),
        pids_limit=settings.pids_limit,
        network=found.network,
        file_size_limit=settings.volume_limit,
    )
