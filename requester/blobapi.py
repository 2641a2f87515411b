"""The API's blob ops (``shoal.blobs``), answered from a :class:`~shoal.requester.store.BlobStore`.

- ``blobs-missing`` (params ``hashes``: sha256 hex strings, at most :data:`MAX_HASHES`):
  ``{"missing": [...]}``, the ones the store does not hold. One call per batch.
- ``blob-put`` (params ``sha256``, ``data``: base64): stores the blob once its bytes hash to
  ``sha256``; ``{"sha256", "size"}``. At most ``MAX_INLINE_BYTES`` (a job's whole budget).
- ``blob-get`` (params ``sha256``): ``{"sha256", "data"}`` (base64); ``NotFoundError`` when it
  is not held. Executors' and operators' accounts only: a blob may be any user's code.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from shoal.blobs import SHA256, digest
from shoal.errors import AccessError, NotFoundError, TooLargeError, UsageError
from shoal.limits import MAX_INLINE_BYTES
from shoal.units import format_bytes

from .access import Access
from .store import BlobStore

OPS = frozenset({"blobs-missing", "blob-put", "blob-get"})
MAX_HASHES = 1000


def _hash(value: Any) -> str:
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise UsageError(f"{value!r} is not a sha256: 64 lowercase hex digits")
    return value


async def handle_blob(
    op: str, params: dict[str, Any], caller: str, blobs: BlobStore, access: Access
) -> dict[str, Any]:
    """The result of the blob op ``op`` by ``caller``; ``ShoalError`` for a bad request."""
    if op == "blobs-missing":
        hashes = params.get("hashes")
        if not isinstance(hashes, list) or len(hashes) > MAX_HASHES:
            raise UsageError(f"hashes must be a list of at most {MAX_HASHES} sha256 strings")
        return {"missing": await blobs.missing([_hash(h) for h in hashes])}
    sha256 = _hash(params.get("sha256"))
    if op == "blob-put":
        return await _put(sha256, params.get("data"), blobs)
    if not (access.is_executor(caller) or access.is_operator(caller)):
        raise AccessError(f"user {caller!r} may not read blobs: only executors fetch them")
    data = await blobs.get(sha256)
    if data is None:
        raise NotFoundError(f"blob sha256:{sha256} is not held by the requester")
    return {"sha256": sha256, "data": base64.b64encode(data).decode()}


async def _put(sha256: str, text: Any, blobs: BlobStore) -> dict[str, Any]:
    if not isinstance(text, str):
        raise UsageError("blob-put needs params.data: the blob in base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("blob-put: params.data is not base64") from None
    if len(data) > MAX_INLINE_BYTES:
        raise TooLargeError(
            f"the blob is {format_bytes(len(data))}; the limit is {format_bytes(MAX_INLINE_BYTES)}"
        )
    if digest(data) != sha256:
        raise UsageError(f"blob-put: the data does not hash to sha256:{sha256}")
    await blobs.put(data)
    return {"sha256": sha256, "size": len(data)}
