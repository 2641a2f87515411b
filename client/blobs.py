"""Code shared by a batch travels once: inline archives that several jobs of one
``submit_many`` carry become blobs (``shoal.blobs``) the requester holds.

The steps: find the inline archives found in more than one submission; ask the requester
which of their sha256 it lacks (``blobs-missing``, one call per batch); upload only those
(``blob-put``, one call per blob); then each job names the blob instead of carrying it. A
requester too old for the blob ops (``ProtocolError``) gets the batch as it was, inline.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from shoal.blobs import blob_source, digest
from shoal.errors import ProtocolError
from shoal.wire import Submission

MAX_HASHES = 1000
"""Hashes asked about in one ``blobs-missing`` call (the requester's limit)."""


class ApiCaller(Protocol):
    """What this module needs of a session: one API call."""

    async def api(self, op: Any, job_id: str | None = None, **params: Any) -> Any:
        """Call ``shoal.api``; the result, or the typed error raised."""
        ...


def _inline_data(submission: Submission) -> set[str]:
    return {
        str(item.source.params["data"])
        for item in submission.job.task.inputs
        if item.source.type == "inline"
    }


def shared_archives(submissions: Sequence[Submission]) -> dict[str, tuple[str, bytes]]:
    """base64 text → (sha256, bytes) of each inline archive carried by two jobs or more."""
    counts = Counter(data for s in submissions for data in _inline_data(s))
    shared: dict[str, tuple[str, bytes]] = {}
    for data, count in counts.items():
        if count > 1:
            raw = base64.b64decode(data)
            shared[data] = (digest(raw), raw)
    return shared


def naming_blobs(submission: Submission, shared: dict[str, tuple[str, bytes]]) -> Submission:
    """``submission`` with each of its ``shared`` inline archives replaced by the blob's name."""
    if not _inline_data(submission) & shared.keys():
        return submission
    body = submission.model_dump(mode="json")
    for item in body["job"]["tasks"][0]["inputs"]:
        source = item["source"]
        data = source["params"].get("data") if source["type"] == "inline" else None
        if data in shared:
            sha256, raw = shared[data]
            item["source"] = blob_source(source["params"].get("kind", "dir"), sha256, len(raw))
    return Submission.model_validate(body)


async def upload_shared(session: ApiCaller, submissions: Sequence[Submission]) -> list[Submission]:
    """``submissions`` naming blobs for the archives they share, those blobs uploaded
    where the requester lacks them; unchanged when nothing is shared or the requester has
    no blob ops."""
    shared = shared_archives(submissions)
    if not shared:
        return list(submissions)
    by_hash = {sha256: raw for sha256, raw in shared.values()}
    hashes = sorted(by_hash)
    missing: list[str] = []
    try:
        for start in range(0, len(hashes), MAX_HASHES):
            answer = await session.api("blobs-missing", hashes=hashes[start : start + MAX_HASHES])
            missing += answer["missing"]
    except ProtocolError:
        return list(submissions)
    for sha256 in missing:
        data = base64.b64encode(by_hash[sha256]).decode()
        await session.api("blob-put", sha256=sha256, data=data)
    return [naming_blobs(submission, shared) for submission in submissions]
