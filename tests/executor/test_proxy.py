"""The allow-list proxy on loopback: credentials, allow-list, private addresses, CONNECT."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from executor.addresses import is_internal
from executor.proxy import AllowListProxy, host_allowed

from .support import http_server

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


async def started(allow_private: bool) -> tuple[AllowListProxy, int]:
    proxy = AllowListProxy(allow_private=allow_private)
    return proxy, await proxy.start("127.0.0.1", 0)


async def fetch(url: str, proxy_url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, proxy=proxy_url) as response,
    ):
        return response.status, await response.text()


async def test_plain_http_allowed_denied_and_credentials(origin: int) -> None:
    proxy, port = await started(allow_private=True)
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
    proxy, port = await started(allow_private=False)
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


async def test_connect_tunnel(origin: int) -> None:
    proxy, port = await started(allow_private=True)
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
