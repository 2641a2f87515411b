"""A small asyncio HTTP proxy that lets each ``http`` job reach only its allowed domains.

Jobs authenticate with per-job credentials carried in their proxy URL
(``http://shoal:<token>@<gateway>:<port>``, sent as ``Proxy-Authorization: Basic``), so one
listening port serves every job and each request is checked against *that job's* list.

- ``CONNECT host:port`` (HTTPS, any TLS): tunnelled when ``host`` is allowed.
- ``GET http://host/...`` (plain HTTP): forwarded in origin form with ``Connection: close``.
- A host is allowed when it equals an allowed domain or is a subdomain of one
  (``pypi.org`` allows ``pypi.org`` and ``www.pypi.org``); IP addresses match exactly.
- The destination policy (``shoal.executor.addresses``) is applied after the allow-list: a port
  other than 80, 443 and the operator's is refused, and so is a host that is, or resolves to
  (any of its addresses), the node's own or a private address; the proxy connects to the
  address it checked.
- With an ``upstream`` proxy (``http://host:port``) connections are chained through it; the
  upstream resolves names, so only the port and IP literals are checked here.

Answers: ``407`` without valid credentials, ``403`` for a host not allowed, ``502`` when the
destination cannot be reached, ``400`` for a malformed request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from shoal.executor.addresses import DestinationPolicy, NodeAddresses, is_ip

log = structlog.get_logger("shoal.executor.engines.docker.proxy")

HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 15.0
USER = "shoal"


def host_allowed(host: str, domains: list[str]) -> bool:
    """Whether ``host`` is one of ``domains`` or a subdomain of one (IPs: exact)."""
    host = host.strip("[]").rstrip(".").lower()
    for domain in domains:
        domain = domain.strip().strip("[]").rstrip(".").lower().removeprefix("*.")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


@dataclass(frozen=True)
class _Grant:
    job_id: str
    domains: list[str]


class _Refused(Exception):  # noqa: N818 - an answer, not an error
    def __init__(self, status: str, message: str, extra: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class AllowListProxy:
    """The proxy server; ``grant`` a job its domains, ``revoke`` when it ends."""

    def __init__(
        self, *, policy: DestinationPolicy | None = None, upstream: str | None = None
    ) -> None:
        self._grants: dict[str, _Grant] = {}
        self._by_job: dict[str, str] = {}
        self._policy = policy or DestinationPolicy(NodeAddresses())
        self._upstream = urlsplit(upstream) if upstream else None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def grant(self, job_id: str, domains: list[str]) -> str:
        """A fresh secret for ``job_id`` that opens ``domains``."""
        self.revoke(job_id)
        token = secrets.token_urlsafe(24)
        self._grants[token] = _Grant(job_id=job_id, domains=list(domains))
        self._by_job[job_id] = token
        return token

    def revoke(self, job_id: str) -> None:
        """Close the job's access (idempotent)."""
        token = self._by_job.pop(job_id, None)
        if token is not None:
            self._grants.pop(token, None)

    async def start(self, host: str, port: int = 0) -> int:
        """Listen on ``host:port``; returns the port."""
        self._server = await asyncio.start_server(self._accept, host, port, limit=HEAD_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and cut open tunnels."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            method, target, lines = _parse(head)
            grant = self._authorise(lines)
            if method == "CONNECT":
                host, port = _split_host_port(target, 443)
                head_out = None
            else:
                url = urlsplit(target)
                if url.scheme != "http" or not url.hostname:
                    raise _Refused("400 Bad Request", "use an absolute http:// URL or CONNECT")
                host, port = url.hostname, url.port or 80
                head_out = _origin_request(method, lines, target, bool(self._upstream))
            if not host_allowed(host, grant.domains):
                log.info("proxy.denied", job_id=grant.job_id, host=host)
                raise _Refused("403 Forbidden", f"{host} is not in this job's allowed domains")
            self._check_port(grant, host, port)
            upstream_reader, upstream_writer = await self._open(host, port, head_out is None)
            if head_out is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream_writer.write(head_out)
            await _pipe(reader, writer, upstream_reader, upstream_writer)
        except _Refused as refusal:
            _answer(writer, refusal)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except (ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _authorise(self, lines: list[tuple[str, str]]) -> _Grant:
        for name, value in lines:
            if name.lower() == "proxy-authorization" and value.lower().startswith("basic "):
                try:
                    decoded = base64.b64decode(value[6:].strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    break
                grant = self._grants.get(decoded.partition(":")[2])
                if grant is not None:
                    return grant
        raise _Refused(
            "407 Proxy Authentication Required",
            "this proxy serves shoal jobs only",
            'Proxy-Authenticate: Basic realm="shoal"\r\n',
        )

    def _check_port(self, grant: _Grant, host: str, port: int) -> None:
        reason = self._policy.port_refusal(port)
        if reason is not None:
            log.info("proxy.denied", job_id=grant.job_id, host=host, port=port)
            raise _Refused("403 Forbidden", reason)

    async def _open(
        self, host: str, port: int, tunnel: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self._upstream is not None:
                    self._check_literal(host)
                    return await self._open_upstream(host, port, tunnel)
                address = await self._resolve(host, port)
                return await asyncio.open_connection(address, port)
        except _Refused:
            raise
        except (OSError, TimeoutError) as error:
            raise _Refused("502 Bad Gateway", f"cannot reach {host}:{port}: {error}") from None

    def _check_literal(self, host: str) -> None:
        if is_ip(host):
            reason = self._policy.address_refusal(host.strip("[]"))
            if reason is not None:
                raise _Refused("403 Forbidden", reason)

    async def _resolve(self, host: str, port: int) -> str:
        """One address of ``host`` after checking every address it resolves to."""
        self._check_literal(host)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise OSError(f"{host} has no address")
        reason = self._policy.resolved_refusal(host, addresses)
        if reason is not None:
            raise _Refused("403 Forbidden", reason)
        return addresses[0]

    async def _open_upstream(
        self, host: str, port: int, tunnel: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self._upstream is not None
        reader, writer = await asyncio.open_connection(
            self._upstream.hostname, self._upstream.port or 3128
        )
        if tunnel:
            writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            answer = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in answer.split(b"\r\n", 1)[0]:
                writer.close()
                raise _Refused("502 Bad Gateway", f"upstream proxy refused {host}:{port}")
        return reader, writer


def _parse(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    text = head.decode("latin-1")
    request, *rest = text.split("\r\n")
    parts = request.split(" ")
    if len(parts) != 3:
        raise _Refused("400 Bad Request", "malformed request line")
    lines = []
    for line in rest:
        if line:
            name, _, value = line.partition(":")
            lines.append((name.strip(), value.strip()))
    return parts[0].upper(), parts[1], lines


def _split_host_port(target: str, default: int) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return target, default
    return host, int(port)


def _origin_request(
    method: str, lines: list[tuple[str, str]], target: str, absolute: bool
) -> bytes:
    parsed = urlsplit(target)
    path = (
        target if absolute else (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    )
    kept = [
        (name, value)
        for name, value in lines
        if not name.lower().startswith("proxy-")
        and name.lower() not in ("connection", "keep-alive")
    ]
    out = [f"{method} {path} HTTP/1.1", *(f"{n}: {v}" for n, v in kept), "Connection: close"]
    return ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")


def _answer(writer: asyncio.StreamWriter, refusal: _Refused) -> None:
    body = f"shoal proxy: {refusal.message}\n".encode()
    writer.write(
        f"HTTP/1.1 {refusal.status}\r\n{refusal.extra}Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


async def _pipe(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(64 * 1024):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if sink.can_write_eof():
                    sink.write_eof()

    try:
        await asyncio.gather(
            copy(client_reader, upstream_writer), copy(upstream_reader, client_writer)
        )
    finally:
        upstream_writer.close()
