"""The API's blob ops on a real broker and store: upload once, ask which are missing, fetch;
the hash is checked, a blob may exceed the 64 KiB of other API requests, and only
executors and operators read blobs."""

from __future__ import annotations

import base64
import os

import pytest

from shoal.blobs import digest
from shoal.errors import AccessError
from shoal.limits import MAX_API_REQUEST_BYTES
from shoal.requester.access import Access
from shoal.requester.blobapi import handle_blob
from shoal.requester.service import Requester
from shoal.requester.store import JobStore

from .amqp import Client
from .test_recorder_api import api

pytestmark = pytest.mark.rabbitmq


async def test_a_blob_is_uploaded_once_then_held_and_fetched(
    client: Client, requester: Requester
) -> None:
    data = os.urandom(MAX_API_REQUEST_BYTES * 4)  # more than any other API request may be
    sha256 = digest(data)
    missing = await api(client, "blobs-missing", hashes=[sha256])
    assert missing.result == {"missing": [sha256]}
    put = await api(client, "blob-put", sha256=sha256, data=base64.b64encode(data).decode())
    assert put.error is None, put.error
    assert put.result == {"sha256": sha256, "size": len(data)}
    assert (await api(client, "blobs-missing", hashes=[sha256])).result == {"missing": []}
    got = await api(client, "blob-get", sha256=sha256)
    assert got.error is None, got.error
    assert base64.b64decode(got.result["data"]) == data


async def test_a_blob_whose_bytes_do_not_match_its_hash_is_refused(
    client: Client, requester: Requester
) -> None:
    claimed = digest(b"something else")
    put = await api(client, "blob-put", sha256=claimed, data=base64.b64encode(b"x").decode())
    assert put.error is not None
    assert (put.error.type, put.error.message) == (
        "UsageError",
        f"blob-put: the data does not hash to sha256:{claimed}",
    )


async def test_a_blob_not_held_is_not_found(client: Client, requester: Requester) -> None:
    sha256 = digest(b"never stored")
    got = await api(client, "blob-get", sha256=sha256)
    assert got.error is not None
    assert (got.error.type, got.error.message) == (
        "NotFoundError",
        f"blob sha256:{sha256} is not held by the requester",
    )


async def test_other_api_requests_stay_under_their_limit(
    client: Client, requester: Requester
) -> None:
    answer = await api(client, "list", labels={"k": "v" * MAX_API_REQUEST_BYTES})
    assert answer.error is not None
    assert answer.error.type == "TooLargeError"


async def test_only_executors_and_operators_read_blobs(store: JobStore) -> None:
    blobs = store.blobs()
    sha256 = await blobs.put(b"alice's code")
    access = Access(requester="requester", executors=frozenset({"executor"}))
    got = await handle_blob("blob-get", {"sha256": sha256}, "executor", blobs, access)
    assert base64.b64decode(got["data"]) == b"alice's code"
    with pytest.raises(AccessError, match="only executors fetch them"):
        await handle_blob("blob-get", {"sha256": sha256}, "alice", blobs, access)
    missing = await handle_blob("blobs-missing", {"hashes": [sha256]}, "alice", blobs, access)
    assert missing == {"missing": []}
