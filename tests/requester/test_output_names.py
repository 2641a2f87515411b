"""A result event cannot name an output outside its folder: refused on the wire and by the store.

The attack: with a broker account, publish a ``result`` event for someone else's job whose
output names are ``/abs/path`` or ``../../x``, so that ``shoal job get`` of that job writes
outside its ``--output-dir``.
"""

from __future__ import annotations

import pytest

from shoal.errors import ProtocolError
from shoal.requester.store import JobStore, NewJob
from shoal.wire import JobEvent, decode, encode

from .jobs import docker_job, result, tar_gz

BAD_NAMES = ["/abs/path", "../../x", "..", "a/b", ".hidden", ""]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_result_event_with_a_bad_name_does_not_decode(name: str) -> None:
    good = result("job-1", {"ok": tar_gz({"a": b"1"})})
    body = encode(good).replace(b'"ok"', encode_name(name))
    with pytest.raises(ProtocolError, match="output name"):
        decode(body, JobEvent)


def encode_name(name: str) -> bytes:
    return b'"' + name.encode() + b'"'


async def test_the_store_refuses_bad_names_whatever_the_sender_checked(store: JobStore) -> None:
    job = docker_job()
    await store.add_jobs([NewJob(job, job)])
    data = result(job.id, {"ok": tar_gz({"a": b"1"})}).outputs["ok"]
    forged = JobEvent.model_construct(
        job_id=job.id,
        kind="result",
        executor="ex-1",
        seq=0,
        outputs={name: data for name in [*BAD_NAMES, "ok"]},
        truncated=False,
    )
    await store.record_events([forged])
    assert set((await store.outputs(job.id))["outputs"]) == {"ok"}
