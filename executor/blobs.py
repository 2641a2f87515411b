"""Blob inputs (``shoal.blobs``) made inline before a job's inputs are placed.

:func:`materialise` turns each ``blob`` input of a task into the ``inline`` input it stands
for, so the engine places it as any inline archive. Blobs come from a :class:`BlobCache`: a
folder of files named by sha256, bounded in bytes (the least recently used are removed
first), shared safely by the executors of a node (files are written whole under a temporary
name, then renamed; a file whose bytes no longer match its name is fetched again). A blob
not cached is fetched once by hash, even for many jobs at once, through a :class:`BlobFetch`:
:class:`ApiBlobFetch` asks the requester (API op ``blob-get``, with the executor's account,
through ``shoal.fleet``).

A blob the requester does not hold, or that cannot be fetched, fails the job with
``input failed`` naming the blob.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import aiormq
from aio_pika import ExchangeType
from aio_pika.abc import AbstractRobustChannel
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from shoal.blobs import as_inline, digest
from shoal.errors import NotFoundError, ShoalError, UnavailableError, from_wire
from shoal.executor.failures import INPUT_FAILED, JobError
from shoal.executor.settings import ExecutorSettings
from shoal.model import InputSource
from shoal.names import BLOBS_KEY, DIRECT_REPLY_TO, FLEET_EXCHANGE
from shoal.wire import CONTENT_TYPE, ApiReply, ApiRequest, decode, encode


class BlobFetch(Protocol):
    """Where blobs missing from the cache come from."""

    async def __call__(self, sha256: str) -> bytes | None:
        """The blob ``sha256``; ``None`` when it is not held; ``ShoalError`` when the source
        cannot be asked."""
        ...


class BlobCache:
    """Blobs on disk under ``root``, at most ``limit`` bytes; the rest fetched."""

    def __init__(self, root: Path, limit: int, fetch: BlobFetch) -> None:
        self.root = root
        self.limit = limit
        self._fetch = fetch
        self._fetching: dict[str, asyncio.Future[bytes]] = {}
        self.fetched = 0
        """Blobs fetched by this cache (a cached one is not counted)."""

    async def get(self, sha256: str) -> bytes:
        """The blob ``sha256``; ``JobError`` when it is neither cached nor fetchable."""
        cached = await asyncio.to_thread(self._read, sha256)
        if cached is not None:
            return cached
        if sha256 in self._fetching:
            return await asyncio.shield(self._fetching[sha256])
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._fetching[sha256] = future
        try:
            data = await self._fetched(sha256)
            future.set_result(data)
            return data
        except JobError as error:
            future.set_exception(error)
            raise
        finally:
            del self._fetching[sha256]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning

    async def _fetched(self, sha256: str) -> bytes:
        what = f"blob sha256:{sha256}"
        try:
            data = await self._fetch(sha256)
        except ShoalError as error:
            raise JobError(INPUT_FAILED, f"{what}: cannot fetch it: {error}") from None
        if data is None:
            raise JobError(
                INPUT_FAILED,
                f"{what} is not held by the requester (removed, or never uploaded); "
                "submit the job again",
            )
        if digest(data) != sha256:
            raise JobError(INPUT_FAILED, f"{what}: the bytes fetched do not match the hash")
        self.fetched += 1
        await asyncio.to_thread(self._write, sha256, data)
        return data

    def _read(self, sha256: str) -> bytes | None:
        path = self.root / sha256
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if digest(data) != sha256:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used
        return data

    def _write(self, sha256: str, data: bytes) -> None:
        if len(data) > self.limit:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".{sha256}.{uuid.uuid4().hex}"
        temporary.write_bytes(data)
        temporary.replace(self.root / sha256)
        self._evict()

    def _evict(self) -> None:
        """Remove the least recently used blobs until the cache holds at most ``limit``."""
        entries = []
        for path in self.root.iterdir():
            with contextlib.suppress(OSError):
                if not path.name.startswith("."):
                    stat = path.stat()
                    entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.limit:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size


async def materialise(inputs: Sequence[InputSource], cache: BlobCache | None) -> list[InputSource]:
    """``inputs`` with every ``blob`` input replaced by the inline input it names."""
    placed: list[InputSource] = []
    for item in inputs:
        if item.source.type != "blob":
            placed.append(item)
            continue
        sha256 = str(item.source.params["sha256"])
        if cache is None:
            raise JobError(INPUT_FAILED, f"blob sha256:{sha256}: this executor cannot fetch blobs")
        data = await cache.get(sha256)
        source = as_inline(item.source.model_dump(), data)
        placed.append(InputSource.model_validate({**item.model_dump(), "source": source}))
    return placed


class ApiBlobFetch:
    """:class:`BlobFetch` through ``shoal.api`` (op ``blob-get``), reached through
    ``shoal.fleet`` (key ``blobs``: executors may publish there, not to ``shoal.requests``),
    on a robust channel with confirms, over direct reply-to, signed with the executor's
    broker account."""

    def __init__(self, channel: AbstractRobustChannel, timeout: float, account: str) -> None:
        self._channel = channel
        self._timeout = timeout
        self._account = account
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._counter = 0

    async def start(self) -> None:
        """Consume the direct reply-to queue, again whenever the channel is reopened."""
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _consume(self) -> None:
        raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        await raw.basic_consume(DIRECT_REPLY_TO, self._on_reply, no_ack=True)

    async def _on_reopen(self, _channel: Any) -> None:
        await self._consume()

    async def _on_reply(self, message: DeliveredMessage) -> None:
        future = self._waiting.get(message.header.properties.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def __call__(self, sha256: str) -> bytes | None:
        self._counter += 1
        correlation = f"blob-{self._counter}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        request = ApiRequest(op="blob-get", params={"sha256": sha256})
        properties = Basic.Properties(
            content_type=CONTENT_TYPE,
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation,
            user_id=self._account,
        )
        try:
            raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
            confirm = await raw.basic_publish(
                encode(request),
                exchange=FLEET_EXCHANGE,
                routing_key=BLOBS_KEY,
                properties=properties,
                mandatory=True,
            )
            if not isinstance(confirm, Basic.Ack):
                raise UnavailableError("no requester has declared shoal.api")
            answer = decode(await asyncio.wait_for(future, self._timeout), ApiReply)
        except TimeoutError:
            raise UnavailableError(f"no requester answered within {self._timeout:g}s") from None
        except (
            aiormq.exceptions.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as error:
            raise UnavailableError(f"the request failed: {error}") from None
        finally:
            self._waiting.pop(correlation, None)
        if answer.error is not None:
            failure = from_wire(answer.error.model_dump())
            if isinstance(failure, NotFoundError):
                return None
            raise failure
        return base64.b64decode(str(answer.result["data"]))


async def api_blobs(
    channel: AbstractRobustChannel, settings: ExecutorSettings, account: str
) -> BlobCache:
    """The blob cache of an executor, fetching through the API on ``channel`` (its own)."""
    await channel.declare_exchange(FLEET_EXCHANGE, ExchangeType.DIRECT, durable=True)
    fetch = ApiBlobFetch(channel, settings.blob_timeout, account)
    await fetch.start()
    return BlobCache(settings.blob_cache_dir, settings.blob_cache_bytes, fetch)
