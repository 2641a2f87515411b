"""Why a job failed: one exception carrying the error text of its terminal event.

Every error string starts with a category, then ``": "`` and a readable detail, e.g.
``"timeout: execution exceeded 30s"``. The categories are the constants below; the
requester and the CLI may match on the prefix before the first colon.
"""

from __future__ import annotations

TIMEOUT = "timeout"
"""The execution (or total) timeout ran out; the container was killed."""
QUEUE_TIMEOUT = "queue timeout"
"""The job waited in the queue longer than its queue timeout; it never ran."""
OOM_KILLED = "oom-killed"
"""The kernel killed the job for using more than its memory limit."""
IMAGE_MISSING = "image missing"
"""The image is not on the node and could not be pulled (or pulling is off)."""
IMAGE_NOT_ALLOWED = "image not allowed"
"""A native docker job named an image the node's operator does not allow."""
DEPS_FAILED = "dependencies failed"
"""Installing the job's requirements (the executor's install step) failed or timed out."""
INPUT_FAILED = "input failed"
"""An input could not be fetched, read, or placed."""
OUTPUT_NOT_WRITABLE = "output not writable"
"""An output path the job could not write to (e.g. a new volume owned by root, job not root)."""
OUTPUT_TOO_LARGE = "output too large"
"""The job wrote more than the node lets it keep (the output limit, or a volume's size cap)."""
NETWORK_NOT_ALLOWED = "network not allowed"
"""The job asked for a network this node does not give."""
UNSUPPORTED = "unsupported job"
"""The job is not a runnable docker job (e.g. untranslated, or a ``wasm`` engine)."""
STOPPED = "stopped"
"""A stop request ended the job (state ``stopped``)."""
SETUP_FAILED = "setup failed"
"""The runtime image's launcher could not prepare the job (staging its code, its venv)."""
EXIT_CODE = "exit code"
"""The job's command exited non-zero."""
INTERNAL = "executor error"
"""Something failed in the executor or the Docker engine itself."""


class JobError(Exception):
    """A job cannot run or did not complete; ``str()`` is the terminal event's error.

    ``log`` is a tar of files for the job's ``/outputs`` result that explain the failure
    (the install step's ``requirements.log``), published although the job never ran.
    """

    def __init__(self, category: str, detail: str, log: bytes | None = None) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail
        self.log = log

    @property
    def error(self) -> str:
        """The text of the terminal event's ``error`` field."""
        return str(self)
