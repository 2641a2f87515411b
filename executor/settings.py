"""The executor's settings: ``SHOAL_*`` environment variables, loaded once by ``service.run``.

Engines: the settings only the Docker engine reads are grouped in
:class:`DockerEngineSettings` (``--help`` and the README list them in their own table); the
others apply to every engine the executor serves.

Limits: a job's own ``resources`` and ``timeouts`` are used when given, the ``default_*``
values otherwise, and both are capped at the ``max_*`` values (a larger request is lowered
to the maximum, and the summary log line says so).

Outputs: ``job_output_limit`` caps the size of all of a job's result folders together, as
read from Docker (uncompressed tar; reading stops at the limit). Result folders are read in
the job's order; one that would go past the limit is left out of the ``result`` event
entirely (never cut in the middle), the event gets ``truncated=True``, its ``error`` names
each result left out and the limit it hit, and the job ends ``failed`` with ``output too
large: ...`` (the results within the limit are kept).

Node id: ``node_id`` defaults to the host name, so executors on one host share it. That is
safe: each container also carries its executor's own ID (``<node>-<pid>-<random>``), and an
executor starting up removes only the containers (and proxy rules) of executors of its node
that are no longer connected to the broker (``shoal.executor.service``, "Liveness"), never
those of a running one; so does every running executor each ``reap_every`` seconds
(``shoal.executor.reaping``). Orphans of a killed executor are removed by the other executors
of its node within two periods, or by the next executor started on the node. Executors on
one Docker host that use different brokers or vhosts cannot see each other: give them
different ``SHOAL_NODE_ID`` values.

Trust: native docker jobs may name only the runtime images (what translated jobs run) and the
images matching ``allowed_images``; an image missing on the node is never pulled unless
``pull_policy`` is ``if-missing``. Jobs run as a non-root user unless ``allow_root``: an
image whose user is root (or a name that cannot be checked) runs as ``NOBODY``. Destinations
of http jobs and url inputs are checked by ``shoal.executor.addresses``.

Stopping: a job stopped (``shoal job stop``), timed out, or handed back at shutdown gets
SIGTERM, then SIGKILL once its grace has passed: ``timeouts.grace`` of the job, else
``stop_grace``, at most ``stop_grace_max``. A job over its volume limit is killed at once.

Logs: stdout and stderr are sent in chunks of at most ``log_chunk_bytes``, at least every
``log_flush_seconds`` while output arrives; after ``job_log_limit`` bytes the rest is dropped
and one last stderr chunk says how much.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode

from shoal.settings import ServiceSettings
from shoal.units import parse_cpu, parse_duration, parse_memory


class PullPolicy(StrEnum):
    """Whether the executor may pull an image that is not on the node."""

    NEVER = "never"
    IF_MISSING = "if-missing"


Memory = Annotated[int, BeforeValidator(parse_memory)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Cpu = Annotated[float, BeforeValidator(parse_cpu)]


SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _system_ca_bundle() -> Path | None:
    return SYSTEM_CA_BUNDLE if SYSTEM_CA_BUNDLE.is_file() else None


def _none_word(value: object) -> object:
    return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"{value} is not a file")
    return value


OptionalPath = Annotated[Path | None, BeforeValidator(_none_word), AfterValidator(_existing_file)]


def _comma_list(value: object) -> object:
    """``"a, b"`` as ``["a", "b"]`` (a JSON list also works); lists pass through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _ports(value: object) -> object:
    """Ports and ranges (``8080, 9000-9100``) as a list of ports."""
    items = _comma_list(value)
    if not isinstance(items, list):
        return items
    ports: list[object] = []
    for item in items:
        low, dash, high = str(item).partition("-")
        if dash and low.strip().isdigit() and high.strip().isdigit():
            ports.extend(range(int(low), int(high) + 1))
        else:
            ports.append(item)
    return ports


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
Ports = Annotated[list[Annotated[int, Field(ge=1, le=65535)]], NoDecode, BeforeValidator(_ports)]

NOBODY = "65534:65534"
"""The user jobs run as when their image's user is root and root is not allowed."""


def user_is_root(user: str) -> bool:
    """Whether ``user`` (``uid[:gid]`` or a name; ``""`` = the image's default) may be root.

    Only a numeric non-zero uid is known not to be: a name could map to uid 0."""
    uid = user.split(":")[0]
    return not (uid.isdigit() and int(uid) != 0)


def _cpu_count() -> int:
    return os.cpu_count() or 1


ENGINES = ("docker", "wasm")
"""The engines an executor can serve."""


def _engines(value: object) -> object:
    names = _comma_list(value)
    if isinstance(names, list):
        unknown = [name for name in names if name not in ENGINES]
        if unknown:
            raise ValueError(f"unknown engine {unknown[0]!r}; engines: {', '.join(ENGINES)}")
    return names


Engines = Annotated[list[str], NoDecode, BeforeValidator(_engines)]


class DockerEngineSettings(BaseModel):
    """The settings only the Docker engine reads (``shoal.executor.engines.docker``): its
    connection, images and users, containers, the ``http`` network and the dependency cache.

    A mixin of :class:`ExecutorSettings`, not a nested model, so each is still
    ``SHOAL_<NAME>``; an executor serving wasm only ignores them."""

    SECTION: ClassVar[str] = "Docker engine only"
    """The heading of these settings in ``--help`` and the README's reference."""

    docker_url: str | None = Field(default=None, description="Docker API URL; None: default")
    pull_policy: PullPolicy = Field(
        default=PullPolicy.NEVER,
        description="never (default): an image missing on the node fails the job; "
        "if-missing: pull it",
    )
    pull_timeout: Duration = Field(default=300.0, description="Longest an image pull may take")
    job_user: str = Field(
        default="auto",
        description="User jobs run as: 'auto' = the image's USER if it is a numeric non-root "
        f"uid (the runtime images: 1000:1000), else {NOBODY} (the image's own user when "
        "allow_root); or an explicit 'uid:gid'",
    )
    allow_root: bool = Field(
        default=False, description="Let jobs whose image's user is root run as root"
    )
    allowed_images: CommaList = Field(
        default_factory=list,
        description="Images native docker jobs may name, as shell patterns (comma list, e.g. "
        "'busybox:*, ghcr.io/acme/*'); the runtime images are always allowed. Empty: native "
        "docker jobs may use only the runtime images",
    )
    pids_limit: int = Field(
        default=512, ge=16, description="Most processes (and threads) a job's container holds"
    )
    tmp_size: Memory = Field(default=512 * 1024**2, description="Size of the /tmp tmpfs")
    allow_full_network: bool = Field(
        default=False, description="Let jobs ask for unrestricted network access (--network full)"
    )
    http_network: str = Field(default="shoal-http", description="Internal Docker network name")
    proxy_port: int = Field(default=0, ge=0, le=65535, description="0: any free port")
    ca_bundle: OptionalPath = Field(
        default_factory=_system_ca_bundle,
        description="CA file jobs trust (mounted read-only; SSL_CERT_FILE, REQUESTS_CA_BUNDLE "
        "and PIP_CERT point at it), for networks that intercept TLS. Default: the node's own "
        f"bundle ({SYSTEM_CA_BUNDLE}) when present; 'none' mounts nothing",
    )
    dep_cache: bool = Field(
        default=True,
        description="Build python jobs' shareable requirements once per node in a separate "
        "install container and mount the environment read-only (off: each job installs its own)",
    )
    dep_install_timeout: Duration = Field(
        default=900.0, description="Longest an install step may run (also capped by the job's)"
    )
    remove_timeout: Duration = Field(
        default=30.0,
        gt=0,
        description="Seconds the engine gets to remove a container (or list them at start); "
        "one not removed in time is retried in the background and reaped once its executor "
        "is gone",
    )

    @model_validator(mode="after")
    def _root_allowed(self) -> Self:
        if self.job_user != "auto" and user_is_root(self.job_user) and not self.allow_root:
            raise ValueError(
                f"job_user {self.job_user!r} may be root; give a numeric non-root 'uid:gid' "
                "or set SHOAL_ALLOW_ROOT=true"
            )
        return self


class ExecutorSettings(ServiceSettings, DockerEngineSettings):
    """What an executor process needs; every field is ``SHOAL_<NAME>`` in the environment
    (those of :class:`DockerEngineSettings` too)."""

    slots: int = Field(default_factory=_cpu_count, ge=1, description="Jobs run at once")
    node_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="This executor's node name (default: the host name). Its containers are "
        "labelled with it and with the executor's own ID; an executor starting with this name "
        "(and every SHOAL_REAP_EVERY while it runs) reaps the containers and proxy rules of "
        "those executors of the name that are gone (no longer connected to the broker), so "
        "several executors may share it. Executors "
        "on one Docker host that use different brokers (or vhosts) must use different names: "
        "each would take the other's executors for gone",
    )
    reap_every: Duration = Field(
        default=15.0,
        ge=0,
        description="Seconds between a running executor's reapings of what the gone executors "
        "of its node left (containers, proxy rules, wasm run folders); an executor found gone "
        "at two reapings in a row is reaped, so a killed executor's containers are stopped "
        "within two periods by the others of its node. 0: only at start",
    )
    engines: Engines = Field(
        default_factory=list,
        description="The engines this executor serves, of docker and wasm (comma-separated); "
        "empty: every engine the node can run (docker when its engine answers, wasm always)",
    )

    default_memory: Memory = Field(
        default=512 * 1024**2, description="Memory a job gets when it does not ask (--memory)"
    )
    max_memory: Memory = Field(
        default=4 * 1024**3,
        description="Most memory a job gets; a larger request is lowered to it (keep the "
        "requester's SHOAL_MAX_JOB_MEMORY at the largest executor's value)",
    )
    default_cpu: Cpu = Field(
        default=1.0, description="CPUs a job gets when it does not ask (--cpu)"
    )
    max_cpu: Cpu = Field(
        default_factory=lambda: float(_cpu_count()),
        description="Most CPUs a job gets; a larger request is lowered to it",
    )
    default_execution_timeout: Duration = Field(
        default=3600.0, description="How long a job may run when it does not say (--timeout)"
    )
    max_execution_timeout: Duration = Field(
        default=24 * 3600.0,
        description="Longest a job may run; a longer timeout is lowered to it",
    )
    stop_grace: Duration = Field(
        default=10.0,
        gt=0,
        description="Seconds between SIGTERM and SIGKILL when a job is stopped, times out or "
        "is handed back at shutdown, unless the job asks for its own (shoal exec --grace)",
    )
    stop_grace_max: Duration = Field(
        default=300.0, gt=0, description="The longest grace a job may ask for"
    )

    upstream_proxy: str | None = Field(
        default=None,
        description="http://host:port the job proxy, url inputs and the pip of python "
        "--runtime=wasm jobs' requirements go through",
    )
    wasm_package_index: str = Field(
        default="https://pypi.org/simple",
        description="The package index (simple API) where the executor's pip finds the "
        "pure-Python wheels of python --runtime=wasm jobs' requirements (the job's own "
        "environment and the executor's pip configuration are not read)",
    )
    wasm_install_timeout: Duration = Field(
        default=900.0, gt=0, description="Longest pip may take to install such requirements"
    )
    allowed_local_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders of the node that local inputs may come from, as a JSON list "
        "(e.g. '[\"/srv/data\"]'); empty: local inputs are refused",
    )
    input_limit: Memory = Field(
        default=256 * 1024**2,
        description="Max bytes of one input (held in memory while it is placed)",
    )
    url_timeout: Duration = Field(
        default=120.0, description="Longest the download of one url input may take"
    )
    allow_private_addresses: bool = Field(
        default=False,
        description="Let url inputs and http-network jobs reach loopback, private and "
        "link-local addresses and the node's own addresses (off: refused, so jobs cannot reach "
        "the node's own services); for development and tests, whose services run on the node",
    )
    allowed_ports: Ports = Field(
        default_factory=list,
        description="Ports besides 80 and 443 that http jobs and url inputs may reach (comma "
        "list of ports and ranges, e.g. '8080, 9000-9100')",
    )
    address_refresh: Duration = Field(
        default=30.0, gt=0, description="How often the node's own addresses are read again"
    )
    job_output_limit: Memory = Field(
        default=32 * 1024**2,
        description="Bytes all of a job's results may hold together (uncompressed); a result "
        "that would pass it is left out whole and the job fails with 'output too large'",
    )
    volume_limit: Memory = Field(
        default=1024**3,
        description="Bytes a job's volumes (/outputs, /code, input folders) may hold, and the "
        "largest file a job may write (RLIMIT_FSIZE); past it the job is killed and fails "
        "with 'output too large' (see shoal.executor.engines.docker.volumes)",
    )
    volume_check_seconds: float = Field(
        default=2.0, gt=0, description="How often a running job's volumes are measured"
    )
    log_chunk_bytes: int = Field(
        default=64 * 1024, ge=256, description="Most bytes of output sent in one log event"
    )
    log_flush_seconds: float = Field(
        default=0.25,
        gt=0,
        description="Seconds output may wait before it is sent (a smaller chunk is sent then)",
    )
    job_log_limit: Memory = Field(
        default=16 * 1024**2,
        description="Bytes of stdout and stderr sent per job; the rest is dropped and a last "
        "stderr line says how much",
    )

    blob_cache_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "shoal-blobs",
        description="Where blobs (code shared by many jobs) fetched from the requester are "
        "kept, by sha256 (default: shoal-blobs in the system's temporary folder); executors "
        "of a node may share it",
    )
    blob_cache_bytes: Memory = Field(
        default=1024**3, description="Most bytes the blob cache holds (least recently used go)"
    )
    blob_timeout: Duration = Field(
        default=60.0, gt=0, description="Longest wait for the requester to send a blob"
    )

    drain_timeout: Duration = Field(
        default=30.0, description="On SIGTERM, how long running jobs may finish"
    )
    claims: bool = Field(
        default=True,
        description="Claim each run from the requester before starting it (shoal.claims), "
        "so a job runs once and a stopped job never starts; off only for an executor "
        "without a requester (tests, benchmarks)",
    )
    claim_lease: Duration = Field(
        default=30.0, gt=0, description="How long a claim lasts unless renewed"
    )
    claim_renew_every: Duration = Field(
        default=5.0, gt=0, description="Seconds between lease renewals (one request for all)"
    )
    claim_timeout: Duration = Field(
        default=10.0, gt=0, description="How long to wait for a requester to answer a claim"
    )
    stopped_memory: int = Field(
        default=10_000, ge=1, description="Stop requests for unseen jobs remembered"
    )
