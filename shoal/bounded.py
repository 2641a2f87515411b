"""A decompressed stream that stops at a byte limit, shared by every unpacker of untrusted
archives (inline inputs in the executor, outputs in ``shoal job get``)."""

from __future__ import annotations

import gzip
import io
from typing import Any


class BoundedGzip(io.RawIOBase):
    """Reads ``raw`` and raises ``too_big`` as soon as more than ``limit`` decompressed bytes
    came out, so a gzip bomb is refused while it is read, never held in memory."""

    def __init__(self, raw: gzip.GzipFile, limit: int, too_big: Exception) -> None:
        self._raw = raw
        self._limit = limit
        self._too_big = too_big
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)
        self.total += count
        if self.total > self._limit:
            raise self._too_big
        return count
