"""JSON Schemas of the wire messages, generated from their pydantic models.

``shoal schema`` prints them; ``docs/schema/`` holds a copy of each, kept equal to the models
by a test, for clients written in other languages (``docs/protocol.md`` says where each
message goes).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from shoal.model import Job
from shoal.wire import (
    ApiReply,
    ApiRequest,
    ClaimReply,
    ClaimRequest,
    ComputeRequest,
    ControlMessage,
    Heartbeat,
    JobEvent,
    Submission,
    SubmissionBatch,
    SubmitBatchReply,
    SubmitReply,
)

MESSAGES: dict[str, type[BaseModel]] = {
    "job": Job,
    "submission": Submission,
    "submit-reply": SubmitReply,
    "submission-batch": SubmissionBatch,
    "submit-batch-reply": SubmitBatchReply,
    "api-request": ApiRequest,
    "api-reply": ApiReply,
    "job-event": JobEvent,
    "compute-request": ComputeRequest,
    "control-message": ControlMessage,
    "claim-request": ClaimRequest,
    "claim-reply": ClaimReply,
    "heartbeat": Heartbeat,
}
"""Schema name → the model whose JSON form it describes."""


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of message ``name`` (a key of :data:`MESSAGES`)."""
    document = MESSAGES[name].model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **document,
    }


def schema_text(name: str) -> str:
    """:func:`schema` as the text of its committed file (two-space JSON, newline at the end)."""
    return json.dumps(schema(name), indent=2, ensure_ascii=False) + "\n"
