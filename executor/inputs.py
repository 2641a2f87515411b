"""Inputs as tar archives placed with ``put_archive`` before the container starts.

Each input becomes a :class:`Placement`: a top-level folder of the container (mounted as an
anonymous volume, because the root is read-only) and a tar whose member names are relative to
it. A file input is written *at* its target, so it needs a parent folder (``/data.csv`` is
refused, ``/inputs/data.csv`` works); a folder input is placed *under* its target.

- ``inline``: the archive carried in the message (``shoal.inline``), ``params.kind`` file/dir.
- ``url``: downloaded by the executor (``input_limit`` bytes, ``url_timeout`` seconds, at most
  5 redirects). Unless ``allow_private_addresses``, hosts that are or resolve to the node's own or
  local-network addresses (``executor.addresses``) are refused: a job cannot read those services.
- ``local``: a file or folder on the node, only under ``allowed_local_dirs`` (after resolving
  links); links inside a folder are copied as links, never followed.

Every failure raises ``JobError(INPUT_FAILED, ...)`` naming the input.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import posixpath
import socket
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from executor.addresses import is_internal
from executor.failures import INPUT_FAILED, JobError
from executor.settings import ExecutorSettings
from shoal.inline import open_inline
from shoal.model import InputSource
from shoal.units import format_bytes

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Placement:
    """A tar to extract at ``root``, a top-level folder that becomes a volume."""

    root: str
    tar: bytes
    what: str


def top_level(path: str) -> str:
    """``/inputs`` for ``/inputs/a/b``."""
    return "/" + path.strip("/").split("/")[0]


class _TarBuilder:
    """A tar relative to ``root`` with every parent folder created, owned by ``uid``."""

    def __init__(self, root: str, uid: int, limit: int, what: str) -> None:
        self.root = root
        self.uid = uid
        self.limit = limit
        self.what = what
        self.size = 0
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buffer, mode="w")  # noqa: SIM115 closed in finish
        self._dirs: set[str] = set()

    def _name(self, path: str) -> str:
        return posixpath.relpath(path, self.root)

    def _parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        if parent != self.root and parent.startswith(self.root + "/"):
            self.add_dir(parent)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        if path in self._dirs or path == self.root:
            return
        self._parents(path)
        info = tarfile.TarInfo(self._name(path))
        info.type = tarfile.DIRTYPE
        info.mode = mode | 0o700
        info.uid = info.gid = self.uid
        self._tar.addfile(info)
        self._dirs.add(path)

    def add_file(self, path: str, data: bytes | io.BufferedIOBase, size: int, mode: int) -> None:
        self.size += size
        if self.size > self.limit:
            raise JobError(
                INPUT_FAILED, f"{self.what} is larger than the limit of {format_bytes(self.limit)}"
            )
        self._parents(path)
        info = tarfile.TarInfo(self._name(path))
        info.size = size
        info.mode = (mode & 0o777) | 0o400
        info.uid = info.gid = self.uid
        self._tar.addfile(info, io.BytesIO(data) if isinstance(data, bytes) else data)

    def add_link(self, path: str, target: str) -> None:
        self._parents(path)
        info = tarfile.TarInfo(self._name(path))
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.uid = info.gid = self.uid
        self._tar.addfile(info)

    def finish(self) -> Placement:
        self._tar.close()
        return Placement(root=self.root, tar=self._buffer.getvalue(), what=self.what)


def _file_root(target: str, what: str) -> str:
    if posixpath.dirname(target) == "/":
        raise JobError(
            INPUT_FAILED,
            f"{what}: target {target} is directly under / (read-only); "
            "use a folder, e.g. /inputs" + target,
        )
    return _checked_root(target, what)


def _checked_root(target: str, what: str) -> str:
    root = top_level(target)
    if root in ("/", "/tmp"):
        raise JobError(INPUT_FAILED, f"{what}: cannot place files at {target}; use e.g. /inputs")
    return root


def place_file(target: str, data: bytes, uid: int, limit: int, what: str) -> Placement:
    """``data`` as the file ``target``."""
    builder = _TarBuilder(_file_root(target, what), uid, limit, what)
    builder.add_file(target, data, len(data), 0o644)
    return builder.finish()


def place_dirs(paths: tuple[str, ...], roots: list[str], uid: int) -> list[Placement]:
    """Empty folders ``paths`` (and their parents), each in the deepest of ``roots`` above it."""
    builders: dict[str, _TarBuilder] = {}
    for path in paths:
        root = max((r for r in roots if path.startswith(r.rstrip("/") + "/")), key=len)
        if root not in builders:
            builders[root] = _TarBuilder(root, uid, 0, f"output folders under {root}")
        builders[root].add_dir(path)
    return [builder.finish() for builder in builders.values()]


def _safe_member(name: str, what: str) -> str:
    normal = posixpath.normpath(name)
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise JobError(INPUT_FAILED, f"{what}: archive member {name!r} leaves its folder")
    return normal


def _inline_members(archive: tarfile.TarFile, limit: int, what: str) -> Iterator[tarfile.TarInfo]:
    """The members, read one header at a time: sizes are counted before any data is read,
    and the unpacked stream is bounded, so a gzip bomb is refused without being unpacked."""
    total = 0
    for member in archive:
        total += member.size if member.isfile() else 0
        if total > limit or archive.offset > 2 * limit + 1024**2:
            too_big = f"{what} is larger than the limit of {format_bytes(limit)}"
            raise JobError(INPUT_FAILED, too_big)
        if not (member.isfile() or member.isdir() or member.issym()):
            raise JobError(
                INPUT_FAILED,
                f"{what}: archive member {member.name!r} is not a file, folder or symbolic link",
            )
        yield member


def _not_through_link(path: str, links: set[str], what: str) -> None:
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        if parent in links:
            raise JobError(
                INPUT_FAILED, f"{what}: archive member {path!r} would be written through a link"
            )
        parent = posixpath.dirname(parent)


def _place_members(
    archive: tarfile.TarFile, item: InputSource, uid: int, limit: int, what: str
) -> Placement:
    if item.source.params.get("kind", "dir") == "file":
        files = [m for m in _inline_members(archive, limit, what) if m.isfile()]
        if len(files) != 1:
            raise JobError(INPUT_FAILED, f"{what}: a file input holds {len(files)} files")
        handle = archive.extractfile(files[0])
        return place_file(item.target, handle.read() if handle else b"", uid, limit, what)
    builder = _TarBuilder(_checked_root(item.target, what), uid, limit, what)
    links: set[str] = set()
    for member in _inline_members(archive, limit, what):
        name = _safe_member(member.name, what)
        path = posixpath.normpath(posixpath.join(item.target, name))
        if path == item.target and not member.isdir():
            raise JobError(INPUT_FAILED, f"{what}: archive member {member.name!r} is not a folder")
        _not_through_link(path, links, what)
        links.discard(path)
        if member.isdir():
            builder.add_dir(path, member.mode)
        elif member.isfile():
            handle = archive.extractfile(member)
            builder.add_file(path, handle.read() if handle else b"", member.size, member.mode)
        else:
            builder.add_link(path, member.linkname)
            links.add(path)
    return builder.finish()


def place_inline(item: InputSource, uid: int, limit: int, what: str) -> Placement:
    """An inline input: one file at the target, or a folder's members under it.

    Only files, folders and symbolic links are placed, never through a link placed before.
    """
    try:
        with open_inline(str(item.source.params["data"])) as archive:
            return _place_members(archive, item, uid, limit, what)
    except (ValueError, tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise JobError(INPUT_FAILED, f"{what}: cannot read its archive: {error}") from None


def place_local(item: InputSource, allowed: list[Path], uid: int, limit: int) -> Placement:
    """A file or folder of the node, if it lies under an allowed folder."""
    what = f"local input {item.source.params['path']}"
    raw = Path(str(item.source.params["path"]))
    if not raw.is_absolute():
        raise JobError(INPUT_FAILED, f"{what}: must be an absolute path")
    try:
        path = raw.resolve(strict=True)
    except (OSError, RuntimeError):
        raise JobError(INPUT_FAILED, f"{what}: no such file or folder on this node") from None
    roots = [a.resolve() for a in allowed]
    if not any(path == root or root in path.parents for root in roots):
        raise JobError(
            INPUT_FAILED,
            f"{what}: not under a folder this node allows (SHOAL_ALLOWED_LOCAL_DIRS)",
        )
    try:
        if path.is_file():
            return place_file(item.target, path.read_bytes(), uid, limit, what)
        builder = _TarBuilder(_checked_root(item.target, what), uid, limit, what)
        for entry in sorted(path.rglob("*")):
            dest = posixpath.join(item.target, entry.relative_to(path).as_posix())
            if entry.is_symlink():
                builder.add_link(dest, str(entry.readlink()))
            elif entry.is_dir():
                builder.add_dir(dest, entry.stat().st_mode)
            elif entry.is_file():
                stat = entry.stat()
                with entry.open("rb") as handle:
                    builder.add_file(dest, handle.read(), stat.st_size, stat.st_mode)
        return builder.finish()
    except OSError as error:
        raise JobError(INPUT_FAILED, f"{what}: cannot read it: {error}") from None


class PublicResolver(AbstractResolver):
    """Resolves names to public addresses only (url inputs must not reach the node)."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [item for item in found if not is_internal(item["host"])]
        if not public:
            raise OSError(f"{host} resolves only to loopback or private addresses (refused)")
        return public

    async def close(self) -> None:
        await self._inner.close()


def _check_literal(url: URL, what: str) -> None:
    host = url.host or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.lower() in ("localhost", "localhost.localdomain"):
            raise JobError(INPUT_FAILED, f"{what}: {host} is not reachable from jobs") from None
        return
    if is_internal(host):
        raise JobError(INPUT_FAILED, f"{what}: {host} is a private address (refused)")


async def fetch_url(url: str, settings: ExecutorSettings) -> bytes:
    """The body at ``url``, within the size limit and timeout, following a few redirects."""
    what = f"url input {url}"
    guard = not settings.allow_private_addresses
    connector = aiohttp.TCPConnector(
        resolver=PublicResolver() if guard and not settings.upstream_proxy else None
    )
    timeout = aiohttp.ClientTimeout(total=settings.url_timeout)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=True
        ) as session:
            current = URL(url)
            for _ in range(MAX_REDIRECTS + 1):
                if guard:
                    _check_literal(current, what)
                async with session.get(
                    current, allow_redirects=False, proxy=settings.upstream_proxy
                ) as response:
                    if response.status in (301, 302, 303, 307, 308) and "Location" in (
                        response.headers
                    ):
                        current = current.join(URL(response.headers["Location"]))
                        continue
                    if response.status != 200:
                        raise JobError(INPUT_FAILED, f"{what}: HTTP {response.status}")
                    return await _read_limited(response, settings.input_limit, what)
            raise JobError(INPUT_FAILED, f"{what}: more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise JobError(
            INPUT_FAILED, f"{what}: not downloaded within {settings.url_timeout:g}s"
        ) from None
    except (aiohttp.ClientError, OSError) as error:
        raise JobError(INPUT_FAILED, f"{what}: {error or type(error).__name__}") from None


async def _read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    too_big = JobError(INPUT_FAILED, f"{what}: larger than the limit of {format_bytes(limit)}")
    if response.content_length is not None and response.content_length > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(256 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def prepare_inputs(
    inputs: list[InputSource], settings: ExecutorSettings, uid: int
) -> list[Placement]:
    """Every input of a task as a placement, in order; ``JobError`` on the first bad one."""
    placements: list[Placement] = []
    for item in inputs:
        kind = item.source.type
        params: dict[str, Any] = item.source.params
        if kind == "inline":
            what = f"inline input {item.alias or item.target}"
            placement = await asyncio.to_thread(place_inline, item, uid, settings.input_limit, what)
        elif kind == "url":
            data = await fetch_url(str(params["url"]), settings)
            placement = place_file(
                item.target, data, uid, settings.input_limit, f"url input {params['url']}"
            )
        elif kind == "local":
            placement = await asyncio.to_thread(
                place_local, item, settings.allowed_local_dirs, uid, settings.input_limit
            )
        else:
            raise JobError(INPUT_FAILED, f"input {item.target}: unknown source type {kind!r}")
        placements.append(placement)
    return placements
