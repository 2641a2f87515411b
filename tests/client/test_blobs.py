"""The client's half of shared code: only archives two jobs or more carry become blobs, the
requester is asked once which it lacks, only those are uploaded, and a requester without
blob ops gets the batch inline. A client's memory of the archives it met carries this across
its calls: an archive met again becomes a blob, one known held is not asked about again."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from shoal.blobs import digest
from shoal.client.blobs import (
    WORTH_REMEMBERING,
    BlobMemory,
    naming_blobs,
    shared_archives,
    upload_shared,
)
from shoal.client.prepare import ExecOptions, prepare_job
from shoal.errors import ProtocolError
from shoal.model import submitted_spec
from shoal.wire import Submission


class Requester:
    """The requester's blob ops in memory (``shoal.requester.blobapi``), recording the calls."""

    def __init__(self, *, held: tuple[bytes, ...] = (), old: bool = False) -> None:
        self.blobs = {digest(blob): blob for blob in held}
        self.old = old
        self.calls: list[str] = []

    async def api(self, op: Any, job_id: str | None = None, **params: Any) -> Any:
        self.calls.append(op)
        if self.old:
            raise ProtocolError(f"invalid ApiRequest: op: unknown {op}")
        if op == "blobs-missing":
            return {"missing": [h for h in params["hashes"] if h not in self.blobs]}
        data = base64.b64decode(params["data"])
        assert digest(data) == params["sha256"]
        self.blobs[params["sha256"]] = data
        return {"sha256": params["sha256"], "size": len(data)}


def batch(tmp_path: Path, count: int) -> list[Submission]:
    """``count`` jobs sharing one code folder, each with its own input (files written once:
    the same files archive the same, so a second batch carries the same code)."""
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    if not (code / "app.py").exists():
        (code / "app.py").write_text("print('shared')\n")
    jobs = []
    for n in range(count):
        own = tmp_path / f"part-{n}.csv"
        if not own.exists():
            own.write_text(f"{n}\n")
        options = ExecOptions(
            "python", arguments=["python", "app.py"], code=str(code), each=str(own)
        )
        jobs.append(Submission(job=prepare_job(options)))
    return jobs


def sources(submission: Submission) -> list[str]:
    return [item.source.type for item in submission.job.task.inputs]


async def test_only_the_shared_archive_becomes_a_blob_uploaded_once(tmp_path: Path) -> None:
    jobs = batch(tmp_path, 5)
    [(sha256, archive)] = shared_archives(jobs).values()
    requester = Requester()
    sent = await upload_shared(requester, jobs)
    assert requester.calls == ["blobs-missing", "blob-put"]
    assert requester.blobs == {sha256: archive}
    assert [sources(s) for s in sent] == [["blob", "inline"]] * 5
    code = sent[2].job.task.inputs[0]
    assert (code.target, code.alias) == ("/code", "code")
    assert code.source.params == {
        "sha256": sha256, "size": len(archive), "kind": "dir", "encoding": "tar+gzip",
    }  # fmt: skip
    assert sent[2].job.task.inputs[1] == jobs[2].job.task.inputs[1]


async def test_a_blob_the_requester_holds_is_not_uploaded_again(tmp_path: Path) -> None:
    jobs = batch(tmp_path, 3)
    [(_, archive)] = shared_archives(jobs).values()
    requester = Requester(held=(archive,))
    sent = await upload_shared(requester, jobs)
    assert requester.calls == ["blobs-missing"]
    assert [sources(s) for s in sent] == [["blob", "inline"]] * 3


async def test_a_single_job_and_an_old_requester_keep_everything_inline(tmp_path: Path) -> None:
    single = batch(tmp_path, 1)
    requester = Requester()
    assert await upload_shared(requester, single) == single
    assert requester.calls == []
    jobs = batch(tmp_path, 3)
    old = Requester(old=True)
    assert await upload_shared(old, jobs) == jobs
    assert old.calls == ["blobs-missing"]


def test_an_archive_inline_or_as_a_blob_is_the_same_submitted_job(tmp_path: Path) -> None:
    """An idempotency key first used inline then in a batch (a blob) names the same job."""
    jobs = batch(tmp_path, 2)
    shared = shared_archives(jobs)
    as_blob = naming_blobs(jobs[0], shared)
    assert sources(as_blob) == ["blob", "inline"]
    assert submitted_spec(as_blob.job) == submitted_spec(jobs[0].job)
    assert submitted_spec(as_blob.job) != submitted_spec(jobs[1].job)


async def test_a_client_remembers_the_blobs_the_requester_holds_across_calls(
    tmp_path: Path,
) -> None:
    memory = BlobMemory()
    requester = Requester()
    await upload_shared(requester, batch(tmp_path, 3), memory)
    assert requester.calls == ["blobs-missing", "blob-put"]
    again = await upload_shared(requester, batch(tmp_path, 3), memory)
    assert requester.calls == ["blobs-missing", "blob-put"], "nothing asked, nothing sent"
    assert [sources(s) for s in again] == [["blob", "inline"]] * 3
    [single] = await upload_shared(requester, batch(tmp_path, 1), memory)
    assert sources(single) == ["blob", "inline"]
    assert len(requester.calls) == 2


async def test_a_large_archive_submitted_alone_twice_goes_inline_then_as_a_blob(
    tmp_path: Path,
) -> None:
    """A small one (each job's own input here) stays inline: not worth two round trips."""
    memory = BlobMemory()
    requester = Requester()
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "model.bin").write_bytes(os.urandom(WORTH_REMEMBERING))
    first = batch(tmp_path, 1)
    assert await upload_shared(requester, first, memory) == first
    assert requester.calls == []
    [second] = await upload_shared(requester, batch(tmp_path, 1), memory)
    assert requester.calls == ["blobs-missing", "blob-put"]
    assert sources(second) == ["blob", "inline"]
    [third] = await upload_shared(requester, batch(tmp_path, 1), memory)
    assert requester.calls == ["blobs-missing", "blob-put"]
    assert sources(third) == ["blob", "inline"]


def test_the_memory_forgets_the_archive_met_longest_ago() -> None:
    memory = BlobMemory(size=2)
    memory.note("a", held=True)
    memory.note("b", held=False)
    memory.note("a", held=False)  # met again: still held, now the newest
    memory.note("c", held=False)
    assert len(memory) == 2
    assert "b" not in memory
    assert memory.held("a")
    assert not memory.held("c")
