"""``shoal job list`` paging, filters and columns, ``job summary``, and short ID prefixes:
the CLI as a subprocess against a real broker and an in-process requester."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from shoal.model import Job, JobState
from shoal.requester.service import Requester
from shoal.requester.store import JobStore, NewJob
from tests.requester.jobs import docker_job, state

from .conftest import Shoal
from .fake_executor import fake_executor
from .test_cli import RUN, succeed

pytestmark = pytest.mark.rabbitmq


def aged(job: Job, age: timedelta, hex_start: str | None = None) -> Job:
    """``job`` created ``age`` ago, owned by guest (the tests' broker user); with an ID
    starting ``j-<hex_start>`` when given."""
    update: dict[str, object] = {"created_at": datetime.now(UTC) - age, "owner": "guest"}
    if hex_start is not None:
        update["id"] = f"j-{hex_start}-{job.id[11:]}"
    return job.model_copy(update=update)


def store_of(requester: Requester) -> JobStore:
    assert requester.store is not None
    return requester.store


async def stored(requester: Requester, *jobs: Job) -> list[str]:
    await store_of(requester).add_jobs([NewJob(job, job) for job in jobs])
    return [job.id for job in jobs]


async def test_pages_with_a_footer_and_ids_only(shoal: Shoal, requester: Requester) -> None:
    ids = await stored(requester, *(aged(docker_job(), timedelta(minutes=m)) for m in range(7)))
    first = await shoal("job", "list", "--limit", "3")
    assert first.code == 0, first.err
    rows = first.out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ids[:3]
    assert first.err.strip() == f"showing 3 of 7 (next: --after {ids[2]})"
    second = await shoal("job", "list", "--limit", "3", "--after", ids[2], "-q")
    assert second.out.split() == ids[3:6]
    assert second.err.strip() == f"showing 4-6 of 7 (next: --after {ids[5]})"
    last = await shoal("job", "list", "--after", ids[5][:12], "-q")
    assert (last.out.split(), last.err.strip()) == (ids[6:], "showing 7-7 of 7")
    whole = await shoal("job", "list", "-q")
    assert (whole.out.split(), whole.err) == (ids, "")
    page = json.loads((await shoal("job", "list", "--limit", "2", "--output-format", "json")).out)
    assert [job["id"] for job in page["jobs"]] == ids[:2]
    assert (page["total"], page["skipped"], page["next"]) == (7, 0, ids[1])


async def test_more_than_a_thousand_jobs_are_paged_through(
    shoal: Shoal, requester: Requester
) -> None:
    ids = await stored(requester, *(aged(docker_job(), timedelta(seconds=s)) for s in range(1005)))
    every = await shoal("job", "list", "--all", "-q")
    assert every.code == 0, every.err
    assert (every.out.split(), every.err) == (ids, "")
    some = await shoal("job", "list", "--limit", "1002", "-q")
    assert some.out.split() == ids[:1002]
    assert some.err.strip() == f"showing 1002 of 1005 (next: --after {ids[1001]})"
    default = await shoal("job", "list", "-q")
    assert default.out.split() == ids[:50]  # the requester's SHOAL_LIST_LIMIT


async def test_several_states_since_and_the_time_columns(
    shoal: Shoal, requester: Requester
) -> None:
    jobs = [aged(docker_job(), timedelta(days=2))]
    jobs += [aged(docker_job(), timedelta(minutes=m)) for m in (5, 4)]
    old, queued, running = await stored(requester, *jobs)
    await store_of(requester).mark_queued([queued, running])
    started = datetime.now(UTC) - timedelta(minutes=3)
    await store_of(requester).record_events(
        [state(running, JobState.RUNNING, at=started, started_at=started)]
    )
    both = await shoal("job", "list", "--state", "queued", "--state", "running", "-q")
    assert both.out.split() == [running, queued]
    recent = await shoal("job", "list", "--since", "1h", "-q")
    assert recent.out.split() == [running, queued]
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    assert (await shoal("job", "list", "--since", since, "-q")).out.split()[-1] == old

    header, *rows = (await shoal("job", "list")).out.splitlines()
    assert header.split() == [
        "ID", "TYPE", "STATE", "EXIT", "CREATED", "STARTED", "DURATION", "NAME", "LABELS",
    ]  # fmt: skip
    cells = {row.split()[0]: row.split() for row in rows}
    created = datetime.fromisoformat(cells[running][3])
    assert cells[running][3].endswith("Z")
    assert created == jobs[2].created_at.replace(microsecond=0)
    assert cells[running][4] == started.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    assert cells[running][5].startswith("3m")
    assert cells[queued][3:6] == [cells[queued][3], "-", "-"]

    bad = await shoal("job", "list", "--since", "yesterday")
    assert bad.code == 2
    assert bad.err.startswith("UsageError: --since: 'yesterday' is neither a duration")


async def test_summary_counts_by_state_and_type(shoal: Shoal, requester: Requester) -> None:
    queued, failed, _ = await stored(
        requester, *(aged(docker_job(), timedelta(minutes=m)) for m in range(3))
    )
    await store_of(requester).mark_queued([queued, failed])
    await store_of(requester).record_events([state(failed, JobState.FAILED, exit_code=2)])
    counts = json.loads((await shoal("job", "summary", "--output-format", "json")).out)
    assert counts == {
        "total": 3,
        "states": {"failed": 1, "pending": 1, "queued": 1},
        "types": {"docker": {"failed": 1, "pending": 1, "queued": 1}},
    }
    table = (await shoal("job", "summary")).out.splitlines()
    assert [line.split() for line in table] == [
        ["TYPE", "PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "STOPPED", "TOTAL"],
        ["docker", "1", "1", "0", "0", "1", "0", "3"],
        ["all", "1", "1", "0", "0", "1", "0", "3"],
    ]
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = json.loads(
        (await shoal("job", "summary", "--since", later, "--output-format", "json")).out
    )
    assert none["total"] == 0


async def test_short_id_prefixes(
    shoal: Shoal, requester: Requester, connection: AbstractRobustConnection, tmp_path: Path
) -> None:
    async with fake_executor(connection, succeed):
        done = await shoal(*RUN[:2], "--wait", "--id-only", *RUN[2:])
    job_id = done.out.strip()
    short = job_id[:10]
    assert "completed" in (await shoal("job", "describe", short)).out
    assert (await shoal("job", "logs", short)).out == "hello\n"
    followed = await shoal("job", "logs", "-f", job_id[2:10])
    assert (followed.code, followed.out) == (0, "hello\n")
    got = await shoal("job", "get", short, "--output-dir", str(tmp_path / "out"))
    assert (tmp_path / "out" / "outputs" / "answer.txt").read_bytes() == b"42\n", got.err
    waited = await shoal("job", "wait", short)
    assert (waited.code, waited.out.strip()) == (0, f"{job_id} completed")
    stopped = await shoal("job", "stop", short)
    assert stopped.out.strip() == f"Job {job_id} already ended: completed"

    twins = await stored(
        requester,
        *(aged(docker_job(), timedelta(0), hex_start=f"feedbee{n}") for n in (1, 2)),
    )
    ambiguous = await shoal("job", "describe", "feedbee")
    assert ambiguous.code == 2
    assert ambiguous.err.strip() == (
        f"UsageError: job ID prefix 'feedbee' is ambiguous: it matches {twins[0]}, {twins[1]};"
        " give more characters"
    )
    unknown = await shoal("job", "wait", "j-0badcafe")
    assert (unknown.code, unknown.err.strip()) == (2, "NotFoundError: no job matches 'j-0badcafe'")
    short_one = await shoal("job", "logs", "feed")
    assert short_one.code == 2
    assert short_one.err.strip() == (
        "UsageError: job ID 'feed' is too short: give at least 6 characters after j-"
    )


async def test_a_stopped_queued_job_has_no_execution_row(
    shoal: Shoal, requester: Requester
) -> None:
    job_id = (await shoal(*RUN[:2], "--id-only", *RUN[2:])).out.strip()
    assert (await shoal("job", "stop", job_id)).code == 0
    await shoal("job", "wait", job_id)  # until the stop is recorded
    human = (await shoal("job", "describe", job_id)).out
    assert "Executions:  none: stopped before it started" in human
    assert "?:" not in human
