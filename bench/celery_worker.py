"""The Celery baselines of ``bench.bench_requester``: Celery workers on the same broker.

Four set-ups, chosen by ``BENCH_CELERY_SETUP``:

- ``solo`` (default): a no-op task; a ``--pool=solo`` worker with the bench's prefetch, on
  a classic queue acking on receipt: Celery at its fastest;
- ``quorum``: the same with the guarantees Shoal gives (quorum queue, ack after the task);
- ``stock``: the no-op task on the worker as Celery ships it: prefork pool with one process
  per CPU, prefetch multiplier 4, classic queue, ack on receipt;
- ``work``: the requester's work as a Celery task (:func:`submit`), with Shoal's guarantees
  (quorum queue, ack after the task, solo pool, the bench's prefetch).

The worker counts the tasks it ran (across its pool's processes); at the first and at the
N-th it prints ``CELERY-FIRST <t>`` / ``CELERY-DONE <t>`` (``time.time()``) so the bench
reads the rate off the worker's own clock. Configured by ``BENCH_BROKER_URL``,
``BENCH_TASKS``, ``BENCH_PREFETCH`` and, for ``work``, ``BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import time

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from shoal.model import JobState
from shoal.requester.access import Access
from shoal.requester.store import JobStore, Limits
from shoal.requester.submissions import prepare
from shoal.requester.translate import TranslatorRegistry, default_registry
from shoal.wire import CONTENT_TYPE, ComputeRequest, SubmitReply, encode

SETUP = os.environ.get("BENCH_CELERY_SETUP", "solo")
SHOAL_GUARANTEES = SETUP in ("quorum", "work")
QUEUE = f"bench.celery.{SETUP}"
TASKS = int(os.environ.get("BENCH_TASKS", "0"))

app = Celery("bench", broker=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_default_queue=QUEUE,
    task_queues=[
        Queue(  # type: ignore[no-untyped-call]
            QUEUE,
            queue_arguments={"x-queue-type": "quorum"} if SHOAL_GUARANTEES else None,
            durable=True,
        )
    ],
    task_acks_late=SHOAL_GUARANTEES,
    broker_transport_options={"confirm_publish": True},
    worker_redirect_stdouts=False,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
if SETUP != "stock":
    app.conf.worker_prefetch_multiplier = int(os.environ.get("BENCH_PREFETCH", "128"))

_seen = multiprocessing.Value("l", 0)
"""Tasks run so far; created before the pool forks, so its processes share it."""


def _count() -> None:
    with _seen.get_lock():
        _seen.value += 1
        seen = _seen.value
    if seen == 1:
        print(f"CELERY-FIRST {time.time()}", flush=True)
    if seen == TASKS:
        print(f"CELERY-DONE {time.time()}", flush=True)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop(index: int) -> None:
    """Nothing, counted."""
    _count()


@functools.cache
def _requester_parts() -> tuple[asyncio.AbstractEventLoop, JobStore, TranslatorRegistry]:
    """The worker's event loop (for the async store), store and translators, made once."""
    loop = asyncio.new_event_loop()
    url = os.environ["BENCH_DATABASE_URL"]
    store = loop.run_until_complete(JobStore.open(url, Limits(1 << 20, 32 << 20)))
    return loop, store, default_registry()


@app.task(name="bench.submit")  # type: ignore[untyped-decorator]
def submit(body: str, compute_queue: str, reply_to: str) -> None:
    """What the requester does for one submission, with its own code: parse and translate,
    store (SQLite, ``synchronous=FULL``), publish the compute message (persistent,
    mandatory, confirmed) to ``compute_queue``, mark it queued, reply."""
    loop, store, registry = _requester_parts()
    item = prepare(body.encode(), registry, "bench", Access(requester="bench"))
    job_id = item.runnable.id
    states = loop.run_until_complete(store.write_round([item], []))
    properties = {"content_type": CONTENT_TYPE, "content_encoding": "utf-8", "exchange": ""}
    with app.producer_or_acquire() as producer:
        if states[job_id] is JobState.PENDING:
            compute = encode(ComputeRequest(job=item.runnable))
            producer.publish(
                compute,
                routing_key=compute_queue,
                delivery_mode=2,
                mandatory=True,
                message_id=job_id,
                **properties,
            )
            loop.run_until_complete(store.write_round([], [job_id]))
        reply = SubmitReply(job_id=job_id, original_id=item.original.id)
        producer.publish(encode(reply), routing_key=reply_to, **properties)
    _count()
