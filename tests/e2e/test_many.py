"""``submit_many`` of 1,000 jobs through the real broker, requester and executor: every job
ends ``completed``, run exactly once. The jobs are a trivial WASI module on a wasm-only
executor with a few slots, so the batch runs in under a minute on an idle 2-core machine."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from pathlib import Path

import pytest
import wasmtime

import shoal

from .conftest import System

pytestmark = [pytest.mark.rabbitmq]

JOBS = 1000


@pytest.fixture
def system_env() -> dict[str, str]:
    return {"SHOAL_ENGINES": "wasm", "SHOAL_SLOTS": "4"}


PRINTS_OK = """(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "ok\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"""
"""Prints ``ok`` and nothing else: a job whose cost is the system's, not its own."""


def ok_module(tmp_path: Path) -> Path:
    module = tmp_path / "ok.wasm"
    module.write_bytes(bytes(wasmtime.wat2wasm(PRINTS_OK)))
    return module


async def until_ended(client: shoal.AsyncClient, labels: dict[str, str]) -> dict[str, int]:
    """The batch's counts by state once none is waiting (the requester counts them in SQL;
    a typed job's original, ``translated``, is left out: its runnable job is counted)."""
    async with asyncio.timeout(240):
        while True:
            summary = await client.session.api("summary", labels=labels)
            states = {s: int(n) for s, n in summary["states"].items() if n and s != "translated"}
            if not {"pending", "queued", "running"} & states.keys():
                return states
            await asyncio.sleep(0.5)


def runs(database: Path, tag: str) -> list[tuple[str, int, int, str]]:
    """Per runnable job of the batch: (state, executions, run ends, stdout as stored)."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            """
            SELECT j.state,
                   (SELECT count(*) FROM executions e WHERE e.job_id = j.id),
                   (SELECT count(*) FROM run_ends r WHERE r.job_id = j.id),
                   (SELECT coalesce(group_concat(c.data, ''), '') FROM
                      (SELECT data FROM log_chunks WHERE job_id = j.id AND stream = 'stdout'
                       ORDER BY executor, seq) c)
            FROM jobs j JOIN job_labels l ON l.job_id = j.id
            WHERE l.key = 'many' AND l.value = ? AND j.state != 'translated'
            """,
            (tag,),
        ).fetchall()
    return [(str(s), int(e), int(r), str(out)) for s, e, r, out in rows]


async def test_submit_many_of_a_thousand_jobs_runs_each_exactly_once(
    system: System, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    module = ok_module(tmp_path)
    jobs = [
        shoal.exec_job("wasm", [str(n)], code=module, labels={"many": tag}, template_dirs=[])
        for n in range(JOBS)
    ]
    async with shoal.AsyncClient(system.env["SHOAL_BROKER_URL"], rpc_timeout=120) as client:
        results = await client.submit_many(jobs)
        submitted = [r for r in results if isinstance(r, shoal.Submitted)]
        assert len(submitted) == JOBS, next(r for r in results if r not in submitted)
        assert len({s.job_id for s in submitted}) == JOBS
        ended = await until_ended(client, {"many": tag})
        if ended != {"completed": JOBS}:
            listed = await client.list(labels={"many": tag}, states=["failed"], limit=1)
            why = [(await client.describe(job["id"]))["error"] for job in listed["jobs"]]
            pytest.fail(f"{ended}; a failed job's error: {why}")
    database = Path(system.env["SHOAL_DATABASE_URL"].split("///", 1)[1])
    found = runs(database, tag)
    assert len(found) == JOBS
    assert set(found) == {("completed", 1, 1, "ok\n")}
