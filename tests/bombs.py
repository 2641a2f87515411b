"""Decompression bombs for the tests of every place that unpacks an archive."""

from __future__ import annotations

import base64
import struct
import tarfile
import zlib

MiB = 1024**2


def zeros_bomb(members: dict[str, int]) -> str:
    """Base64 of a valid tar.gz of ``name → size`` members of zeros, a few MB for GiBs.

    Built without compressing the zeros: a 1 MiB block of them is deflated once after a full
    flush (which resets the history), so that block's compressed bytes can simply be repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(MiB)
    parts = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
    crc = length = 0

    def add(data: bytes, repeat: int = 1) -> None:
        nonlocal crc, length
        once = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
        parts.append(once)
        if repeat > 1:
            again = compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)
            parts.extend([again] * (repeat - 1))
        for _ in range(repeat):
            crc = zlib.crc32(data, crc)
        length += len(data) * repeat

    for name, size in members.items():
        info = tarfile.TarInfo(name)
        info.size = size
        add(info.tobuf())
        add(block, size // MiB)
        add(bytes(size % MiB + (-size % 512)))
    add(bytes(1024))
    parts.append(compressor.flush())
    parts.append(struct.pack("<II", crc, length & 0xFFFFFFFF))
    return base64.b64encode(b"".join(parts)).decode()
