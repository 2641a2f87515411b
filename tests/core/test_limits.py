"""The shared size limits: what they count, and that the broker's set-up agrees with them."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import limits
from shoal.errors import TooLargeError
from shoal.inline import inline_source
from shoal.model import Job, parse_job

ROOT = Path(__file__).resolve().parents[2]


def job(data: str = "", **fields: Any) -> Job:
    task: dict[str, object] = {"engine": {"type": "python", "params": {"command": "python"}}}
    if data:
        task["inputs"] = [{"source": inline_source("file", data), "target": "/code/x"}]
    task.update(fields.pop("task", {}))
    return parse_job({"tasks": [task], **fields})


@given(st.binary(max_size=64))
def test_decoded_size_is_the_length_of_the_decoded_bytes(raw: bytes) -> None:
    assert limits.decoded_size(base64.b64encode(raw).decode()) == len(raw)


def test_a_full_inline_budget_fits_in_a_submission_body() -> None:
    encoded = len(base64.b64encode(b"\0" * limits.MAX_INLINE_BYTES))
    assert encoded + limits.MAX_SPEC_BYTES == limits.MAX_SUBMISSION_BYTES
    assert limits.MAX_SUBMISSION_BYTES < limits.MAX_MESSAGE_BYTES


def test_inline_archives_over_the_limit_are_refused() -> None:
    limits.check_job(job("AAAA" * (limits.MAX_INLINE_BYTES // 3)))
    with pytest.raises(TooLargeError, match=r"10\.0 MiB packed; the limit is 10\.0 MiB"):
        limits.check_job(job("AAAA" * (limits.MAX_INLINE_BYTES // 3 + 1)))


@pytest.mark.parametrize(
    "fields",
    [
        {"meta": {"note": "x" * (limits.MAX_META_VALUE_BYTES + 1)}},
        {"labels": {"note": "x" * (limits.MAX_META_VALUE_BYTES + 1)}},
        {"task": {"meta": {"note": "é" * (limits.MAX_META_VALUE_BYTES // 2 + 1)}}},
    ],
)
def test_a_meta_or_label_value_over_the_limit_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(
        TooLargeError, match=r"'note' is 6553[78] bytes; one value may hold at most 65536 bytes$"
    ):
        limits.check_job(job(**fields))


def test_a_body_is_measured_before_anything_reads_it() -> None:
    limits.check_body(b"x" * 10, 10, "request")
    with pytest.raises(TooLargeError, match="^the request is 11 B; the limit is 10 B$"):
        limits.check_body(b"x" * 11, 10, "request")


@pytest.mark.parametrize("script", ["scripts/ensure-rabbitmq.sh", "deploy/rabbitmq-entrypoint.sh"])
def test_the_broker_set_up_uses_the_message_limit(script: str) -> None:
    text = (ROOT / script).read_text()
    found = re.search(r"(?:max_message_size = |MAX_MESSAGE_SIZE=)(\d+)", text)
    assert found is not None
    assert int(found.group(1)) == limits.MAX_MESSAGE_BYTES
