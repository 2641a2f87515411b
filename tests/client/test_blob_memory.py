"""Code shared across a client's calls travels once: the second ``submit_many`` with the same
``--code`` (and a later single ``submit``) sends no blob and asks nothing about it, counted
at the client's channel; the requester stores the blob once."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import shoal
from shoal.model import Job
from shoal.requester.framebatch import FrameBatch
from shoal.requester.service import Requester
from shoal.requester.settings import RequesterSettings

pytestmark = [pytest.mark.rabbitmq]

JOBS = 5
MODEL_BYTES = 256 * 1024


class Published:
    """The bodies a client's channel publishes (its calls, and ``submit_many``'s rounds of
    submissions through ``FrameBatch``): their bytes, and the blob ops among them."""

    def __init__(self, client: shoal.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
        channel: Any = client.session._channel
        self.bytes = 0
        self.blob_ops: list[str] = []
        publish = channel.basic_publish
        in_batch = FrameBatch.publish

        async def counted(body: bytes, **kwargs: Any) -> Any:
            self.bytes += len(body)
            for op in ("blobs-missing", "blob-put"):
                if f'"op":"{op}"'.encode() in body[:200]:
                    self.blob_ops.append(op)
            return await publish(body, **kwargs)

        def batched(batch: FrameBatch, routing_key: str, body: bytes, *args: Any, **kw: Any) -> Any:
            self.bytes += len(body)
            return in_batch(batch, routing_key, body, *args, **kw)

        channel.basic_publish = counted
        monkeypatch.setattr(FrameBatch, "publish", batched)

    def take(self) -> tuple[int, list[str]]:
        """Bytes and blob ops since the last call."""
        taken = (self.bytes, self.blob_ops)
        self.bytes, self.blob_ops = 0, []
        return taken


def jobs(code: Path, count: int) -> list[Job]:
    return [
        shoal.exec_job("python", ["python", "app.py", str(n)], code=code, template_dirs=[])
        for n in range(count)
    ]


def stored_blobs(settings: RequesterSettings) -> list[tuple[str, int]]:
    path = settings.database_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT sha256, size FROM blobs").fetchall()
    return [(str(sha), int(size)) for sha, size in rows]


async def code_source(client: shoal.AsyncClient, job_id: str) -> dict[str, Any]:
    inputs = (await client.describe(job_id))["spec"]["tasks"][0]["inputs"]
    source: dict[str, Any] = next(i for i in inputs if i["alias"] == "code")["source"]
    return source


async def test_a_client_sends_shared_code_once_across_its_submit_calls(
    requester: Requester,
    requester_settings: RequesterSettings,
    amqp_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("import sys\nprint(sys.argv[1])\n")
    (code / "model.bin").write_bytes(os.urandom(MODEL_BYTES))  # incompressible
    async with shoal.AsyncClient(amqp_url) as client:
        published = Published(client, monkeypatch)
        first = await client.submit_many(jobs(code, JOBS))
        sent, ops = published.take()
        assert ops == ["blobs-missing", "blob-put"]
        assert sent > MODEL_BYTES

        second = await client.submit_many(jobs(code, JOBS))
        sent, ops = published.take()
        assert ops == [], "the client knows the requester holds the code"
        assert sent < MODEL_BYTES // 10

        single = await client.submit(jobs(code, 1)[0])
        sent, ops = published.take()
        assert ops == []
        assert sent < MODEL_BYTES // 10

        [(sha256, size)] = stored_blobs(requester_settings)
        assert size > MODEL_BYTES
        for submitted in (first[0], second[-1], single):
            assert isinstance(submitted, shoal.Submitted), submitted
            source = await code_source(client, submitted.job_id)
            assert (source["type"], source["params"]["sha256"]) == ("blob", sha256)
