"""Which destinations jobs may reach through the proxy and url inputs.

Refused, whatever the operator allows:

- the node's own addresses (:class:`NodeAddresses`): every address of every interface, and
  every Docker network's subnets and gateways, whatever their range (a Docker network on
  ``203.0.113.0/24`` is still the node). Read at start and refreshed every
  ``address_refresh`` seconds, so networks created later are refused too;
- ports other than 80 and 443, unless the operator allows them (``allowed_ports``).

Refused unless ``allow_private`` (a switch for development and tests whose services run on
the node): loopback, RFC 1918 private, shared (CGNAT), link-local, unspecified and multicast
addresses and their IPv6 counterparts (``INTERNAL_NETWORKS``). Turning it on opens the node's
own addresses too: such a service is reached through the node (its Docker bridge gateway), so
a switch that left them closed would not serve its purpose. Other special ranges are let
through on purpose: a TLS-intercepting network (like the one this project is developed on)
may resolve public names into them.

A name is refused when *any* address it resolves to is refused; callers connect to an address
they checked, never resolve again (no DNS rebinding between check and connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import psutil
import structlog

log = structlog.get_logger("shoal.executor.addresses")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

OPEN_PORTS = frozenset({80, 443})
"""Ports jobs may always reach (``allowed_ports`` adds more)."""

INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
)

NetworkSource = Callable[[], Awaitable[list[dict[str, Any]]]]
"""Lists the Docker engine's networks, as ``GET /networks`` answers."""


def parse_ip(address: str) -> IpAddress:
    """``address`` as an IP (zone index dropped, IPv4-mapped IPv6 as IPv4)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IP literal (brackets allowed)."""
    try:
        parse_ip(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_internal(address: str) -> bool:
    """Whether ``address`` (an IP literal) lies in a private, loopback or local range."""
    ip = parse_ip(address)
    return any(ip in net for net in INTERNAL_NETWORKS)


def interface_networks() -> set[IpNetwork]:
    """Every address of every interface of this host, each as a one-address network."""
    found: set[IpNetwork] = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(ValueError):
                    found.add(ipaddress.ip_network(parse_ip(entry.address)))
    return found


def docker_networks(networks: Iterable[dict[str, Any]]) -> set[IpNetwork]:
    """The subnets and gateways of ``networks`` (``GET /networks`` entries)."""
    found: set[IpNetwork] = set()
    for network in networks:
        for config in (network.get("IPAM") or {}).get("Config") or []:
            for key in ("Subnet", "Gateway", "IPRange"):
                with contextlib.suppress(ValueError, TypeError):
                    if config.get(key):
                        found.add(ipaddress.ip_network(config[key], strict=False))
    return found


class NodeAddresses:
    """The node's own addresses: its interfaces' and its Docker networks'."""

    def __init__(self, networks: NetworkSource | None = None) -> None:
        self._source = networks
        self._docker: set[IpNetwork] = set()
        self._own: frozenset[IpNetwork] = frozenset(interface_networks())

    @property
    def networks(self) -> frozenset[IpNetwork]:
        """The last snapshot."""
        return self._own

    async def refresh(self) -> None:
        """Read the interfaces and the Docker networks again (the last Docker list is kept
        when the engine does not answer)."""
        if self._source is not None:
            try:
                self._docker = docker_networks(await self._source())
            except Exception as error:  # keep the last list rather than open anything
                log.warning("addresses.docker_unreadable", error=str(error))
        self._own = frozenset(interface_networks() | self._docker)

    async def keep_fresh(self, interval: float) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    def __contains__(self, ip: IpAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._own)


class DestinationPolicy:
    """Decides whether a job may connect to an address and port (see the module docstring)."""

    def __init__(
        self,
        node: NodeAddresses,
        *,
        allow_private: bool = False,
        allowed_ports: Iterable[int] = (),
    ) -> None:
        self.node = node
        self.allow_private = allow_private
        self.ports = OPEN_PORTS | frozenset(allowed_ports)

    def port_refusal(self, port: int) -> str | None:
        """Why ``port`` is refused, or ``None``."""
        if port in self.ports:
            return None
        return f"port {port} is not open to jobs (80, 443 and SHOAL_ALLOWED_PORTS are)"

    def _kind(self, address: str) -> str | None:
        if self.allow_private:
            return None
        if is_internal(address):
            return "a private address"
        if parse_ip(address) in self.node:
            return "an address of this node"
        return None

    def address_refusal(self, address: str) -> str | None:
        """Why the IP ``address`` is refused, or ``None``."""
        kind = self._kind(address)
        return None if kind is None else f"{address} is {kind} (refused)"

    def resolved_refusal(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why ``host``, resolving to ``addresses``, is refused (any refused one), or ``None``."""
        for address in addresses:
            kind = self._kind(address)
            if kind is not None:
                return f"{host} resolves to {address}, {kind} (refused)"
        return None
