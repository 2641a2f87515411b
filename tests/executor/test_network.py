"""Network modes on real Docker: none, http through the allow-list proxy, full."""

from __future__ import annotations

import pytest

from shoal.model import JobState
from shoal.wire import JobEvent

from .conftest import Broker, StartExecutor
from .support import docker_job

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
    await start_executor(allow_full_network=False)
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
