"""Inputs as tar archives placed with ``put_archive`` before the container starts.

Each input becomes a :class:`Placement`: a top-level folder of the container (mounted as an
anonymous volume, because the root is read-only) and a tar whose member names are relative to
it. A file input is written *at* its target, so it needs a parent folder (``/data.csv`` is
refused, ``/inputs/data.csv`` works); a folder input is placed *under* its target.

- ``inline``: the archive carried in the message (``shoal.inline``), ``params.kind`` file/dir.
  Unpacked as a stream, member by member, and refused as soon as it passes ``input_limit``
  (a decompression bomb costs at most about that much memory, never its unpacked size).
- ``url``: downloaded by the executor (``input_limit`` bytes, ``url_timeout`` seconds, at most
  5 redirects). Every hop goes through the destination policy (``shoal.executor.addresses``): a port
  other than 80, 443 and the operator's, or a host that is or resolves to (any of its
  addresses) the node's own or a private address, is refused, so a job cannot read the node's
  services; aiohttp connects to the addresses the resolver checked.
- ``local``: a file or folder on the node, only under ``allowed_local_dirs`` (after resolving
  links); links inside a folder are copied as links, never followed.

Every failure raises ``JobError(INPUT_FAILED, ...)`` naming the input.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
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

from shoal.bounded import BoundedGzip
from shoal.executor.addresses import DestinationPolicy, is_ip
from shoal.executor.failures import INPUT_FAILED, JobError
from shoal.executor.settings import ExecutorSettings
from shoal.model import InputSource
from shoal.units import format_bytes

MAX_REDIRECTS = 5
MiB = 1024**2


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


def place_roots(roots: list[str], uid: int) -> list[Placement]:
    """Each volume root in ``roots`` made owned by ``uid`` (mode 0755): a tar of one folder
    entry named ``/``, which Docker applies to the folder it extracts into (it skips ``.``)."""
    placements = []
    for root in roots:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.uid = info.gid = uid
            archive.addfile(info)
        placements.append(Placement(root=root, tar=buffer.getvalue(), what=f"folder {root}"))
    return placements


def _safe_member(name: str, what: str) -> str:
    normal = posixpath.normpath(name)
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise JobError(INPUT_FAILED, f"{what}: archive member {name!r} leaves its folder")
    return normal


def _inline_members(data: str, limit: int, what: str) -> Iterator[tuple[tarfile.TarInfo, Any]]:
    """Each member of an inline archive with a stream of its data, read once, in order.

    Decompression is counted as it happens: the archive stops being read as soon as its
    members' sizes or the decompressed bytes (headers included) pass the limit, so a small
    archive of huge members costs neither the memory nor the time of unpacking them.
    """
    too_big = JobError(INPUT_FAILED, f"{what} is larger than the limit of {format_bytes(limit)}")
    try:
        raw = base64.b64decode(data, validate=True)
        unpacked = BoundedGzip(gzip.GzipFile(fileobj=io.BytesIO(raw)), 2 * limit + MiB, too_big)
        with tarfile.open(fileobj=io.BufferedReader(unpacked, MiB), mode="r|") as archive:
            declared = 0
            for member in archive:
                declared += member.size if member.isfile() else 0
                if declared > limit:
                    raise too_big
                yield member, archive.extractfile(member) if member.isfile() else None
    except (ValueError, tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise JobError(INPUT_FAILED, f"{what}: cannot read its archive: {error}") from None


def place_inline(item: InputSource, uid: int, limit: int, what: str) -> Placement:
    """An inline input: one file at the target, or a folder's members under it.

    A folder input places only files, folders and symbolic links, never through a link
    placed before, and never replaces its target with anything but a folder.
    """
    params = item.source.params
    if params.get("kind", "dir") == "file":
        builder = _TarBuilder(_file_root(item.target, what), uid, limit, what)
        files = 0
        for member, handle in _inline_members(str(params["data"]), limit, what):
            if handle is not None:
                files += 1
                if files > 1:
                    break
                builder.add_file(item.target, handle, member.size, 0o644)
        if files != 1:
            raise JobError(INPUT_FAILED, f"{what}: a file input holds {files or 'no'} files")
        return builder.finish()
    builder = _TarBuilder(_checked_root(item.target, what), uid, limit, what)
    links: set[str] = set()
    for member, handle in _inline_members(str(params["data"]), limit, what):
        path = posixpath.normpath(posixpath.join(item.target, _safe_member(member.name, what)))
        if path == item.target and not member.isdir():
            raise JobError(INPUT_FAILED, f"{what}: archive member {member.name!r} is not a folder")
        _not_through_link(path, links, what)
        links.discard(path)
        if member.isdir():
            builder.add_dir(path, member.mode)
        elif handle is not None:
            builder.add_file(path, handle, member.size, member.mode)
        elif member.issym():
            builder.add_link(path, member.linkname)
            links.add(path)
        else:
            raise JobError(
                INPUT_FAILED,
                f"{what}: archive member {member.name!r} is not a file, folder or symbolic link",
            )
    return builder.finish()


def _not_through_link(path: str, links: set[str], what: str) -> None:
    parent = posixpath.dirname(path)
    while parent not in ("/", ""):
        if parent in links:
            raise JobError(
                INPUT_FAILED, f"{what}: archive member {path!r} would be written through a link"
            )
        parent = posixpath.dirname(parent)


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


class CheckedResolver(AbstractResolver):
    """Resolves names, refusing one with any address the policy refuses."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._inner = ThreadedResolver()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        reason = self._policy.resolved_refusal(host, [item["host"] for item in found])
        if reason is not None:
            raise OSError(reason)
        return found

    async def close(self) -> None:
        await self._inner.close()


def _is_localhost(host: str) -> bool:
    return host.lower().rstrip(".") in ("localhost", "localhost.localdomain")


def _check_destination(url: URL, policy: DestinationPolicy, what: str) -> None:
    host = url.host or ""
    port = url.explicit_port or (443 if url.scheme == "https" else 80)
    reason = policy.port_refusal(port)
    if reason is None and is_ip(host):
        reason = policy.address_refusal(host.strip("[]"))
    elif reason is None and not policy.allow_private and _is_localhost(host):
        reason = f"{host} is not reachable from jobs"
    if reason is not None:
        raise JobError(INPUT_FAILED, f"{what}: {reason}")


async def fetch_url(url: str, settings: ExecutorSettings, policy: DestinationPolicy) -> bytes:
    """The body at ``url``, within the size limit and timeout, following a few redirects.

    Each hop is checked by ``policy`` first; names are resolved by a resolver that checks
    every address (with an upstream proxy, the proxy resolves them)."""
    what = f"url input {url}"
    connector = aiohttp.TCPConnector(
        resolver=None if settings.upstream_proxy else CheckedResolver(policy),
        use_dns_cache=False,
    )
    timeout = aiohttp.ClientTimeout(total=settings.url_timeout)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=True
        ) as session:
            current = URL(url)
            for _ in range(MAX_REDIRECTS + 1):
                _check_destination(current, policy, what)
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
    inputs: list[InputSource], settings: ExecutorSettings, uid: int, policy: DestinationPolicy
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
            data = await fetch_url(str(params["url"]), settings, policy)
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
