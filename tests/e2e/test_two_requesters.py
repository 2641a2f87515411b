"""Two requesters sharing one Postgres store, run as an operator runs them: two ``shoal serve
requester`` processes on a fresh database and one wasm-only executor. A ``submit_many`` of
200 jobs is shared between the requesters (each logs ``submission.accepted`` for some of
them, none for the same one) and every job ends ``completed`` after one run. Jobs that no
executor here serves (docker) expire in the queue: both requesters sweep the store every
0.2 s and each job is failed, and announced, by one of them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import shoal
from tests.services import postgres_database

from .conftest import System, _service, services_env
from .test_many import ok_module, until_ended

pytestmark = [pytest.mark.rabbitmq]

JOBS = 200
WAITING = 20
"""Docker jobs with a queue timeout of 1 s, which the wasm-only executor leaves."""


@dataclass(frozen=True)
class Fleet:
    system: System
    database_url: str
    requesters: list[list[str]]
    """Each requester's log lines."""
    executor: list[str]


@pytest.fixture
async def fleet(vhost_url: str) -> AsyncIterator[Fleet]:
    async with postgres_database() as database:
        more = {"SHOAL_ENGINES": "wasm", "SHOAL_SLOTS": "4", "SHOAL_SWEEP_INTERVAL": "0.2"}
        env = services_env(vhost_url, database, more)
        async with contextlib.AsyncExitStack() as stack:
            started = [  # at once, as a scaled deployment starts them: the store is new
                _service("requester", {**env, "SHOAL_NAME": f"requester-{n}"}, "requester.started")
                for n in "ab"
            ] + [_service("executor", env, "executor.ready")]
            *requesters, executor = await asyncio.gather(*map(stack.enter_async_context, started))
            yield Fleet(System(env), database, requesters, executor)


def logged(event: str, *services: list[str]) -> list[dict[str, Any]]:
    """The JSON log lines of ``event`` the ``services`` wrote."""
    found = []
    for line in itertools.chain(*services):
        with contextlib.suppress(ValueError):
            if (record := json.loads(line)).get("event") == event:
                found.append(record)
    return found


async def logged_at_least(count: int, event: str, *services: list[str]) -> list[dict[str, Any]]:
    """The lines of ``event`` once there are ``count`` (a service logs after its write and
    reply, and its lines are read as they come: within 10 s)."""
    async with asyncio.timeout(10):
        while len(found := logged(event, *services)) < count:  # noqa: ASYNC110 (a log)
            await asyncio.sleep(0.1)
    return found


async def runs(database_url: str, tag: str) -> dict[str, tuple[str, int, int, str]]:
    """Per runnable job of the batch: (state, executions, run ends, stdout as stored)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    """
                    SELECT j.id, j.state,
                           (SELECT count(*) FROM executions e WHERE e.job_id = j.id),
                           (SELECT count(*) FROM run_ends r WHERE r.job_id = j.id),
                           (SELECT coalesce(string_agg(c.data, '' ORDER BY c.executor, c.seq), '')
                              FROM log_chunks c WHERE c.job_id = j.id AND c.stream = 'stdout')
                    FROM jobs j JOIN job_labels l ON l.job_id = j.id
                    WHERE l.key = 'share' AND l.value = :tag AND j.state != 'translated'
                    """
                ),
                {"tag": tag},
            )
            return {str(i): (str(s), int(e), int(r), str(out)) for i, s, e, r, out in rows}
    finally:
        await engine.dispose()


async def test_two_requesters_share_the_submissions_and_end_each_job_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    module = ok_module(tmp_path)
    labels = {"share": tag}
    jobs = [
        shoal.exec_job("wasm", [str(n)], code=module, labels=labels, template_dirs=[])
        for n in range(JOBS)
    ]
    jobs += [
        shoal.exec_job("python", ["python", "-V"], queue_timeout=1, labels=labels)
        for _ in range(WAITING)
    ]
    url = fleet.system.env["SHOAL_BROKER_URL"]
    async with shoal.AsyncClient(url, rpc_timeout=120) as client:
        results = await client.submit_many(jobs)
        submitted = [r for r in results if isinstance(r, shoal.Submitted)]
        assert len(submitted) == len(jobs), next(r for r in results if r not in submitted)
        ended = await until_ended(client, labels)
        if ended != {"completed": JOBS, "failed": WAITING}:
            listed = await client.list(labels=labels, states=["failed"], limit=WAITING + 5)
            why = {(await client.describe(job["id"]))["error"] for job in listed["jobs"]}
            pytest.fail(f"{ended}; the failed jobs' errors: {why}")

    everything = await logged_at_least(len(jobs), "submission.accepted", *fleet.requesters)
    accepted = [{e["job_id"] for e in logged("submission.accepted", r)} for r in fleet.requesters]
    assert all(accepted), f"one requester took every submission: {[len(a) for a in accepted]}"
    assert len(everything) == len(jobs)
    assert accepted[0] | accepted[1] == {s.job_id for s in submitted}

    found = await runs(fleet.database_url, tag)
    ran = {job_id for job_id, run in found.items() if run[0] == "completed"}
    expired = found.keys() - ran
    assert (len(ran), len(expired)) == (JOBS, WAITING)
    assert {found[job_id] for job_id in ran} == {("completed", 1, 1, "ok\n")}
    assert {found[job_id] for job_id in expired} == {("failed", 0, 0, "")}
    summaries = await logged_at_least(JOBS, "job.summary", fleet.executor)
    assert Counter(e["job_id"] for e in summaries) == Counter(ran)
    assert {e["state"] for e in summaries} == {"completed"}

    sweeps = await logged_at_least(WAITING, "job.expired", *fleet.requesters)
    assert Counter(e["job_id"] for e in sweeps) == Counter(expired)
    assert not logged("sweep.failed", *fleet.requesters)
