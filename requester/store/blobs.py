"""Where the requester keeps content-addressed blobs (``shoal.blobs``): the ``BlobStore``
port and its first adapter, the job store's database (table ``blobs``).

The rest of the requester (the API's ``blobs-missing``, ``blob-put`` and ``blob-get``, the
submission check that a job's blobs are held) sees only :class:`BlobStore`, so an object
store can be added as a second adapter without touching it. A blob is immutable: storing
one already held does nothing. Blobs are written whole and read whole (each is at most
``shoal.limits.MAX_INLINE_BYTES``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shoal.blobs import digest
from shoal.wire import utcnow

from . import schema
from .dialect import insert_for


class BlobStore(Protocol):
    """Blobs by sha256 (hex). Adapters must pass ``tests/requester/test_blob_store.py``."""

    async def missing(self, hashes: Sequence[str]) -> list[str]:
        """The ones of ``hashes`` not held, in the order given, each once."""
        ...

    async def sizes(self, hashes: Sequence[str]) -> dict[str, int]:
        """Size in bytes of each of ``hashes`` held (the others are left out)."""
        ...

    async def put(self, data: bytes) -> str:
        """Hold ``data``; its sha256 (nothing is written when it is held already)."""
        ...

    async def get(self, sha256: str) -> bytes | None:
        """The blob ``sha256``, or ``None`` when it is not held."""
        ...

    async def count(self) -> int:
        """How many blobs are held."""
        ...


Writer = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class DatabaseBlobStore:
    """:class:`BlobStore` in the job store's SQLite or Postgres database."""

    def __init__(self, engine: AsyncEngine, write: Writer) -> None:
        self._engine = engine
        self._write = write

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    async def missing(self, hashes: Sequence[str]) -> list[str]:
        held = await self.sizes(hashes)
        return [h for h in dict.fromkeys(hashes) if h not in held]

    async def sizes(self, hashes: Sequence[str]) -> dict[str, int]:
        if not hashes:
            return {}
        table = schema.blobs
        query = select(table.c.sha256, table.c.size).where(table.c.sha256.in_(set(hashes)))
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return {str(row.sha256): int(row.size) for row in rows}

    async def put(self, data: bytes) -> str:
        sha256 = digest(data)
        async with self._write() as conn:
            insert = insert_for(conn)
            await conn.execute(
                insert(schema.blobs)
                .values(sha256=sha256, size=len(data), data=data, created_at=utcnow())
                .on_conflict_do_nothing()
            )
        return sha256

    async def get(self, sha256: str) -> bytes | None:
        table = schema.blobs
        async with self._read() as conn:
            data = await conn.scalar(select(table.c.data).where(table.c.sha256 == sha256))
        return None if data is None else bytes(data)

    async def count(self) -> int:
        async with self._read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(schema.blobs)) or 0)
