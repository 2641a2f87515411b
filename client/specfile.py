"""Job spec files: a job written as YAML or JSON, read back into a :class:`~shoal.model.Job`.

A spec is what ``shoal exec ... --dry-run`` prints (either format), or any job written by
hand: a typed job (``engine.type: python``) or a plain ``docker`` one. The fields a job gets
when it is submitted (``id``, ``owner``, ``state``, ``created_at``) are dropped, so the same
file submitted twice makes two jobs with the same spec. A file over the submission limit is
refused before it is parsed; every problem names the file and the field path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from shoal import limits
from shoal.errors import InvalidJobError, TooLargeError, UsageError
from shoal.model import Job, parse_job

SUBMITTED_FIELDS = ("id", "owner", "state", "created_at")
"""Set when a job is submitted: taken from a spec file, never from the file."""


def read_spec(source: str) -> Job:
    """The job in file ``source`` (``-``: standard input); ``InvalidJobError`` naming the
    file and the field for a bad spec, ``UsageError`` for a file that cannot be read."""
    name = "<stdin>" if source == "-" else source
    data = parse_spec(read_source(source, limits.MAX_SUBMISSION_BYTES), name)
    try:
        return parse_job(data)
    except InvalidJobError as error:
        raise InvalidJobError(f"{name}: {error.message}") from None


def parse_spec(text: bytes, name: str) -> dict[str, Any]:
    """The mapping in ``text`` (YAML, of which JSON is a part), submitted fields dropped."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise InvalidJobError(f"{name}: not YAML or JSON{where}: {problem}") from None
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        raise InvalidJobError(f"{name}: a job spec is a mapping (tasks: ...), got {kind}")
    for key in SUBMITTED_FIELDS:
        data.pop(key, None)
    return data


def read_source(source: str, cap: int) -> bytes:
    """The bytes of file ``source`` (``-``: standard input), at most ``cap`` of them."""
    if source == "-":
        text = sys.stdin.buffer.read(cap + 1)
    else:
        path = Path(source)
        try:
            with path.open("rb") as file:
                text = file.read(cap + 1)
        except FileNotFoundError:
            raise UsageError(f"no such file: {source}") from None
        except IsADirectoryError:
            raise UsageError(f"{source} is a folder; give a YAML or JSON file") from None
        except OSError as error:
            raise UsageError(f"cannot read {source}: {error.strerror}") from None
    if len(text) > cap:
        raise TooLargeError(f"{source}: at most {cap} bytes are read")
    return text
