"""The HTTP gateway port: how an ``http`` job gets its network and proxy settings.

``network.DockerHttpGateway`` is the real one (internal Docker network, allow-list proxy,
iptables); :class:`MemoryGateway` records leases for the fast tests; :class:`NoGateway`
fails ``http`` jobs with the reason the real one could not be set up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from shoal.executor.failures import NETWORK_NOT_ALLOWED, JobError


@dataclass(frozen=True)
class Lease:
    """An ``http`` job's network name and the proxy variables it runs with."""

    network: str
    env: dict[str, str] = field(default_factory=dict)


class HttpGateway(Protocol):
    """Gives ``http`` jobs a network where only an allow-list proxy is reachable."""

    async def lease(self, job_id: str, domains: list[str]) -> Lease:
        """Open the proxy to ``domains`` for this job; ``JobError`` if impossible."""
        ...

    async def release(self, job_id: str) -> None:
        """Close the job's access (idempotent)."""
        ...

    async def close(self) -> None:
        """Stop the proxy and remove this executor's rules."""
        ...


def proxy_env(url: str) -> dict[str, str]:
    """The variables that send a job's HTTP(S) traffic through ``url``."""
    env = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": "localhost,127.0.0.1"}
    return env | {key.lower(): value for key, value in env.items()}


class NoGateway:
    """Fails every ``http`` job: the node could not set up its gateway."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def lease(self, job_id: str, domains: list[str]) -> Lease:
        raise JobError(NETWORK_NOT_ALLOWED, f"http network unavailable here: {self.reason}")

    async def release(self, job_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryGateway:
    """Leases recorded in a dict; the proxy URL is fake."""

    def __init__(self) -> None:
        self.leases: dict[str, list[str]] = {}
        self.released: list[str] = []

    async def lease(self, job_id: str, domains: list[str]) -> Lease:
        self.leases[job_id] = list(domains)
        return Lease(network="shoal-test", env=proxy_env(f"http://{job_id}@proxy.invalid:3128"))

    async def release(self, job_id: str) -> None:
        self.released.append(job_id)

    async def close(self) -> None:
        return None
