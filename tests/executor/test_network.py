"""Network modes on real Docker: none, http through the allow-list proxy, full; the node's
own addresses refused."""

from __future__ import annotations

import contextlib
import ipaddress
import random
import uuid
from collections.abc import AsyncIterator

import aiodocker
import pytest

from shoal.executor.addresses import NodeAddresses
from shoal.executor.engines.docker.network import REJECT_COMMENT, iptables
from shoal.model import JobState
from shoal.wire import JobEvent

from .conftest import Broker, StartExecutor
from .support import docker_job, node_address

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq, pytest.mark.timeout(90)]

HOST = "172.17.0.1"
"""The host's address on Docker's default bridge: where host services are reachable."""

PROBE = r"""
import base64, os, socket, sys, urllib.parse, urllib.request
port = int(sys.argv[1])
proxy = urllib.parse.urlsplit(os.environ.get("HTTP_PROXY", "http://none:x@127.0.0.1:9"))

def attempt(name, action):
    try:
        print(name, "ok", action(), flush=True)
    except Exception as error:
        print(name, "fail", type(error).__name__, flush=True)

def get(url):
    return urllib.request.urlopen(url, timeout=10).read().decode().strip()

def connect(host, port):
    socket.create_connection((host, port), timeout=5).close()
    return "connected"

def tunnel():
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
    auth = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
    head = f"CONNECT {sys.argv[2]}:{port} HTTP/1.1\r\nProxy-Authorization: Basic {auth}"
    s.sendall((head + "\r\n\r\n").encode())
    status = s.recv(1024).split(b"\r\n")[0].decode()
    s.sendall(b"GET /t HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return status + " | " + data.split(b"\r\n\r\n", 1)[1].decode().strip()

attempt("allowed", lambda: get(f"http://{sys.argv[2]}:{port}/x"))
attempt("denied", lambda: get("http://example.invalid/"))
attempt("tunnel", tunnel)
attempt("direct", lambda: connect(sys.argv[2], port))
attempt("gateway", lambda: connect(proxy.hostname, port))
attempt("rabbitmq", lambda: connect(proxy.hostname, 5672))
"""


def results(events: list[JobEvent]) -> dict[str, str]:
    text = "".join(e.data for e in sorted(events, key=lambda e: e.seq) if e.stream == "stdout")
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in text.splitlines()}


async def test_none_http_and_full(
    broker: Broker, start_executor: StartExecutor, host_http_server: int
) -> None:
    await start_executor(allow_full_network=False, allowed_ports=[host_http_server])
    none = docker_job("", argv=["python3", "-c", PROBE, str(host_http_server), HOST])
    http = docker_job(
        "",
        argv=["python3", "-c", PROBE, str(host_http_server), HOST],
        network={"type": "http", "domains": [HOST]},
    )
    full = docker_job("true", network={"type": "full"})
    for job in (none, http, full):
        await broker.submit(job)

    assert (await broker.events.terminal(none.id)).state is JobState.COMPLETED
    seen = results(broker.events.of(none.id))
    assert all(value.startswith("fail") for value in seen.values()), seen

    assert (await broker.events.terminal(http.id)).state is JobState.COMPLETED
    seen = results(broker.events.of(http.id))
    assert seen["allowed"] == "ok hello from the host"
    assert seen["denied"] == "fail HTTPError"
    assert seen["tunnel"] == "ok HTTP/1.1 200 Connection established | hello from the host"
    assert seen["direct"].startswith("fail"), seen
    assert seen["gateway"] == "fail ConnectionRefusedError"
    assert seen["rabbitmq"] == "fail ConnectionRefusedError"

    refused = await broker.events.terminal(full.id)
    assert refused.state is JobState.FAILED
    assert refused.error is not None
    assert refused.error.startswith("network not allowed: ")


async def test_full_network_when_allowed(
    broker: Broker, start_executor: StartExecutor, host_http_server: int
) -> None:
    await start_executor(allow_full_network=True)
    job = docker_job(
        "", argv=["python3", "-c", PROBE, str(host_http_server), HOST], network={"type": "full"}
    )
    await broker.submit(job)
    assert (await broker.events.terminal(job.id)).state is JobState.COMPLETED
    assert results(broker.events.of(job.id))["direct"] == "ok connected"


ATTACK = r"""
import base64, os, socket, sys, urllib.error, urllib.parse, urllib.request
proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
auth = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
for target in sys.argv[1:]:
    try:
        urllib.request.urlopen(f"http://{target}/", timeout=10)
        print("GET", target, "reached", flush=True)
    except urllib.error.HTTPError as error:
        print("GET", target, error.code, error.read().decode().strip(), flush=True)
    s = socket.create_connection((proxy.hostname, proxy.port), timeout=10)
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
    print("CONNECT", target, s.recv(1024).split(b"\r\n")[0].decode(), flush=True)
"""


@contextlib.asynccontextmanager
async def public_range_http_network() -> AsyncIterator[tuple[str, str]]:
    """An internal Docker network on a public range (a /28 of 198.51.100.0/24, TEST-NET-2):
    its gateway is an address of this node outside every private range. Yields its name and
    gateway; removes it (and the REJECT rule the gateway set up for its bridge) afterwards."""
    docker = aiodocker.Docker()
    name = f"shoal-test-{uuid.uuid4().hex[:8]}"
    for block in random.sample(range(16), 16):
        subnet = ipaddress.ip_network(f"198.51.100.{block * 16}/28")
        gateway = str(next(subnet.hosts()))
        try:
            network = await docker.networks.create(
                {
                    "Name": name,
                    "Driver": "bridge",
                    "Internal": True,
                    "Options": {"com.docker.network.bridge.enable_icc": "false"},
                    "IPAM": {"Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
                }
            )
            break
        except aiodocker.DockerError as error:
            if "overlap" not in error.message:
                raise
    else:
        raise AssertionError("no free /28 in 198.51.100.0/24 for the test network")
    try:
        yield name, gateway
    finally:
        bridge = f"br-{network.id[:12]}"
        await iptables("-D", "INPUT", "-i", bridge, "-m", "comment", "--comment", REJECT_COMMENT,
                       "-j", "REJECT")  # fmt: skip
        await network.delete()
        await docker.close()


async def test_node_addresses_refused_whatever_their_range(
    broker: Broker, start_executor: StartExecutor, host_http_server: int
) -> None:
    """The attack: with the http network on a public range, ``--domain <its gateway>`` and
    ``--domain <the node's eth0 address>`` reached a host service through the proxy (GET and
    CONNECT), and a url input fetched from it; any port was let through."""
    port = host_http_server
    eth0 = node_address()
    async with public_range_http_network() as (network, gateway):
        running = await start_executor(
            allow_private_addresses=False, http_network=network, allowed_ports=[port]
        )
        try:
            targets = [f"{gateway}:{port}", f"{eth0}:{port}", f"{eth0}:5672"]
            attack = docker_job(
                "",
                argv=["python3", "-c", ATTACK, *targets],
                network={"type": "http", "domains": [gateway, eth0]},
            )
            fetch = docker_job(
                "true",
                inputs=[
                    {
                        "source": {"type": "url", "params": {"url": f"http://{eth0}:{port}/"}},
                        "target": "/inputs/x",
                    }
                ],
            )
            await broker.submit(attack)
            await broker.submit(fetch)
            assert (await broker.events.terminal(attack.id)).state is JobState.COMPLETED
            seen = stdout_lines(broker.events.of(attack.id))
            refused = await broker.events.terminal(fetch.id)
        finally:
            await running.stop()
    node = "is an address of this node (refused)"
    assert seen == [
        f"GET {gateway}:{port} 403 shoal proxy: {gateway} {node}",
        f"CONNECT {gateway}:{port} HTTP/1.1 403 Forbidden",
        f"GET {eth0}:{port} 403 shoal proxy: {eth0} {node}",
        f"CONNECT {eth0}:{port} HTTP/1.1 403 Forbidden",
        f"GET {eth0}:5672 403 shoal proxy: port 5672 is not open to jobs "
        "(80, 443 and SHOAL_ALLOWED_PORTS are)",
        f"CONNECT {eth0}:5672 HTTP/1.1 403 Forbidden",
    ]
    assert refused.error == f"input failed: url input http://{eth0}:{port}/: {eth0} {node}"


def stdout_lines(events: list[JobEvent]) -> list[str]:
    text = "".join(e.data for e in sorted(events, key=lambda e: e.seq) if e.stream == "stdout")
    return text.splitlines()


async def test_node_addresses_read_from_the_docker_engine() -> None:
    """Docker networks' whole subnets count as the node's, not only its interface addresses."""
    async with public_range_http_network() as (_, gateway):
        docker = aiodocker.Docker()
        try:
            addresses = NodeAddresses(docker.networks.list)
            await addresses.refresh()
        finally:
            await docker.close()
    inside = ipaddress.ip_address(gateway) + 5  # in the subnet, on no interface
    assert inside in addresses
    assert ipaddress.ip_address("172.17.0.1") in addresses
    assert ipaddress.ip_address("198.51.99.1") not in addresses
