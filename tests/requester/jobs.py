"""Jobs and events for requester tests."""

from __future__ import annotations

import base64
import io
import tarfile
from typing import Any

from shoal.model import Job, JobState, parse_job
from shoal.wire import JobEvent


def python_job(*argv: str, labels: dict[str, str] | None = None, **params: Any) -> Job:
    """A ``python`` job as ``shoal exec python -- ARGV`` would build it."""
    return parse_job(
        {
            "name": "python",
            "labels": labels or {},
            "tasks": [
                {
                    "engine": {
                        "type": "python",
                        "params": {
                            "command": "python",
                            "arguments": list(argv or ("python", "-c", "pass")),
                            **params,
                        },
                    }
                }
            ],
        }
    )


def docker_job(labels: dict[str, str] | None = None) -> Job:
    """A native docker job (runs untranslated)."""
    return parse_job(
        {
            "name": "native",
            "labels": labels or {},
            "tasks": [{"engine": {"type": "docker", "params": {"image": "busybox"}}}],
        }
    )


def state(job_id: str, to: JobState, **fields: Any) -> JobEvent:
    """A state event as an executor sends it."""
    return JobEvent(job_id=job_id, kind="state", state=to, executor="ex-1", **fields)


def log(job_id: str, seq: int, data: str, stream: str = "stdout", **fields: Any) -> JobEvent:
    """A log chunk event."""
    return JobEvent(
        job_id=job_id, kind="log", seq=seq, data=data, stream=stream, executor="ex-1", **fields
    )


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A tar.gz holding ``files`` (name → content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def result(job_id: str, archives: dict[str, bytes], **fields: Any) -> JobEvent:
    """A result event carrying ``archives`` (name → tar.gz bytes)."""
    return JobEvent(
        job_id=job_id,
        kind="result",
        executor="ex-1",
        outputs={name: base64.b64encode(data).decode() for name, data in archives.items()},
        **fields,
    )


def timed_job(**timeouts: float) -> Job:
    """A native docker job with task ``timeouts`` (seconds: queue, total, execution)."""
    return parse_job(
        {
            "name": "timed",
            "tasks": [
                {"engine": {"type": "docker", "params": {"image": "busybox"}}, "timeouts": timeouts}
            ],
        }
    )
