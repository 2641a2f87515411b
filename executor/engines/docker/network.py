"""The real HTTP gateway: an internal Docker network, the allow-list proxy, two iptables rules.

``http`` jobs join the ``--internal`` network ``http_network`` (no route out, inter-container
traffic off). A container there still reaches every host address, so two ``INPUT`` rules on
the network's bridge (``br-<id[:12]>``) leave it the proxy and nothing else::

    -A INPUT -i br-… -p tcp --dport <proxy port> -j ACCEPT   (one per executor on the node)
    -A INPUT -i br-… -j REJECT                              (shared, inserted once)

Both are inserted at the top of ``INPUT`` (ACCEPT above REJECT). An ACCEPT rule's comment is
``shoal-proxy:<node id> <executor id>``. An executor removes its own at shutdown, and at start
(then every ``reap_every`` seconds, :class:`ProxyRules`) the stale ones of its node left by a
killed process: those whose executor is gone (asked of the broker, see
``shoal.executor.service``) or that name none (older executors), with
:func:`remove_proxy_rules` (which the tests use too). The REJECT rule stays (it only concerns
the internal network).
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from typing import Any

import aiodocker
import structlog

from shoal.executor.addresses import DestinationPolicy, NodeAddresses
from shoal.executor.engines.docker.gateway import HttpGateway, Lease, NoGateway, proxy_env
from shoal.executor.engines.docker.proxy import USER, AllowListProxy
from shoal.executor.settings import ExecutorSettings
from shoal.liveness import Alive

log = structlog.get_logger("shoal.executor.engines.docker.network")

REJECT_COMMENT = "shoal-http-reject"
ACCEPT_PREFIX = "shoal-proxy:"


class GatewayError(Exception):
    """The HTTP gateway cannot be set up on this node."""


async def iptables(*args: str) -> tuple[int, str]:
    """Run ``iptables -w ARGS``; returns the exit code and its output."""
    try:
        process = await asyncio.create_subprocess_exec(
            "iptables",
            "-w",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as error:
        raise GatewayError(f"cannot run iptables: {error}") from None
    output, _ = await process.communicate()
    return int(process.returncode or 0), output.decode(errors="replace")


async def _ensure_rule(rule: list[str]) -> None:
    code, _ = await iptables("-C", "INPUT", *rule)
    if code == 0:
        return
    code, output = await iptables("-I", "INPUT", "1", *rule)
    if code != 0:
        raise GatewayError(f"iptables refused a rule: {output.strip()}")


async def _delete_rules(comment: str) -> None:
    code, listing = await iptables("-S", "INPUT")
    if code != 0:
        raise GatewayError(f"cannot list iptables rules: {listing.strip()}")
    for line in listing.splitlines():
        words = shlex.split(line)
        if words[:2] == ["-A", "INPUT"] and comment in words:
            await iptables("-D", *words[1:])


async def remove_proxy_rules(node_id: str, alive: Alive | None = None) -> list[str]:
    """Delete the ``INPUT`` rules that let http jobs reach the proxies of ``node_id``'s
    executors that are gone (``alive`` says so, or the rule names no executor); without
    ``alive``, of all of them. Returns the rules deleted, as ``iptables -S`` lists them;
    ``GatewayError`` when the rules cannot be listed."""
    code, listing = await iptables("-S", "INPUT")
    if code != 0:
        raise GatewayError(f"cannot list iptables rules: {listing.strip()}")
    removed = []
    for line in listing.splitlines():
        words = shlex.split(line)
        tags = [w[len(ACCEPT_PREFIX) :] for w in words if w.startswith(ACCEPT_PREFIX)]
        if words[:2] != ["-A", "INPUT"] or not tags:
            continue
        node, _, owner = tags[0].partition(" ")
        if node != node_id or (owner and alive is not None and await alive(owner)):
            continue
        await iptables("-D", *words[1:])
        removed.append(line)
    return removed


@dataclass(frozen=True)
class ProxyRules:
    """The proxy rules of ``node_id``'s gone executors, reaped by the running executors too
    (``shoal.executor.reaping``)."""

    node_id: str
    name: str = "proxy rules"

    async def clean_up(self, alive: Alive) -> None:
        """Delete the rules of the node's executors that ``alive`` says are gone."""
        removed = await remove_proxy_rules(self.node_id, alive)
        if removed:
            log.info("gateway.rules_reaped", rules=removed)


async def ensure_network(docker: aiodocker.Docker, name: str) -> dict[str, Any]:
    """The internal network ``name`` (created if missing), as ``docker network inspect``."""
    try:
        network = await docker.networks.get(name)
    except aiodocker.DockerError as error:
        if error.status != 404:
            raise
        try:
            network = await docker.networks.create(
                {
                    "Name": name,
                    "Driver": "bridge",
                    "Internal": True,
                    "Options": {"com.docker.network.bridge.enable_icc": "false"},
                    "Labels": {"shoal.network": "http"},
                }
            )
        except aiodocker.DockerError as race:
            if race.status != 409:
                raise
            network = await docker.networks.get(name)
    info: dict[str, Any] = await network.show()
    if not info.get("Internal"):
        raise GatewayError(f"docker network {name} exists but is not --internal")
    return info


class DockerHttpGateway:
    """Leases on the internal network through this executor's proxy."""

    def __init__(
        self, proxy: AllowListProxy, network: str, address: str, port: int, comment: str
    ) -> None:
        self._proxy = proxy
        self._network = network
        self._address = address
        self._port = port
        self._comment = comment

    @property
    def port(self) -> int:
        """The proxy's port."""
        return self._port

    @property
    def address(self) -> str:
        """The proxy's address: the internal network's gateway."""
        return self._address

    @classmethod
    async def start(
        cls,
        docker: aiodocker.Docker,
        settings: ExecutorSettings,
        executor_id: str,
        alive: Alive,
        addresses: NodeAddresses,
    ) -> HttpGateway:
        """Set everything up; on failure a ``NoGateway`` that fails http jobs with the reason.

        The proxy refuses ``addresses`` (the node's own, kept fresh by the caller)."""
        try:
            return await cls._start(docker, settings, executor_id, alive, addresses)
        except (GatewayError, aiodocker.DockerError, OSError) as error:
            log.error("gateway.unavailable", error=str(error))
            return NoGateway(str(error))

    @classmethod
    async def _start(
        cls,
        docker: aiodocker.Docker,
        settings: ExecutorSettings,
        executor_id: str,
        alive: Alive,
        addresses: NodeAddresses,
    ) -> HttpGateway:
        info = await ensure_network(docker, settings.http_network)
        configs = (info.get("IPAM") or {}).get("Config") or []
        gateway = next((c["Gateway"] for c in configs if c.get("Gateway")), None)
        if not gateway:
            raise GatewayError(f"docker network {settings.http_network} has no gateway address")
        options = info.get("Options") or {}
        bridge = options.get("com.docker.network.bridge.name") or f"br-{info['Id'][:12]}"
        policy = DestinationPolicy(
            addresses,
            allow_private=settings.allow_private_addresses,
            allowed_ports=settings.allowed_ports,
        )
        proxy = AllowListProxy(policy=policy, upstream=settings.upstream_proxy)
        port = await proxy.start(gateway, settings.proxy_port)
        comment = f"{ACCEPT_PREFIX}{settings.node_id} {executor_id}"
        try:
            await remove_proxy_rules(settings.node_id, alive)
            await _ensure_rule(
                ["-i", bridge, "-m", "comment", "--comment", REJECT_COMMENT, "-j", "REJECT"]
            )
            accept = ["-i", bridge, "-p", "tcp", "--dport", str(port)]
            await _ensure_rule([*accept, "-m", "comment", "--comment", comment, "-j", "ACCEPT"])
        except GatewayError:
            await proxy.close()
            raise
        log.info("gateway.ready", network=settings.http_network, bridge=bridge, proxy=port)
        return cls(proxy, settings.http_network, gateway, port, comment)

    async def lease(self, job_id: str, domains: list[str]) -> Lease:
        token = self._proxy.grant(job_id, domains)
        url = f"http://{USER}:{token}@{self._address}:{self._port}"
        return Lease(network=self._network, env=proxy_env(url))

    async def release(self, job_id: str) -> None:
        self._proxy.revoke(job_id)

    async def close(self) -> None:
        try:
            await _delete_rules(self._comment)
        except GatewayError as error:
            log.warning("gateway.rules_left", error=str(error))
        await self._proxy.close()
