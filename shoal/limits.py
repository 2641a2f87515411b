"""Size limits of what travels over the broker, one place for the client and the requester.

- :data:`MAX_INLINE_BYTES` — the files sent with one job (inline inputs), in total: the
  client counts their content before packing and the archives after; the requester counts
  the archives again (their decoded size, without decoding them).
- :data:`MAX_META_VALUE_BYTES` — one ``meta`` or ``labels`` value of a job or its task.
- :data:`MAX_SUBMISSION_BYTES` — a whole submission body: full inline archives in base64
  plus :data:`MAX_SPEC_BYTES` for the rest of the job. The requester refuses a longer body
  before parsing it.
- :data:`MAX_API_REQUEST_BYTES` — an API request body (a query, never data), except
  ``blob-put``'s, which carries one blob: :data:`MAX_BLOB_REQUEST_BYTES`.
- :data:`MAX_MESSAGE_BYTES` — any message; RabbitMQ's ``max_message_size`` is set to it by
  the set-up (``scripts/ensure-rabbitmq.sh``, ``deploy/rabbitmq-entrypoint.sh``), so the
  broker itself refuses longer ones. Job events are held to it by the recorder.

A body over its limit raises :class:`~shoal.errors.TooLargeError` (exit 2). Kept free of
pydantic and AMQP imports: the CLI's fast path uses it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoal.errors import TooLargeError
from shoal.units import format_bytes

if TYPE_CHECKING:
    from shoal.model import Job

MiB = 1024 * 1024
MAX_INLINE_BYTES = 10 * MiB
MAX_META_VALUE_BYTES = 64 * 1024
MAX_SPEC_BYTES = 1 * MiB
MAX_SUBMISSION_BYTES = (MAX_INLINE_BYTES + 2) // 3 * 4 + MAX_SPEC_BYTES
MAX_API_REQUEST_BYTES = 64 * 1024
MAX_BLOB_REQUEST_BYTES = MAX_SUBMISSION_BYTES
MAX_MESSAGE_BYTES = 64 * MiB


def check_body(body: bytes, limit: int, what: str) -> None:
    """Refuse ``body`` (a ``what``) when it is longer than ``limit``: before any parsing."""
    if len(body) > limit:
        raise TooLargeError(
            f"the {what} is {format_bytes(len(body))}; the limit is {format_bytes(limit)}"
        )


def decoded_size(data: str) -> int:
    """Bytes that the base64 text ``data`` decodes to (padding aware; nothing decoded)."""
    return len(data) // 4 * 3 - data[-2:].count("=")


def inline_bytes(job: Job) -> int:
    """The decoded size of all of ``job``'s inline archives, blobs (``shoal.blobs``) counted
    by the size they declare (the requester checks it against the blob it holds)."""
    total = 0
    for item in job.task.inputs:
        if item.source.type == "inline":
            total += decoded_size(str(item.source.params.get("data", "")))
        elif item.source.type == "blob":
            total += int(item.source.params["size"])
    return total


def check_job(job: Job) -> None:
    """Refuse a parsed job whose inline archives or ``meta``/``labels`` values are too big."""
    inline = inline_bytes(job)
    if inline > MAX_INLINE_BYTES:
        raise TooLargeError(
            f"the files sent with the job are {format_bytes(inline)} packed; the limit is "
            f"{format_bytes(MAX_INLINE_BYTES)} in total (send bigger data as a url input)"
        )
    values = {
        "meta": job.meta,
        "labels": job.labels,
        "task meta": job.task.meta,
    }
    for what, mapping in values.items():
        for key, value in mapping.items():
            size = len(value.encode())
            if size > MAX_META_VALUE_BYTES:
                raise TooLargeError(
                    f"{what} {key!r} is {size} bytes; one value may hold at most "
                    f"{MAX_META_VALUE_BYTES} bytes"
                )
