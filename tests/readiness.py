"""Probing a service's ``/livez`` and ``/readyz`` (``shoal.metrics``) from a test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from tests.client.cutting_proxy import CuttingProxy


def via_port(url: str, port: int) -> str:
    """``url`` (an ``amqp://`` URL) with its host and port made ``127.0.0.1:port``."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}"))


def upstream_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5672


async def probe(port: int, path: str) -> tuple[int, str]:
    """The status and body of ``GET path`` on the service's port."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}") as answer,
    ):
        return answer.status, await answer.text()


async def readyz_becomes(port: int, status: int, within: float = 15.0, saying: str = "") -> str:
    """Probe ``/readyz`` until it answers ``status`` with ``saying`` in its body (or fail
    after ``within`` seconds); returns that body."""
    last = (0, "")
    try:
        async with asyncio.timeout(within):
            while True:  # a probe is polled, as an orchestrator does
                last = await probe(port, "/readyz")
                if last[0] == status and saying in last[1]:
                    return last[1]
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"/readyz never answered {status} {saying!r} (last: {last})") from None


def port_in(path: Path) -> int:
    """The port a service wrote to its ``SHOAL_METRICS_PORT_FILE``."""
    return int(path.read_text())


async def reconnects(port: int) -> float:
    """``shoal_broker_reconnects_total`` as the service on ``port`` exports it."""
    status, text = await probe(port, "/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith("shoal_broker_reconnects_total "):
            return float(line.split()[1])
    raise AssertionError("no shoal_broker_reconnects_total in /metrics")


async def ready_through_an_outage(port: int, proxy: CuttingProxy) -> None:
    """The service on ``port``, reaching its broker through ``proxy``, is ready; not ready
    (its ``/livez`` still answering) while the proxy is down; ready again once it is back,
    having counted the reconnect."""
    assert await probe(port, "/readyz") == (200, "ready\n")
    before = await reconnects(port)
    proxy.go_down()
    assert "not connected to the broker" in await readyz_becomes(port, 503)
    assert await probe(port, "/livez") == (200, "ok\n")
    proxy.come_back()
    assert await readyz_becomes(port, 200) == "ready\n"
    assert await reconnects(port) > before
