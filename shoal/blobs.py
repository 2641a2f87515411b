"""Content-addressed blobs: an inline archive that many jobs share, carried and stored once.

A job refers to a blob with an input source ``{"type": "blob", "params": {"sha256": HEX,
"size": BYTES, "kind": "file"|"dir", "encoding": "tar+gzip"}}``: the same archive an
``inline`` source carries in base64 (``shoal.inline``), named by the sha256 of its bytes.
The client uploads the blobs the requester does not hold yet (API ops ``blobs-missing``,
``blob-put``) before submitting; the executor fetches one it has not cached (``blob-get``)
and places it exactly as the inline archive it stands for. ``size`` counts towards the job's
``MAX_INLINE_BYTES``, as the decoded inline archive does.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from shoal.inline import inline_source

ENCODING = "tar+gzip"
SHA256 = re.compile(r"[0-9a-f]{64}")


def digest(data: bytes) -> str:
    """The hex sha256 of ``data``: a blob's name."""
    return hashlib.sha256(data).hexdigest()


def blob_source(kind: str, sha256: str, size: int) -> dict[str, Any]:
    """The ``source`` of an input that names the blob ``sha256`` (``size`` bytes)."""
    return {
        "type": "blob",
        "params": {"sha256": sha256, "size": size, "kind": kind, "encoding": ENCODING},
    }


def check_params(params: dict[str, Any]) -> None:
    """``ValueError`` unless a blob source's params name a blob and its size."""
    if not isinstance(params.get("sha256"), str) or not SHA256.fullmatch(params["sha256"]):
        raise ValueError("a blob source needs params.sha256: 64 lowercase hex digits")
    size = params.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("a blob source needs params.size: the blob's bytes, an integer")


def by_content(source: dict[str, Any]) -> dict[str, Any]:
    """``source`` as the blob source of its content when it is an inline archive, else as is:
    the same archive inline or as a blob is the same input (for idempotency keys)."""
    if source.get("type") != "inline":
        return source
    raw = base64.b64decode(str(source["params"].get("data", "")))
    return blob_source(str(source["params"].get("kind", "dir")), digest(raw), len(raw))


def as_inline(source: dict[str, Any], data: bytes) -> dict[str, Any]:
    """The ``inline`` source carrying ``data``, the blob that ``source`` (a blob source) names."""
    return inline_source(str(source["params"].get("kind", "dir")), base64.b64encode(data).decode())
