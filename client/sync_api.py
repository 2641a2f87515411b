"""The public Python API, blocking: :class:`Client` (``shoal.Client``).

Each call runs the matching :class:`shoal.client.api.AsyncClient` method on an event loop that
the client keeps in a thread of its own, so the connection stays alive (heartbeats
answered) between calls, and a ``Client`` works in a program that has an event loop running
already (a notebook). Errors are the same typed :mod:`shoal.errors` exceptions.

Example::

    import shoal

    with shoal.Client() as client:
        submitted = client.submit(shoal.exec_job("python", ["python", "-c", "print(42)"]))
        client.wait(submitted.job_id, timeout=300)
        print("".join(chunk.data for chunk in client.logs(submitted.job_id)))
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import AsyncGenerator, Coroutine, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from shoal.errors import ShoalError, UsageError

from .api import AsyncClient, JobLike, Outputs, Submitted
from .extract import DEFAULT_LIMIT
from .follow import LogChunk
from .session import SUBMIT_WINDOW
from .settings import ClientSettings

T = TypeVar("T")


class Client:
    """A connection to a Shoal cluster, for programs without asyncio: the methods of
    :class:`shoal.client.api.AsyncClient`, blocking.

    Example::

        with shoal.Client("amqp://guest:guest@127.0.0.1:5672/") as client:
            print(client.describe(job_id)["state"])
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        settings: ClientSettings | None = None,
        rpc_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self._async = AsyncClient(
            broker_url,
            settings=settings,
            rpc_timeout=rpc_timeout,
            connect_timeout=connect_timeout,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def settings(self) -> ClientSettings:
        """The settings the client connects with."""
        return self._async.settings

    def __enter__(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="shoal-client", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._call(self._async.__aenter__())
        except BaseException:
            self._shut()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._call(self._async.__aexit__(kind, error, traceback))
        finally:
            self._shut()

    def _shut(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the client's loop and wait for its result."""
        if self._loop is None:
            work.close()
            raise UsageError("the client is not open: use it inside 'with'")
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    def submit(self, job: JobLike, *, idempotency_key: str | None = None) -> Submitted:
        """Submit one job; see :meth:`shoal.client.api.AsyncClient.submit`.

        Example::

            job_id = client.submit(shoal.exec_job("python", ["python", "-V"])).job_id
        """
        return self._call(self._async.submit(job, idempotency_key=idempotency_key))

    def submit_many(
        self,
        jobs: Iterable[JobLike],
        *,
        idempotency_key: str | None = None,
        window: int = SUBMIT_WINDOW,
    ) -> builtins.list[Submitted | ShoalError]:
        """Submit every job, pipelined; one result per job, in order: :class:`Submitted`
        or the typed error that refused it. See :meth:`shoal.client.api.AsyncClient.submit_many`.

        Example::

            results = client.submit_many(jobs)
        """
        return self._call(
            self._async.submit_many(jobs, idempotency_key=idempotency_key, window=window)
        )

    def describe(self, job_id: str) -> dict[str, Any]:
        """The job's record (``shoal job describe --output-format json``).

        Example::

            state = client.describe(job_id)["state"]
        """
        return self._call(self._async.describe(job_id))

    def list(
        self,
        *,
        states: Sequence[str] = (),
        labels: Mapping[str, str] | None = None,
        since: str | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """Jobs, newest first; see :meth:`shoal.client.api.AsyncClient.list`.

        Example::

            ids = [job["id"] for job in client.list(states=["failed"], limit=0)["jobs"]]
        """
        return self._call(
            self._async.list(states=states, labels=labels, since=since, limit=limit, after=after)
        )

    def wait(
        self, job_id: str, *, timeout: float | None = None, check: bool = True
    ) -> dict[str, Any]:
        """Wait until the job ended and is recorded; its record. See
        :meth:`shoal.client.api.AsyncClient.wait` for the errors.

        Example::

            record = client.wait(job_id, timeout=600, check=False)
        """
        return self._call(self._async.wait(job_id, timeout=timeout, check=check))

    def logs(self, job_id: str) -> builtins.list[LogChunk]:
        """The job's output so far, in order.

        Example::

            print("".join(chunk.data for chunk in client.logs(job_id)))
        """
        return self._call(self._async.logs(job_id))

    def follow_logs(self, job_id: str) -> Iterator[LogChunk]:
        """The job's output, stored then live, until the job ended and is recorded.

        Example::

            for chunk in client.follow_logs(job_id):
                print(chunk.data, end="")
        """
        chunks = self._async.follow_logs(job_id)
        try:
            while True:
                try:
                    yield self._call(_next(chunks))
                except StopAsyncIteration:
                    return
        finally:
            if self._loop is not None:
                self._call(chunks.aclose())

    def get(
        self,
        job_id: str,
        dest: str | Path | None = None,
        *,
        max_size: int = DEFAULT_LIMIT,
        allow_left_out: bool = False,
    ) -> Outputs:
        """Write the ended job's outputs to ``dest/NAME``; see
        :meth:`shoal.client.api.AsyncClient.get`.

        Example::

            client.get(job_id, "results")
        """
        return self._call(
            self._async.get(job_id, dest, max_size=max_size, allow_left_out=allow_left_out)
        )

    def stop(self, job_id: str) -> dict[str, Any]:
        """Stop the job; see :meth:`shoal.client.api.AsyncClient.stop`.

        Example::

            client.stop(job_id)
        """
        return self._call(self._async.stop(job_id))

    def rerun(self, job_id: str) -> Submitted:
        """Submit the job's spec again as a new job, labelled ``rerun_of=JOB_ID``.

        Example::

            again = client.rerun(job_id)
        """
        return self._call(self._async.rerun(job_id))


async def _next(chunks: AsyncGenerator[LogChunk, None]) -> LogChunk:
    return await anext(chunks)
