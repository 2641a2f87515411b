"""``shoal.api``: queries answered from the job store, and ``stop``.

Ops (``ApiRequest.op``): ``list`` (params ``states`` or ``state``, ``labels`` {k: v},
``since``, ``limit``, ``after``: the jobs), ``page`` (the same, with the counts and the next
cursor, ``shoal.requester.store.listing``), ``summary`` (counts by state and job type), and per
job ``resolve`` (its summary), ``describe``, ``logs``, ``get`` (the job's state, its outputs
as base64 tar.gz per result name and ``left_out``: notes on the results it does not have)
and ``stop``; ``status`` (the live services and the queues' depth, ``shoal.requester.fleet``:
job IDs of running jobs only for operators); and the blob ops ``blobs-missing``,
``blob-put``, ``blob-get`` (``shoal.requester.blobapi``). A job is named by its ID or by a unique
prefix of it (at least six characters after ``j-``), looked up among the caller's jobs only.
Each answers only about the jobs the caller (the request's broker-checked ``user_id``) may
see (``shoal.requester.access``); another user's job is "not found".
Stopping a job that has not started marks it ``stopped`` in the store, so the requester never
hands it out again and executors that see its compute message skip it (their claim of the run
is answered ``stopped``, see ``shoal.requester.claims``); stopping a running job (or one a live
claim holds) sends the control message, and the executor running it kills it and reports
the end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from shoal import limits
from shoal.broker import publish
from shoal.errors import ProtocolError, ShoalError, UsageError
from shoal.model import JOB_ID, TERMINAL_STATES, JobState
from shoal.names import FLEET_EXCHANGE, lane
from shoal.wire import ApiReply, ApiRequest, ControlMessage, JobEvent, WireError, decode

from . import delivery
from .access import Access
from .blobapi import OPS as BLOB_OPS
from .blobapi import handle_blob
from .replies import reply
from .store import BlobStore, JobFilter, JobStore
from .store.listing import Scope
from .submissions import RetryPolicy
from .waiting import WAITING_STATES, waiting_for

log = structlog.get_logger(__name__)

Status = Callable[[bool], Awaitable[dict[str, Any]]]
"""The ``status`` answer, for an operator (True) or not."""

MAX_LIST = 1000
"""The most jobs one ``list`` or ``page`` answer holds; the CLI pages for more."""


def job_filter(params: dict[str, Any], scope: Scope) -> JobFilter:
    """The jobs a ``list``, ``page`` or ``summary`` request asks for: ``states`` (or one
    ``state``), ``labels`` {k: v}, ``since`` (ISO 8601 with a zone); ``UsageError`` if bad."""
    labels = params.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise UsageError("labels must be a map of strings")
    states = params.get("states") or ([params["state"]] if params.get("state") else [])
    known = {s.value for s in JobState}
    if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
        raise UsageError("states must be a list of state names")
    for state in states:
        if state not in known:
            raise UsageError(f"unknown state {state!r}; one of {', '.join(sorted(known))}")
    return JobFilter(
        states=tuple(dict.fromkeys(states)), labels=labels, since=_since(params), scope=scope
    )


def _since(params: dict[str, Any]) -> datetime | None:
    value = params.get("since")
    if value is None:
        return None
    try:
        since = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        since = None
    if since is None or since.tzinfo is None:
        raise UsageError(f"since must be an ISO 8601 time with a zone, not {value!r}")
    return since.astimezone(UTC)


class Api:
    """Consumer callback for ``shoal.api``."""

    def __init__(
        self,
        store: JobStore,
        replies: AbstractExchange,
        events: AbstractExchange,
        control: AbstractExchange,
        *,
        list_limit: int,
        retry: RetryPolicy,
        access: Access,
        job_types: dict[str, Any] | None = None,
        status: Status | None = None,
        blobs: BlobStore | None = None,
    ) -> None:
        self._status = status
        self._blobs = blobs or store.blobs()
        self._job_types = job_types or {"job_types": [], "untranslated": []}
        self._store = store
        self._access = access
        self._replies = replies
        self._events = events
        self._control = control
        self._list_limit = list_limit
        self._retry = retry

    async def __call__(self, message: AbstractIncomingMessage) -> None:
        """Answer one request; settle it after the reply."""
        if not message.reply_to:
            log.warning("api.refused", error="request without reply_to")
            await delivery.dead_letter(message)
            return
        try:
            try:
                limits.check_body(message.body, limits.MAX_BLOB_REQUEST_BYTES, "API request")
                request = decode(message.body, ApiRequest)
                if message.exchange == FLEET_EXCHANGE and request.op != "blob-get":
                    raise ProtocolError(f"{FLEET_EXCHANGE} carries only blob-get, not {request.op}")
                if request.op != "blob-put":
                    limits.check_body(message.body, limits.MAX_API_REQUEST_BYTES, "API request")
                caller = self._access.caller(message.user_id)
                answer = ApiReply(result=await self.handle(request, caller))
            except ShoalError as error:
                answer = ApiReply(error=WireError.of(error))
            await reply(self._replies, message, answer)
        except Exception as error:
            log.warning("api.retry", error=f"{type(error).__name__}: {error}")
            await delivery.retry_later(message, self._retry.base_delay, self._retry.max_delay)
            return
        await delivery.ack(message)

    async def handle(self, request: ApiRequest, caller: str) -> Any:
        """The result of ``request`` by ``caller``; ``ShoalError`` for a bad one."""
        if request.op == "job-types":
            return self._job_types
        if request.op == "status":
            if self._status is None:
                raise ShoalError("this requester does not keep a cluster view")
            return await self._status(self._access.is_operator(caller))
        if request.op in BLOB_OPS:
            return await handle_blob(request.op, request.params, caller, self._blobs, self._access)
        scope = self._access.scope(caller)
        if request.op == "list":
            return (await self._page(request.params, scope))["jobs"]
        if request.op == "page":
            return await self._page(request.params, scope)
        if request.op == "summary":
            return await self._store.counts(job_filter(request.params, scope))
        if not request.job_id:
            raise ProtocolError(f"api op {request.op!r} needs a job_id")
        job_id = await self._store.match(request.job_id, scope)
        job = await self._store.resolve(job_id)
        self._access.check_job(caller, job)
        if request.op == "resolve":
            return job
        if request.op == "describe":
            record = await self._store.describe(job_id)
            if record["state"] in WAITING_STATES:
                nodes = await self._store.alive_nodes()
                engine = record["engine_spec"]
                kind = lane(str(engine["type"]), engine.get("params", {}).get("runtime"))
                record["waiting"] = waiting_for(kind, nodes)
            return record
        if request.op == "logs":
            return await self._store.logs(job_id)
        if request.op == "get":
            return await self._store.outputs(job_id)
        reason = str(request.params.get("reason") or "stopped by user")
        return await self._stop(job, reason)

    async def _page(self, params: dict[str, Any], scope: Scope) -> dict[str, Any]:
        limit = params.get("limit") or self._list_limit
        if not isinstance(limit, int) or not 0 < limit <= MAX_LIST:
            raise UsageError(f"limit must be an integer from 1 to {MAX_LIST}")
        after = params.get("after")
        if after is not None and not isinstance(after, str):
            raise UsageError("after must be a job ID")
        if after is not None and not JOB_ID.fullmatch(after):
            after = await self._store.match(after, scope)
        return await self._store.page(job_filter(params, scope), limit, after)

    async def _stop(self, job: dict[str, Any], reason: str) -> dict[str, Any]:
        job_id = job["id"]
        if JobState(job["state"]) in TERMINAL_STATES:
            return {"job_id": job_id, "state": job["state"], "stopping": False}
        stopped = await self._store.stop_if_waiting(job_id, reason)
        delivered = await self._tell_executors(ControlMessage(job_id=job_id, reason=reason))
        if stopped:
            event = JobEvent(
                job_id=job_id,
                owner=job["owner"],
                kind="state",
                state=JobState.STOPPED,
                error=reason,
            )
            await publish(self._events, event.routing_key, event, user_id=self._access.requester)
            log.info("job.stopped", job_id=job_id, while_state=job["state"])
            return {"job_id": job_id, "state": JobState.STOPPED.value, "stopping": False}
        if not delivered:
            raise ShoalError(f"job {job_id} is running but no executor is listening for stops")
        log.info("job.stopping", job_id=job_id)
        return {"job_id": job_id, "state": JobState.RUNNING.value, "stopping": True}

    async def _tell_executors(self, control: ControlMessage) -> bool:
        try:
            await publish(self._control, "", control)
        except aio_pika.exceptions.DeliveryError:
            return False
        return True
