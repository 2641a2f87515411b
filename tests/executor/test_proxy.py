"""The allow-list proxy on loopback: credentials, allow-list, private and node addresses, ports,
CONNECT."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from shoal.executor.addresses import DestinationPolicy, NodeAddresses, docker_networks, is_internal
from shoal.executor.engines.docker.proxy import AllowListProxy, host_allowed

from .support import http_server, node_address

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(
    ("host", "domains", "expected"),
    [
        ("pypi.org", ["pypi.org"], True),
        ("files.pypi.org", ["pypi.org"], True),
        ("PyPI.org.", ["pypi.org"], True),
        ("evilpypi.org", ["pypi.org"], False),
        ("pypi.org.evil.com", ["pypi.org"], False),
        ("a.example.com", ["*.example.com"], True),
        ("10.0.0.1", ["10.0.0.1"], True),
        ("10.0.0.2", ["10.0.0.1"], False),
        ("anything", [], False),
    ],
)
def test_host_allowed(host: str, domains: list[str], expected: bool) -> None:
    assert host_allowed(host, domains) is expected


@pytest.fixture
async def origin() -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        assert "Proxy-Authorization" not in request.headers
        return web.Response(text=f"hello {request.path}")

    async with http_server(hello, "127.0.0.1") as port:
        yield port


async def started(
    allow_private: bool, ports: tuple[int, ...] = (), node: NodeAddresses | None = None
) -> tuple[AllowListProxy, int]:
    policy = DestinationPolicy(
        node or NodeAddresses(), allow_private=allow_private, allowed_ports=ports
    )
    proxy = AllowListProxy(policy=policy)
    return proxy, await proxy.start("127.0.0.1", 0)


@pytest.fixture
async def node_origin() -> AsyncIterator[int]:
    """A host service on every address: what a job must not reach through the proxy."""

    async def secret(request: web.Request) -> web.Response:
        return web.Response(text="host secret")

    async with http_server(secret, "0.0.0.0") as port:
        yield port


async def connect_through(port: int, token: str, target: str) -> bytes:
    """The proxy's answer head to ``CONNECT target``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = base64.b64encode(f"shoal:{token}".encode()).decode()
    writer.write(f"CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return head


async def fetch(url: str, proxy_url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, proxy=proxy_url) as response,
    ):
        return response.status, await response.text()


async def test_plain_http_allowed_denied_and_credentials(origin: int) -> None:
    proxy, port = await started(allow_private=True, ports=(origin,))
    try:
        token = proxy.grant("j-1", ["127.0.0.1"])
        url = f"http://127.0.0.1:{origin}/x?y=1"
        assert await fetch(url, f"http://shoal:{token}@127.0.0.1:{port}") == (200, "hello /x")
        status, _ = await fetch(url, f"http://shoal:wrong@127.0.0.1:{port}")
        assert status == 407
        other = proxy.grant("j-2", ["example.org"])
        status, body = await fetch(url, f"http://shoal:{other}@127.0.0.1:{port}")
        assert status == 403
        assert "not in this job's allowed domains" in body
        proxy.revoke("j-1")
        status, _ = await fetch(url, f"http://shoal:{token}@127.0.0.1:{port}")
        assert status == 407
    finally:
        await proxy.close()


async def test_private_destination_refused_by_default(origin: int) -> None:
    proxy, port = await started(allow_private=False, ports=(origin,))
    try:
        token = proxy.grant("j-1", ["127.0.0.1", "localhost"])
        for host in ("127.0.0.1", "localhost"):
            status, body = await fetch(
                f"http://{host}:{origin}/", f"http://shoal:{token}@127.0.0.1:{port}"
            )
            assert status == 403
            assert "private address" in body
    finally:
        await proxy.close()


async def test_node_address_refused_for_get_and_connect(node_origin: int) -> None:
    """The attack: ``--domain <the node's eth0 address>`` reached a host service."""
    address = node_address()
    proxy, port = await started(allow_private=False, ports=(node_origin,))
    try:
        token = proxy.grant("j-1", [address])
        proxy_url = f"http://shoal:{token}@127.0.0.1:{port}"
        status, body = await fetch(f"http://{address}:{node_origin}/", proxy_url)
        assert (status, body.strip()) == (
            403,
            f"shoal proxy: {address} is an address of this node (refused)",
        )
        head = await connect_through(port, token, f"{address}:{node_origin}")
        assert head.startswith(b"HTTP/1.1 403")
        assert b"address of this node" in head
    finally:
        await proxy.close()


async def test_docker_network_gateway_refused_whatever_its_range(node_origin: int) -> None:
    """The attack: the http network on 203.0.113.0/24; ``--domain 203.0.113.1`` (its gateway,
    an address of the node outside the private ranges) reached a host service."""
    node = NodeAddresses(networks=_networks_on("203.0.113.0/24", "203.0.113.1"))
    await node.refresh()
    proxy, port = await started(allow_private=False, ports=(80, node_origin), node=node)
    try:
        token = proxy.grant("j-1", ["203.0.113.1", "203.0.113.9"])
        proxy_url = f"http://shoal:{token}@127.0.0.1:{port}"
        for address in ("203.0.113.1", "203.0.113.9"):
            status, body = await fetch(f"http://{address}:{node_origin}/", proxy_url)
            assert status == 403
            assert "address of this node" in body
            head = await connect_through(port, token, f"{address}:443")
            assert head.startswith(b"HTTP/1.1 403")
    finally:
        await proxy.close()


def _networks_on(subnet: str, gateway: str) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    async def networks() -> list[dict[str, Any]]:
        return [
            {"Name": "shoal-http", "IPAM": {"Config": [{"Subnet": subnet, "Gateway": gateway}]}}
        ]

    return networks


async def test_ports_other_than_80_and_443_refused_unless_allowed(origin: int) -> None:
    proxy, port = await started(allow_private=True)
    try:
        token = proxy.grant("j-1", ["127.0.0.1"])
        status, body = await fetch(
            f"http://127.0.0.1:{origin}/", f"http://shoal:{token}@127.0.0.1:{port}"
        )
        assert status == 403
        assert f"port {origin} is not open to jobs" in body
        for target in (f"127.0.0.1:{origin}", "127.0.0.1:22"):
            head = await connect_through(port, token, target)
            assert head.startswith(b"HTTP/1.1 403")
            assert b"is not open to jobs" in head
    finally:
        await proxy.close()


def test_docker_networks_subnets_and_gateways() -> None:
    found = docker_networks(
        [
            {"IPAM": {"Config": [{"Subnet": "203.0.113.0/24", "Gateway": "203.0.113.1"}]}},
            {"IPAM": {"Config": [{"Subnet": "fd12::/64"}]}},
            {"IPAM": {"Config": None}},
            {"IPAM": {"Config": [{"Subnet": "not an address"}]}},
        ]
    )
    assert {str(n) for n in found} == {"203.0.113.0/24", "203.0.113.1/32", "fd12::/64"}


async def test_connect_tunnel(origin: int) -> None:
    proxy, port = await started(allow_private=True, ports=(origin,))
    try:
        token = proxy.grant("j-1", ["127.0.0.1"])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        auth = base64.b64encode(f"shoal:{token}".encode()).decode()
        request = f"CONNECT 127.0.0.1:{origin} HTTP/1.1\r\nProxy-Authorization: Basic {auth}"
        writer.write((request + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        writer.write(b"GET /tunnel HTTP/1.0\r\nHost: x\r\n\r\n")
        body = await asyncio.wait_for(reader.read(), 10)
        assert body.endswith(b"hello /tunnel")
        writer.close()
    finally:
        await proxy.close()


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True),
        ("172.17.0.1", True),
        ("10.1.2.3", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("fd00::1", True),
        ("151.101.0.223", False),
        ("203.0.113.80", False),  # TLS-intercepting networks resolve public names here
    ],
)
def test_internal_addresses(address: str, internal: bool) -> None:
    assert is_internal(address) is internal


def test_a_name_is_refused_when_any_of_its_addresses_is() -> None:
    """A name resolving to a public and a node address must not be let through (the proxy
    would connect to the first, a rebinding resolver could make it the other)."""
    node = NodeAddresses(networks=_networks_on("203.0.113.0/24", "203.0.113.1"))
    asyncio.run(node.refresh())
    policy = DestinationPolicy(node)
    assert policy.resolved_refusal("ok.example", ["198.51.100.7"]) is None
    assert policy.resolved_refusal("evil.example", ["198.51.100.7", "203.0.113.1"]) == (
        "evil.example resolves to 203.0.113.1, an address of this node (refused)"
    )
    assert policy.resolved_refusal("evil.example", ["::ffff:10.0.0.1"]) == (
        "evil.example resolves to ::ffff:10.0.0.1, a private address (refused)"
    )
    opened = DestinationPolicy(node, allow_private=True)
    assert opened.resolved_refusal("dev.example", ["203.0.113.1", "10.0.0.1"]) is None
