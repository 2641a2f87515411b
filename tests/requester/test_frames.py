"""The bytes the submission pipeline writes are the ones the libraries would write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.frame import marshal
from pamqp.header import ContentHeader

from shoal.model import Job
from shoal.requester.framebatch import header_frame
from shoal.wire import ComputeRequest, compute_body, encode
from tests.core.strategies import jobs

short = st.one_of(st.just(""), st.text(max_size=90))
properties = st.builds(
    commands.Basic.Properties,
    content_type=st.none() | short,
    content_encoding=st.none() | short,
    headers=st.none() | st.just({"x-note": "a"}),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 9),
    correlation_id=st.none() | short,
    reply_to=st.none() | short,
    expiration=st.none() | st.just("60000"),
    message_id=st.none() | short,
    timestamp=st.none() | st.just(datetime(2026, 1, 2, tzinfo=UTC)),
    user_id=st.none() | short,
    app_id=st.none() | short,
)


@settings(max_examples=300)
@given(properties, st.integers(1, 65535), st.integers(0, 2**40))
def test_a_content_header_is_the_one_pamqp_marshals(
    props: commands.Basic.Properties, channel: int, size: int
) -> None:
    assert header_frame(channel, size, props) == marshal(ContentHeader(0, size, props), channel)


@settings(max_examples=50)
@given(jobs, st.integers(0, 10**9))
def test_a_compute_body_is_the_encoded_request(job: Job, micros: int) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    expected = encode(ComputeRequest(job=job, submitted_at=at))
    assert compute_body(job.model_dump_json(), at) == expected
