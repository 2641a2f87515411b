"""The store's execution claims (``shoal.requester.store.claims``), on SQLite and on Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from shoal.model import JobState
from shoal.requester.store import JobStore, NewJob
from shoal.wire import ClaimItem

from .jobs import docker_job, state, timed_job


async def queued_job(store: JobStore) -> str:
    job = docker_job()
    await store.add_jobs([NewJob(job, job)])
    await store.mark_queued([job.id])
    return job.id


async def claim(store: JobStore, job_id: str, attempt: str, lease: float = 30.0) -> str:
    item = ClaimItem(job_id=job_id, attempt=attempt)
    return (await store.claim_runs("claim", f"ex-{attempt}", [item], lease))[0].verdict


async def test_racing_claims_have_one_winner(store: JobStore) -> None:
    job_id = await queued_job(store)
    verdicts = await asyncio.gather(*(claim(store, job_id, f"a{n}") for n in range(8)))
    assert sorted(verdicts) == ["claimed"] * 7 + ["granted"]


async def test_a_claim_is_idempotent_for_its_attempt(store: JobStore) -> None:
    job_id = await queued_job(store)
    assert await claim(store, job_id, "a1") == "granted"
    assert await claim(store, job_id, "a1") == "granted"
    assert await claim(store, job_id, "a2") == "claimed"


async def test_stop_and_claim_race_one_wins(store: JobStore) -> None:
    for _ in range(5):
        job_id = await queued_job(store)
        stopped, verdict = await asyncio.gather(
            store.stop_if_waiting(job_id, "stopped by user"), claim(store, job_id, "a1")
        )
        state_now = (await store.describe(job_id))["state"]
        if stopped:
            assert (verdict, state_now) == ("stopped", "stopped")
        else:
            assert (verdict, state_now) == ("granted", "queued")


async def test_ended_jobs_are_not_granted(store: JobStore) -> None:
    ran, expired = await queued_job(store), await queued_job(store)
    assert await claim(store, ran, "a1") == "granted"
    await store.record_events([state(ran, JobState.COMPLETED, attempt="a1")])
    await store.record_events([state(expired, JobState.FAILED, error="expired in the queue")])
    assert await claim(store, ran, "a2") == "claimed"
    assert await claim(store, expired, "a3") == "expired"
    assert await claim(store, "j-nobody", "a4") == "unknown"


async def test_a_run_that_ended_is_not_taken_over(store: JobStore) -> None:
    """The requester asks the broker whether a holder is gone between its claim read and the
    take-over; a run that ended meanwhile stays ended (taking it would run it twice)."""
    job_id = await queued_job(store)
    assert await claim(store, job_id, "a1") == "granted"
    await store.record_events([state(job_id, JobState.COMPLETED, attempt="a1")])
    assert not await store.take_over(job_id, "a2", "ex-a2", "a1", 30.0)
    assert await claim(store, job_id, "a2") == "claimed"


async def test_a_job_the_sweeper_failed_is_answered_expired_and_stays_failed(
    store: JobStore,
) -> None:
    job = timed_job(queue=5)
    await store.add_jobs([NewJob(job, job)])
    await store.mark_queued([job.id])
    [expired] = await store.expire_due(datetime.now(UTC) + timedelta(seconds=6))
    assert expired.job_id == job.id
    assert await claim(store, job.id, "a1") == "expired"
    await store.record_events([state(job.id, JobState.RUNNING, attempt="a1")], ["exec-a"])
    assert (await store.describe(job.id))["state"] == JobState.FAILED


async def test_events_of_a_replaced_attempt_are_refused(store: JobStore) -> None:
    job_id = await queued_job(store)
    assert await claim(store, job_id, "old", lease=0.05) == "granted"
    await store.record_events([state(job_id, JobState.RUNNING, attempt="old", seq=1)])
    await asyncio.sleep(0.1)  # the old lease lapses: time passing is what is tested
    assert await take_lapsed(store, job_id, "new", holder="old")
    stale = state(job_id, JobState.FAILED, attempt="old", seq=2, error="late")
    fresh = state(job_id, JobState.COMPLETED, attempt="new", seq=1, exit_code=0)
    assert await store.record_events([stale, fresh]) == [False, True]
    record = await store.describe(job_id)
    assert (record["state"], record["exit_code"], record["error"]) == ("completed", 0, None)


async def take_lapsed(store: JobStore, job_id: str, attempt: str, holder: str) -> bool:
    """Claim a run whose lease lapsed: the store names its holder (the requester asks whether
    that executor may lose it, ``shoal.requester.leases``), then hand it over."""
    item = ClaimItem(job_id=job_id, attempt=attempt)
    [found] = await store.claim_runs("claim", f"ex-{attempt}", [item], 30.0)
    assert (found.verdict, found.holder, found.holder_attempt) == (
        "claimed",
        f"ex-{holder}",
        holder,
    )
    assert found.lapsed
    return await store.take_over(job_id, attempt, f"ex-{attempt}", holder, 30.0, lapsed=True)


async def test_a_lapsed_lease_names_its_holder_and_is_kept_when_renewed(store: JobStore) -> None:
    """A lease also lapses while no requester answers renewals: the store does not hand the
    run over by itself, and the holder's late renewal keeps it."""
    job_id = await queued_job(store)
    assert await claim(store, job_id, "a1", lease=0.05) == "granted"
    await asyncio.sleep(0.1)  # the lease lapses
    item = ClaimItem(job_id=job_id, attempt="a2")
    [found] = await store.claim_runs("claim", "ex-a2", [item], 30.0)
    assert (found.verdict, found.holder, found.lapsed) == ("claimed", "ex-a1", True)
    renewed = await store.claim_runs("renew", "ex-a1", [ClaimItem(job_id=job_id, attempt="a1")], 30)
    assert [c.verdict for c in renewed] == ["granted"]
    assert not await store.take_over(job_id, "a2", "ex-a2", "a1", 30.0, lapsed=True)
    [live] = await store.claim_runs("claim", "ex-a2", [item], 30.0)
    assert (live.verdict, live.holder, live.lapsed) == ("claimed", "ex-a1", False)


async def test_renew_and_release(store: JobStore) -> None:
    job_id = await queued_job(store)
    mine = [ClaimItem(job_id=job_id, attempt="a1")]
    assert await claim(store, job_id, "a1") == "granted"
    renewed = await store.claim_runs("renew", "ex-a1", mine, 30.0)
    assert [c.verdict for c in renewed] == ["granted"]
    assert await claim(store, job_id, "a2") == "claimed"
    released = await store.claim_runs("release", "ex-a1", mine, 30.0)
    assert [c.verdict for c in released] == ["granted"]
    assert await claim(store, job_id, "a2") == "granted"
    again = await store.claim_runs("renew", "ex-a1", mine, 30.0)
    assert [c.verdict for c in again] == ["expired"]


async def test_stop_waits_for_a_live_claim_but_takes_a_lapsed_one(store: JobStore) -> None:
    live, lapsed = await queued_job(store), await queued_job(store)
    assert await claim(store, live, "a1") == "granted"
    assert await claim(store, lapsed, "a2", lease=0.05) == "granted"
    await asyncio.sleep(0.1)  # the lease of a2 lapses
    assert not await store.stop_if_waiting(live, "stopped by user")
    assert await store.stop_if_waiting(lapsed, "stopped by user")
    assert await claim(store, lapsed, "a3") == "stopped"


AGAIN = 120.0
"""Seconds after which a message sent is due again while no claim holds its job."""


async def due_ids(store: JobStore, at: datetime) -> list[str]:
    """Mark the runs lapsed by ``at``, then the jobs whose compute message is due by ``at``."""
    await store.mark_lapsed(await store.lapsed_runs(now=at), now=at)
    return [job.id for job in await store.due_retries(now=at)]


async def test_a_released_run_is_resent_at_once(store: JobStore) -> None:
    job_id = await queued_job(store)
    mine = [ClaimItem(job_id=job_id, attempt="a1")]
    assert await claim(store, job_id, "a1") == "granted"
    await store.record_events([state(job_id, JobState.RUNNING, attempt="a1", seq=1)])
    now = datetime.now(UTC)
    assert await due_ids(store, now) == []
    await store.claim_runs("release", "ex-a1", mine, 30.0)
    after = datetime.now(UTC)
    assert [lapse.executor for lapse in await store.lapsed_runs(now=after)] == [""]  # no holder
    assert await due_ids(store, after) == [job_id]
    await store.retries_sent([job_id], AGAIN)
    assert await due_ids(store, after + timedelta(seconds=AGAIN / 2)) == []
    assert await claim(store, job_id, "a2") == "granted"  # handed back: no holder to ask


async def test_a_resend_repeats_until_a_claim_takes_the_job(store: JobStore) -> None:
    """A resent copy may be lost, or acked unrun (an executor that still ran the job took it
    for a duplicate): it is sent again every ``AGAIN`` seconds until a claim holds the job."""
    job_id = await queued_job(store)
    assert await claim(store, job_id, "a1") == "granted"
    await store.claim_runs("release", "ex-a1", [ClaimItem(job_id=job_id, attempt="a1")], 30)
    now = datetime.now(UTC)
    assert await due_ids(store, now) == [job_id]
    for _ in range(2):  # each copy sent is lost
        await store.retries_sent([job_id], AGAIN)
        sent = datetime.now(UTC)
        assert await due_ids(store, sent + timedelta(seconds=AGAIN / 2)) == []
        assert await due_ids(store, sent + timedelta(seconds=AGAIN + 1)) == [job_id]
    await store.retries_sent([job_id], 0.0)  # sent, and due again at once: only a claim stops it
    assert await claim(store, job_id, "a2") == "granted"
    assert await due_ids(store, datetime.now(UTC) + timedelta(seconds=1)) == []  # held
    await store.record_events([state(job_id, JobState.COMPLETED, attempt="a2")])
    await store.retries_sent([], AGAIN)
    assert await due_ids(store, datetime.now(UTC) + timedelta(days=1)) == []  # it ended


async def test_a_lapsed_lease_is_resent_once_per_lapse(store: JobStore) -> None:
    job_id = await queued_job(store)
    assert await claim(store, job_id, "a1", lease=30.0) == "granted"
    now = datetime.now(UTC)
    assert await due_ids(store, now + timedelta(seconds=10)) == []
    lapsed_at = now + timedelta(seconds=31)
    found = await store.lapsed_runs(now=lapsed_at)
    assert [(lapse.job_id, lapse.executor) for lapse in found] == [(job_id, "ex-a1")]
    marked = await asyncio.gather(*(store.mark_lapsed(found, now=lapsed_at) for _ in range(4)))
    assert [ids for ids in marked if ids] == [[job_id]]  # several requesters: one marks it
    assert await due_ids(store, lapsed_at) == [job_id]
    await store.retries_sent([job_id], AGAIN)
    assert await due_ids(store, lapsed_at + timedelta(seconds=AGAIN / 2)) == []
    assert await store.lapsed_runs(now=lapsed_at + timedelta(minutes=5)) == []  # marked once
    item = ClaimItem(job_id=job_id, attempt="a2")
    assert await store.take_over(job_id, "a2", "ex-a2", "a1", 0.05, lapsed=True)
    assert [c.verdict for c in await store.claim_runs("renew", "ex-a2", [item], 0.05)] == [
        "granted"
    ]
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await due_ids(store, later) == [job_id]  # the takeover's lease lapsed: once more
    await store.record_events([state(job_id, JobState.RUNNING, attempt="a2")])
    runs = (await store.describe(job_id))["executions"]
    assert [r["attempt"] for r in runs] == [1]  # a lapse is not a retry attempt


async def test_an_ended_job_is_never_resent(store: JobStore) -> None:
    ran, stopped = await queued_job(store), await queued_job(store)
    mine = [ClaimItem(job_id=ran, attempt="a1")]
    assert await claim(store, ran, "a1") == "granted"
    await store.record_events([state(ran, JobState.COMPLETED, attempt="a1")])
    await store.claim_runs("release", "ex-a1", mine, 30.0)
    assert await store.stop_if_waiting(stopped, "stopped by user")
    assert await due_ids(store, datetime.now(UTC) + timedelta(days=1)) == []
