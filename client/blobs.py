"""Shared code travels once: inline archives that several jobs carry become blobs
(``shoal.blobs``) the requester holds, whether the jobs come in one ``submit_many`` or in
several calls of one client.

The steps: find the inline archives worth a blob, those found in more than one submission
of the batch, that the client knows the requester holds, or, when large, that the client met
before (its :class:`BlobMemory`); ask the requester which of
their sha256 it lacks (``blobs-missing``, one call per batch, leaving out those the client
already knows it holds); upload only those (``blob-put``, one call per blob); then each job
names the blob instead of carrying it. A requester too old for the blob ops
(``ProtocolError``) gets the batch as it was, inline.
"""

from __future__ import annotations

import base64
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from shoal.blobs import blob_source, digest
from shoal.errors import ProtocolError
from shoal.wire import Submission

MAX_HASHES = 1000
"""Hashes asked about in one ``blobs-missing`` call (the requester's limit)."""
REMEMBERED = 4096
"""Archives a :class:`BlobMemory` keeps (64 hex digits and a flag each)."""
WORTH_REMEMBERING = 64 * 1024
"""Bytes from which an archive that one job carries becomes a blob when its client meets it
again (smaller ones stay inline: a blob costs two round trips the first time)."""


class BlobMemory:
    """The sha256 of the archives one client submitted: which of them the requester holds
    (uploaded, or found held) and which only went inline so far. Bounded: past ``size``
    the archive met longest ago is forgotten (it is asked about again when met again).

    The requester never deletes a blob, so "held" stays true for the cluster's store.
    """

    def __init__(self, size: int = REMEMBERED) -> None:
        self._size = size
        self._held: OrderedDict[str, bool] = OrderedDict()

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._held

    def __len__(self) -> int:
        return len(self._held)

    def held(self, sha256: str) -> bool:
        """Whether the requester is known to hold the blob."""
        return self._held.get(sha256, False)

    def note(self, sha256: str, *, held: bool) -> None:
        """Remember the archive as met (``held``: the requester holds it)."""
        self._held[sha256] = held or self._held.get(sha256, False)
        self._held.move_to_end(sha256)
        while len(self._held) > self._size:
            self._held.popitem(last=False)


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


def shared_archives(
    submissions: Sequence[Submission], memory: BlobMemory | None = None
) -> dict[str, tuple[str, bytes]]:
    """base64 text → (sha256, bytes) of each inline archive carried by two jobs or more, or
    that ``memory`` knows the requester holds, or (of :data:`WORTH_REMEMBERING` bytes or
    more) that ``memory``'s client met before; the other large ones are noted as met."""
    counts = Counter(data for s in submissions for data in _inline_data(s))
    shared: dict[str, tuple[str, bytes]] = {}
    for data, count in counts.items():
        if count == 1 and memory is None:
            continue
        raw = base64.b64decode(data)
        sha256 = digest(raw)
        large = len(raw) >= WORTH_REMEMBERING
        if count > 1 or (
            memory is not None and (memory.held(sha256) or (large and sha256 in memory))
        ):
            shared[data] = (sha256, raw)
        elif memory is not None and large:
            memory.note(sha256, held=False)
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


async def upload_shared(
    session: ApiCaller, submissions: Sequence[Submission], memory: BlobMemory | None = None
) -> list[Submission]:
    """``submissions`` naming blobs for the archives they share (with each other or, given
    the client's ``memory``, with its earlier submissions), those blobs uploaded where the
    requester lacks them; unchanged when nothing is shared or the requester has no blob ops.
    The requester is asked only about blobs ``memory`` does not know it holds."""
    shared = shared_archives(submissions, memory)
    if not shared:
        return list(submissions)
    by_hash = {sha256: raw for sha256, raw in shared.values()}
    hashes = sorted(h for h in by_hash if memory is None or not memory.held(h))
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
    if memory is not None:
        for sha256 in by_hash:
            memory.note(sha256, held=True)
    return [naming_blobs(submission, shared) for submission in submissions]
