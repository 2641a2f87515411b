"""``shoal exec`` after the job is built: submit it, print its ID, maybe wait or follow."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import click

from shoal import limits
from shoal.brokerurl import lost
from shoal.errors import JobFailedError, ProtocolError, UnavailableError, UsageError, from_wire
from shoal.model import Job, JobState, parse_job
from shoal.units import parse_duration
from shoal.wire import CONTENT_TYPE, Submission, SubmitReply, decode, encode

from .settings import ClientSettings


def submit_and_report(
    settings: ClientSettings,
    job: Job,
    *,
    idempotency_key: str | None = None,
    wait: bool = False,
    follow: bool = False,
    id_only: bool = False,
    wait_timeout: str | None = None,
) -> None:
    """Submit ``job`` and print the new job's ID; with ``wait``/``follow`` see it through.

    Raises ``TooLargeError`` (exit 2) for a job over the limits the requester enforces
    (``shoal.limits``), ``UnavailableError`` (exit 3) when the broker or a requester cannot be
    reached, the requester's typed error (exit 2) for a bad job, ``JobFailedError`` when a
    waited-on job fails or is stopped (exit: the job's own code when its command exited
    non-zero, else 125, or 130 when stopped; see ``shoal.outcomes``), ``WaitTimeoutError``
    (exit 124) when it has not ended within ``wait_timeout`` of waiting (it is left as it is).
    """
    submission, deadline = checked_submission(
        job, idempotency_key=idempotency_key, wait=wait, follow=follow, wait_timeout=wait_timeout
    )
    if not (wait or follow):
        report(submit_blocking(settings, submission), id_only=id_only, wait=False)
        return
    import asyncio

    asyncio.run(_submit(settings, submission, follow, id_only, deadline))


def checked_submission(
    job: Job,
    *,
    idempotency_key: str | None,
    wait: bool,
    follow: bool,
    wait_timeout: str | None,
) -> tuple[Submission, float | None]:
    """The submission of ``job`` and the wait's deadline, after every check the client makes
    before sending: ``--dry-run`` runs it too, so it accepts no job a submit would refuse
    here."""
    deadline = waiting_deadline(wait=wait, follow=follow, wait_timeout=wait_timeout)
    return as_submission(job, idempotency_key), deadline


def waiting_deadline(*, wait: bool, follow: bool, wait_timeout: str | None) -> float | None:
    """Seconds of ``--wait-timeout``, which needs ``--wait`` or ``--follow`` (``UsageError``)."""
    deadline = wait_deadline(wait_timeout)
    if deadline is not None and not (wait or follow):
        raise UsageError("--wait-timeout needs --wait or --follow")
    return deadline


def as_submission(job: Job | Mapping[str, Any], idempotency_key: str | None = None) -> Submission:
    """The submission of ``job`` (a spec dict is validated first: ``InvalidJobError``) after
    the limits the requester enforces (``TooLargeError``)."""
    checked = job if isinstance(job, Job) else parse_job(dict(job))
    submission = Submission(job=checked, idempotency_key=idempotency_key)
    limits.check_job(checked)
    limits.check_body(encode(submission), limits.MAX_SUBMISSION_BYTES, "submission")
    return submission


def member_key(idempotency_key: str | None, index: int) -> str | None:
    """The idempotency key of job ``index`` of many submitted with ``idempotency_key``:
    ``KEY:index``, so the same list submitted again with the same key makes no second job."""
    return None if idempotency_key is None else f"{idempotency_key}:{index}"


def translate_here(job: Job) -> str | None:
    """Translate ``job`` as a requester would (``--dry-run``'s last check), raising its typed
    error (the requester's admission limits too, as ``SHOAL_MAX_JOB_MEMORY`` here sets them);
    a note instead when this installation has no translator for the job's type (a
    requester's plug-in may have one)."""
    from shoal.model import NATIVE_ENGINES
    from shoal.requester.admission import DEFAULT_MAX_JOB_MEMORY, Admission
    from shoal.requester.translate import default_registry, translate_job
    from shoal.units import parse_memory

    limit = os.environ.get("SHOAL_MAX_JOB_MEMORY")
    Admission(max_memory=parse_memory(limit) if limit else DEFAULT_MAX_JOB_MEMORY).check(job)
    registry = default_registry()
    job_type = job.engine_type
    if job_type not in NATIVE_ENGINES and job_type.lower() not in registry.job_types():
        return f"job type {job_type!r} is not translated here: no translator for it is installed"
    translate_job(job, registry)
    return None


def wait_deadline(value: str | None) -> float | None:
    """Seconds of ``--wait-timeout`` (a duration such as ``90s`` or ``5m``), or ``None``."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise UsageError(f"--wait-timeout: {error}") from None


def checked(answer: SubmitReply) -> SubmitReply:
    """``answer`` if it names a job; the requester's typed error raised otherwise."""
    if answer.error is not None:
        raise from_wire(answer.error.model_dump())
    if not answer.job_id:
        raise ProtocolError("the requester's reply names no job")
    return answer


def submit_blocking(settings: ClientSettings, submission: Submission) -> SubmitReply:
    """Submit over one blocking connection (``shoal.client.blocking``): no asyncio, no aiormq.

    The submission expires when nobody answered in time, so a timed-out ``exec`` (exit 3)
    does not start a job later (expired submissions are dead-lettered, not dropped).
    """
    from pamqp.commands import Basic

    from . import blocking

    timeout = settings.rpc_timeout
    connection = blocking.connect(
        settings.broker_url.get_secret_value(), timeout=settings.connect_timeout
    )
    try:
        connection.consume_replies()
        properties = Basic.Properties(
            content_type=CONTENT_TYPE,
            correlation_id="c1",
            user_id=connection.user,
            expiration=str(max(1, round(timeout * 1000))),
        )
        body = connection.call(
            blocking.SUBMIT_QUEUE, encode(submission), properties, timeout=timeout
        )
    except blocking.ReturnedError:
        raise UnavailableError(
            f"queue {blocking.SUBMIT_QUEUE} does not exist: no requester has started on this "
            "broker (shoal serve requester)"
        ) from None
    except (OSError, blocking.BrokerClosedError) as error:
        raise lost(connection.url, error) from None
    finally:
        connection.close()
    if body is None:
        raise UnavailableError(f"no requester answered within {timeout:g}s; is one running?")
    return checked(decode(body, SubmitReply))


def report(reply: SubmitReply, *, id_only: bool, wait: bool) -> None:
    """Print the new job's ID (and, for people, how to follow it)."""
    job_id = str(reply.job_id)
    if id_only:
        click.echo(job_id)
    else:
        origin = f" (translated from {reply.original_id})" if reply.original_id != job_id else ""
        click.echo(f"Job ID: {job_id}{origin}")
        if not wait:
            click.echo(f"Follow it with: shoal job logs -f {job_id}", err=True)
    sys.stdout.flush()


async def _submit(
    settings: ClientSettings,
    submission: Submission,
    follow: bool,
    id_only: bool,
    deadline: float | None,
) -> None:
    """Submit, then wait for the job's end (``--wait``/``--follow``) on one async session."""
    from .session import open_session

    async with open_session(settings) as session:
        reply = await session.submit(submission)
        job_id = str(reply.job_id)
        report(reply, id_only=id_only, wait=True)
        from .follow import echo_lowered, wait_for_end, within

        seen: dict[str, str] = {job_id: "state unknown"}
        waiting = wait_for_end(
            session,
            job_id,
            follow=follow,
            spin=not id_only,
            seen=seen,
            owner=session.user,
            lowered=echo_lowered,
        )
        state = await within(deadline, waiting, seen)
        if state != JobState.COMPLETED:
            ended(await session.api("describe", job_id))
        if not id_only:
            click.echo(f"Job {job_id} completed", err=True)


def failure_line(record: Mapping[str, Any]) -> str:
    """``job ID failed (CATEGORY): why`` from a describe record (``shoal.outcomes``)."""
    from shoal.outcomes import headline

    return f"job {record['id']} {headline(record)}"


def ended(record: Mapping[str, Any]) -> None:
    """``JobFailedError`` with the job's exit status unless the ended job completed."""
    from shoal.outcomes import exit_status

    if record["state"] != JobState.COMPLETED:
        raise JobFailedError(failure_line(record), exit_status(record))
