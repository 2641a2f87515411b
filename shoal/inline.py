"""The format of inline inputs: a gzipped tar, base64 in the job message.

``params.kind`` says how the executor places it: ``file`` — the archive holds one member,
written at the input's target path; ``dir`` — the members are placed under the target.
"""

from __future__ import annotations

import base64
import io
import tarfile
from typing import Any

ENCODING = "tar+gzip+base64"


def inline_source(kind: str, data: str) -> dict[str, Any]:
    """The ``source`` of an inline input carrying the base64 archive ``data``."""
    return {"type": "inline", "params": {"encoding": ENCODING, "kind": kind, "data": data}}


def open_inline(data: str) -> tarfile.TarFile:
    """Open an inline input's archive for reading."""
    raw = base64.b64decode(data, validate=True)
    return tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz")
