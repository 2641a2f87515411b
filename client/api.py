"""The public Python API, asynchronous: :class:`AsyncClient` (``shoal.AsyncClient``).

The ``shoal`` CLI is built on it, so a program gets exactly what the commands do, without
any printing: every failure is a typed :mod:`shoal.errors` exception (``UnavailableError``
when the broker or a requester cannot be reached, ``NotFoundError`` for an unknown job,
``JobFailedError`` from :meth:`AsyncClient.wait`, ``WaitTimeoutError`` when its deadline
passes, the requester's own error for a refused job).

One client is one connection to RabbitMQ, opened by ``async with`` and closed at its end;
the calls of one client may run concurrently (replies are matched by correlation ID).

Example::

    import shoal

    async with shoal.AsyncClient() as client:
        job = shoal.exec_job("python", ["python", "-c", "print(6 * 7)"])
        submitted = await client.submit(job)
        await client.wait(submitted.job_id, timeout=300)
        print(await client.logs(submitted.job_id))
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from shoal.errors import (
    JobNotEndedError,
    OutputsLeftOutError,
    ShoalError,
    UsageError,
)
from shoal.model import TERMINAL_STATES, Job
from shoal.wire import Submission, SubmitReply

from .blobs import upload_shared
from .extract import DEFAULT_LIMIT, extract, output_folder
from .follow import LogChunk, LogPrinter, stored_chunks, wait_for_end, within
from .listing import fetch, full_ids, since_time
from .session import SUBMIT_WINDOW, Session, open_session
from .settings import ClientSettings, Secret
from .submit import as_submission, ended, member_key

JobLike = Job | Mapping[str, Any]
"""A :class:`shoal.model.Job`, or a job spec as a dict (what ``shoal job run`` reads)."""


@dataclass(frozen=True)
class Submitted:
    """An accepted submission: the job to follow, and the job submitted (the same ID
    unless the requester translated it into a new job)."""

    job_id: str
    original_id: str

    @classmethod
    def from_reply(cls, reply: SubmitReply) -> Submitted:
        """From the requester's reply (which names a job)."""
        job_id = str(reply.job_id)
        return cls(job_id=job_id, original_id=str(reply.original_id or job_id))


@dataclass(frozen=True)
class Outputs:
    """What :meth:`AsyncClient.get` wrote: each output's folder and the files in it."""

    job_id: str
    folders: dict[str, Path] = field(default_factory=dict)
    files: dict[str, list[str]] = field(default_factory=dict)
    """Per output, the names of the files written (relative to its folder)."""
    left_out: list[str] = field(default_factory=list)
    """Why outputs were left out (over the executor's or the store's limit); empty if none."""

    def check(self) -> None:
        """Raise ``OutputsLeftOutError`` if some outputs were left out."""
        if self.left_out:
            raise OutputsLeftOutError(f"job {self.job_id}: " + "; ".join(self.left_out))


def settings_for(
    broker_url: str | None = None,
    *,
    settings: ClientSettings | None = None,
    rpc_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> ClientSettings:
    """``settings`` (by default from the ``SHOAL_*`` environment), with the values given."""
    chosen = settings or ClientSettings.from_env()
    changes: dict[str, Any] = {}
    if broker_url is not None:
        changes["broker_url"] = Secret(broker_url)
    if rpc_timeout is not None:
        changes["rpc_timeout"] = rpc_timeout
    if connect_timeout is not None:
        changes["connect_timeout"] = connect_timeout
    return dataclasses.replace(chosen, **changes)


class AsyncClient:
    """A connection to a Shoal cluster, for asyncio programs.

    Settings not given come from the ``SHOAL_*`` environment as for the CLI
    (``SHOAL_BROKER_URL``, default ``amqp://guest:guest@127.0.0.1:5672/``; several
    comma-separated addresses for a cluster).

    Example::

        async with shoal.AsyncClient("amqp://guest:guest@127.0.0.1:5672/") as client:
            page = await client.list(states=["running"])
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        settings: ClientSettings | None = None,
        rpc_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self.settings = settings_for(
            broker_url,
            settings=settings,
            rpc_timeout=rpc_timeout,
            connect_timeout=connect_timeout,
        )
        self._stack: contextlib.AsyncExitStack | None = None
        self._session: Session | None = None

    async def __aenter__(self) -> Self:
        stack = contextlib.AsyncExitStack()
        self._session = await stack.enter_async_context(open_session(self.settings))
        self._stack = stack
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            await stack.__aexit__(kind, error, traceback)

    @property
    def session(self) -> Session:
        """The open connection (the CLI's own commands use it); ``UsageError`` outside
        ``async with``."""
        if self._session is None:
            raise UsageError("the client is not open: use it inside 'async with'")
        return self._session

    async def submit(self, job: JobLike, *, idempotency_key: str | None = None) -> Submitted:
        """Submit one job (a :class:`Job`, as ``exec_job`` builds, or a spec dict).

        The same ``idempotency_key`` again returns the first job instead of a new one. An
        archive (``code``) this client submitted before goes to the requester once, as a
        blob, as in :meth:`submit_many`.

        Example::

            submitted = await client.submit(shoal.exec_job("python", ["python", "-V"]))
        """
        session = self.session
        submission = as_submission(job, idempotency_key)
        [submission] = await upload_shared(session, [submission], session.blob_memory)
        reply = await session.submit(submission)
        return Submitted.from_reply(reply)

    async def submit_many(
        self,
        jobs: Iterable[JobLike],
        *,
        idempotency_key: str | None = None,
        window: int = SUBMIT_WINDOW,
    ) -> builtins.list[Submitted | ShoalError]:
        """Submit every job, pipelined (up to ``window`` in flight, each publish confirmed).

        One result per job, in order: :class:`Submitted`, or the typed error that refused
        it (a job that fails the local checks is never sent; a refused job does not stop
        the others). With ``idempotency_key``, job ``i`` gets the key ``KEY:i``, so the same
        list submitted again makes no second job.

        Example::

            results = await client.submit_many(jobs)
            refused = [r for r in results if isinstance(r, shoal.errors.ShoalError)]
        """
        results: builtins.list[Submitted | ShoalError | None] = []
        wanted: builtins.list[Submission] = []
        for index, job in enumerate(jobs):
            try:
                wanted.append(as_submission(job, member_key(idempotency_key, index)))
                results.append(None)
            except ShoalError as error:
                results.append(error)
        replies = iter(await self.session.submit_many(wanted, window))
        return [r if r is not None else _submitted(next(replies)) for r in results]

    async def describe(self, job_id: str) -> dict[str, Any]:
        """The job's record: state, engine, original spec, executions, logs and outputs
        (what ``shoal job describe --output-format json`` prints). A short ID prefix works.

        Example::

            state = (await client.describe(job_id))["state"]
        """
        record: dict[str, Any] = await self.session.api("describe", job_id)
        return record

    async def list(
        self,
        *,
        states: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        since: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """Jobs, newest first: ``{"jobs": [...], "total", "skipped", "next"}``.

        ``since`` is a duration back from now (``2h``) or an ISO 8601 time; ``limit`` the
        most jobs (``None``: the requester's default, 50; ``0``: all); ``after`` the
        ``next`` cursor of an earlier page.

        Example::

            page = await client.list(labels={"batch": batch_id}, limit=0)
        """
        params: dict[str, Any] = {"labels": dict(labels or {})}
        if states:
            params["states"] = list(dict.fromkeys(states))
        if since is not None:
            params["since"] = since_time(since)
        return await fetch(self.session, params, limit, after)

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the deadline names the jobs left
        check: bool = True,
    ) -> dict[str, Any]:
        """Wait until the job ended and is recorded (its logs and outputs can be read);
        its record. ``WaitTimeoutError`` after ``timeout`` seconds (the job is left as it
        is); with ``check``, ``JobFailedError`` (its ``exit_code`` the job's own, 125, or
        130 when stopped) unless the job completed.

        Example::

            record = await client.wait(job_id, timeout=600)
        """
        [full_id] = await full_ids(self.session, [job_id])
        seen = {full_id: "state unknown"}
        waiting = wait_for_end(self.session, full_id, follow=False, spin=False, seen=seen)
        await within(timeout, waiting, seen)
        record = await self.describe(full_id)
        if check:
            ended(record)
        return record

    async def logs(self, job_id: str) -> builtins.list[LogChunk]:
        """The job's output so far, as the store keeps it, in order.

        Example::

            text = "".join(c.data for c in await client.logs(job_id) if c.stream == "stdout")
        """
        return stored_chunks(await self.session.api("logs", job_id))

    async def follow_logs(self, job_id: str) -> AsyncGenerator[LogChunk, None]:
        """The job's output, stored then live, each chunk once, until the job ended and
        is recorded (then :meth:`describe` tells how it ended).

        Example::

            async for chunk in client.follow_logs(job_id):
                print(chunk.data, end="")
        """
        [full_id] = await full_ids(self.session, [job_id])
        inbox: asyncio.Queue[LogChunk | None] = asyncio.Queue()
        printer = LogPrinter(write=inbox.put_nowait, truncated=lambda stream: None)

        async def watch() -> None:
            try:
                await wait_for_end(self.session, full_id, follow=True, spin=False, printer=printer)
            finally:
                inbox.put_nowait(None)

        watching = asyncio.create_task(watch())
        try:
            while (chunk := await inbox.get()) is not None:
                yield chunk
            await watching
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, ShoalError):
                await watching

    async def get(
        self,
        job_id: str,
        dest: str | Path | None = None,
        *,
        max_size: int = DEFAULT_LIMIT,
        allow_left_out: bool = False,
    ) -> Outputs:
        """Write the ended job's outputs to ``dest/NAME`` (default ``./JOB_ID``), refusing
        any archive member that would leave its folder or unpack past ``max_size`` bytes.

        ``JobNotEndedError`` if the job has not ended; ``OutputsLeftOutError`` (after the
        others are written) if some were left out, unless ``allow_left_out``.

        Example::

            outputs = await client.get(job_id, "results")
            print(outputs.folders["outputs"])
        """
        answer = await self.session.api("get", job_id)
        found = str(answer["job_id"])
        state = answer.get("state")
        if state is not None and state not in TERMINAL_STATES:
            raise JobNotEndedError(
                f"job {found} is {state}: its outputs come once it ends (shoal job wait {found})"
            )
        target = Path(found) if dest is None else Path(dest)
        outputs = Outputs(found, left_out=list(answer.get("left_out") or []))
        for name, item in answer["outputs"].items():
            if item["data"] is None:
                continue
            folder = output_folder(target, name)
            data = base64.b64decode(item["data"])
            outputs.files[name] = extract(data, folder, f"output {name}", max_size)
            outputs.folders[name] = folder
        if not allow_left_out:
            outputs.check()
        return outputs

    async def stop(self, job_id: str) -> dict[str, Any]:
        """Stop the job: a queued one never runs, a running one gets SIGTERM, then SIGKILL
        after its grace. ``{"job_id", "state", "stopping"}``.

        Example::

            await client.stop(job_id)
        """
        answer: dict[str, Any] = await self.session.api("stop", job_id)
        return answer

    async def rerun(self, job_id: str) -> Submitted:
        """Submit the job's spec again as a new job, labelled ``rerun_of=JOB_ID``.

        Example::

            again = await client.rerun(job_id)
        """
        from .rerun import rerun_job

        return await self.submit(rerun_job(await self.describe(job_id)))


def _submitted(result: SubmitReply | ShoalError) -> Submitted | ShoalError:
    return result if isinstance(result, ShoalError) else Submitted.from_reply(result)
