"""The Docker engine: one hardened container per job.

``workload`` prepares the run: image and user (never root unless the operator allows it,
``spec.job_user``; the container's volumes owned by that user), where results go
(``spec.output_layout``: a result path the job could not write fails it here, before anything
is fetched or created), inputs, the network lease of the http gateway, the prebuilt
environment of ``depcache`` (built first by a separate install container when missing) →
create the container, place result folders and inputs. Leaving it removes the container
(shielded: cancellation cannot skip it; bounded by ``remove_timeout``, see ``removal``) and
releases the lease.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from shoal.executor import failures
from shoal.executor.addresses import DestinationPolicy, NodeAddresses
from shoal.executor.engine import ExitInfo, Gate, Outputs, Overrun, Stream
from shoal.executor.engines.docker.depcache import DepCache, InstallRequest, Prebuilt
from shoal.executor.engines.docker.gateway import HttpGateway, Lease
from shoal.executor.engines.docker.inputs import (
    Placement,
    place_dirs,
    place_roots,
    prepare_inputs,
    top_level,
)
from shoal.executor.engines.docker.orphans import reap_orphans
from shoal.executor.engines.docker.outputs import collect
from shoal.executor.engines.docker.removal import Leftovers
from shoal.executor.engines.docker.runner import (
    ENGINE_GONE,
    ContainerRunner,
    ImageInfo,
    RunnerError,
)
from shoal.executor.engines.docker.spec import (
    ALWAYS_VOLUMES,
    SpecInputs,
    check_image,
    container_spec,
    docker_params,
    job_user,
    network_type,
    numeric_uid,
    output_layout,
    uses_dep_cache,
)
from shoal.executor.engines.docker.volumes import watch
from shoal.executor.failures import JobError
from shoal.executor.limits import Limits
from shoal.executor.settings import ExecutorSettings, PullPolicy
from shoal.executor.shielded import uncancellable
from shoal.images import runtime_images
from shoal.liveness import Alive
from shoal.model import Job, NetworkType

ENGINE_GONE_WITHIN = 30.0
"""Seconds an engine that killed a job's container gets to go away (stop or restart) for the
job to fail as its engine's failure: an engine stopping kills its containers first, each
within its stop timeout (10 s by default), and exits after the last."""


@dataclass
class ContainerWorkload:
    """A created container, driven through the runner."""

    runner: ContainerRunner
    container: str
    settings: ExecutorSettings
    job: Job
    started: float = 0.0
    """When it was started (a Unix time)."""

    async def start(self) -> None:
        self.started = time.time()
        await self.runner.start(self.container)

    def logs(self) -> AsyncIterator[tuple[Stream, bytes]]:
        return self.runner.logs(self.container)

    async def wait(self) -> ExitInfo:
        return await self.runner.wait(self.container)

    async def kill(self, signal: str) -> None:
        await self.runner.kill(self.container, signal)

    async def overrun(self) -> Overrun:
        limit = self.settings.volume_limit
        await watch(self.runner, self.container, limit, self.settings.volume_check_seconds)
        return Overrun(limit)

    async def stopped_by_engine(self) -> str | None:
        stopped = await self.runner.stopped_by_engine(
            self.container, self.started, ENGINE_GONE_WITHIN
        )
        return ENGINE_GONE if stopped else None

    async def collect(self) -> Outputs:
        return await collect(
            self.runner, self.container, self.job.task.outputs, self.settings.job_output_limit
        )


@dataclass
class DockerEngine:
    """Jobs of engine type ``docker``, in containers of ``runner``."""

    settings: ExecutorSettings
    runner: ContainerRunner
    gateway: HttpGateway
    executor_id: str
    addresses: NodeAddresses = field(default_factory=NodeAddresses)
    """The node's own addresses, shared with the proxy (refreshed by the service)."""
    name: str = "docker"
    depcache: DepCache = field(init=False)
    leftovers: Leftovers = field(init=False)
    """Removes job containers with a deadline, retrying the ones left behind."""

    def __post_init__(self) -> None:
        self.depcache = DepCache(self.runner, self.settings, self.executor_id)
        self.leftovers = Leftovers(self.runner, deadline=self.settings.remove_timeout)

    def destinations(self) -> DestinationPolicy:
        """Where this node's jobs may connect (url inputs; the proxy has its own)."""
        return DestinationPolicy(
            self.addresses,
            allow_private=self.settings.allow_private_addresses,
            allowed_ports=self.settings.allowed_ports,
        )

    def admit(self, job: Job) -> None:
        check_image(docker_params(job).image, self.settings)
        network_type(job.task, self.settings)

    def describe(self, job: Job) -> str:
        return str(job.task.engine.params.get("image", ""))

    @asynccontextmanager
    async def workload(
        self, job: Job, limits: Limits, gate: Gate
    ) -> AsyncIterator[ContainerWorkload]:
        settings = self.settings
        params = docker_params(job)
        image = await self.runner.image(params.image, settings.pull_policy)
        user = job_user(image, settings)
        input_roots = list(dict.fromkeys(top_level(item.target) for item in job.task.inputs))
        layout = output_layout(job.task, input_roots, user)
        uid = numeric_uid(user)
        placements = await prepare_inputs(job.task.inputs, settings, uid, self.destinations())
        mounted = [*ALWAYS_VOLUMES, *input_roots, *layout.volumes]
        folders = place_roots(mounted, uid) if uid else []
        folders += place_dirs(layout.dirs, mounted, uid)
        lease: Lease | None = None
        try:
            kind = network_type(job.task, settings)
            if kind is NetworkType.HTTP:
                domains = list(job.task.network.domains) if job.task.network else []
                lease = await self.gateway.lease(job.id, domains)
            full = kind is NetworkType.FULL
            network = lease.network if lease else ("bridge" if full else "none")
            network_env = lease.env if lease else {}
            prebuilt = await self._environment(
                job, image, placements, (network, network_env), limits, gate
            )
            spec = container_spec(
                job,
                settings,
                SpecInputs(
                    executor_id=self.executor_id,
                    image=image,
                    limits=limits,
                    input_roots=input_roots,
                    output_volumes=layout.volumes,
                    network=network,
                    network_env=network_env,
                    env_volume=prebuilt.volume if prebuilt else None,
                ),
            )
            container = await self.runner.create(spec)
            try:
                placed = [(p, failures.OUTPUT_NOT_WRITABLE) for p in folders]
                if prebuilt is not None and prebuilt.log is not None:
                    log_tar = Placement("/outputs", prebuilt.log, "the install log")
                    placed.append((log_tar, failures.INTERNAL))
                placed += [(p, failures.INPUT_FAILED) for p in placements]
                for placement, category in placed:
                    try:
                        await self.runner.put_archive(container, placement.root, placement.tar)
                    except RunnerError as error:
                        raise JobError(category, f"{placement.what}: {error}") from None
                yield ContainerWorkload(self.runner, container, settings, job)
            finally:
                await uncancellable(self.leftovers.remove(container))
        finally:
            if lease is not None:
                await uncancellable(self.gateway.release(job.id))

    async def _environment(
        self,
        job: Job,
        image: ImageInfo,
        placements: list[Placement],
        network: tuple[str, dict[str, str]],
        limits: Limits,
        gate: Gate,
    ) -> Prebuilt | None:
        """The job's prebuilt environment, when its image gets them (``depcache``)."""
        params = docker_params(job)
        if not uses_dep_cache(params, self.settings):
            return None
        request = InstallRequest(
            job_id=job.id,
            image=params.image,
            info=image,
            code_tars=[p.tar for p in placements if p.root == "/code"],
            argv=list(params.parameters),
            env={**params.env, **job.task.env},
            network=network[0],
            network_env=network[1],
            limits=limits,
            gate=gate,
        )
        return await self.depcache.environment(request)

    async def held_images(self) -> list[str]:
        """The runtime images this node's Docker engine holds (never pulled here)."""
        held = []
        for image in sorted(runtime_images()):
            try:
                await self.runner.image(image, PullPolicy.NEVER)
            except JobError:
                continue
            held.append(image)
        return held

    async def clean_up(self, alive: Alive) -> None:
        """Reap the containers of this node's gone executors (``orphans``)."""
        await reap_orphans(
            self.runner, self.settings.node_id, alive, deadline=self.settings.remove_timeout
        )

    async def close(self) -> None:
        """Finish the pending removals, close the gateway, then the engine connection (each
        step runs even when the one before failed)."""
        try:
            await self.leftovers.close()
        finally:
            try:
                await self.gateway.close()
            finally:
                await self.runner.close()
