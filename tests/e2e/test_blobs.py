"""Code shared by a batch is carried and stored once: a blob the requester holds and the
executor fetches by hash; a job naming a blob nobody holds is refused, saying which."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from shoal.blobs import digest

from .conftest import System
from .test_batch import wait_all

pytestmark = [pytest.mark.docker, pytest.mark.rabbitmq]


@pytest.fixture
def system_env(tmp_path: Path) -> dict[str, str]:
    return {"SHOAL_BLOB_CACHE_DIR": str(tmp_path / "blob-cache")}


def stored_blobs(tmp_path: Path) -> list[tuple[str, int]]:
    """The blobs the requester's store holds: (sha256, size)."""
    with contextlib.closing(sqlite3.connect(tmp_path / "jobs.sqlite3")) as db:
        rows = db.execute("SELECT sha256, size FROM blobs").fetchall()
    return [(str(sha), int(size)) for sha, size in rows]


def cached(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def code_folder(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "count.py").write_text(
        "import sys\nprint(sys.argv[1], sum(1 for _ in open(sys.argv[1])) - 1)\n"
    )
    (code / "model.bin").write_bytes(os.urandom(1024 * 1024))  # shared, incompressible
    return code


async def test_a_batch_sharing_code_uploads_and_stores_it_once(
    system: System, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for n in range(6):
        (data / f"part-{n}.csv").write_text("value\n" + "1\n" * n)
    code = code_folder(tmp_path)
    each = (
        "exec", "python", "--code", str(code), "--each", str(data / "*.csv"),
        "--", "python", "count.py", "{}",
    )  # fmt: skip
    done = await system.shoal(*each)
    assert done.code == 0, done.err
    batch, *ids = done.out.split()
    jobs = await wait_all(system, batch, 6)
    assert {j["state"] for j in jobs} == {"completed"}
    for n in (0, 5):
        logs = await system.shoal("job", "logs", ids[n])
        assert logs.out == f"/inputs/part-{n}.csv {n}\n"
    [(sha256, size)] = stored_blobs(tmp_path)
    assert size > 1024 * 1024
    assert cached(tmp_path / "blob-cache") == [sha256]
    described = await system.shoal("job", "describe", ids[3], "--output-format", "json")
    inputs = json.loads(described.out)["spec"]["tasks"][0]["inputs"]
    code_input = next(i for i in inputs if i["alias"] == "code")
    assert code_input["source"]["type"] == "blob"
    assert code_input["source"]["params"]["sha256"] == sha256
    assert "data" not in code_input["source"]["params"]

    again = await system.shoal(*each)  # the requester holds the code: nothing uploaded
    assert again.code == 0, again.err
    jobs = await wait_all(system, again.out.split()[0], 6)
    assert {j["state"] for j in jobs} == {"completed"}
    assert stored_blobs(tmp_path) == [(sha256, size)]


async def test_a_job_naming_a_blob_nobody_holds_is_refused_saying_which(
    system: System, tmp_path: Path
) -> None:
    sha256 = digest(b"never uploaded")
    spec = {
        "tasks": [
            {
                "engine": {
                    "type": "python",
                    "params": {"version": "3.11", "command": "python", "arguments": ["python"]},
                },
                "inputs": [
                    {
                        "source": {
                            "type": "blob",
                            "params": {"sha256": sha256, "size": 14, "kind": "dir"},
                        },
                        "target": "/code",
                    }
                ],
            }
        ]
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec))
    done = await system.shoal("job", "run", str(path))
    assert done.code == 2
    assert done.err.strip() == (
        f"InvalidJobError: blob sha256:{sha256} is not held by the requester "
        "(upload it with blob-put first)"
    )
    assert stored_blobs(tmp_path) == []
