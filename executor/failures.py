"""Why a job failed: one exception carrying the error text of its terminal event, and the
texts of a run that ended badly (:func:`exit_error`, :func:`ending`).

Every error string starts with a category, then ``": "`` and a readable detail, e.g.
``"timeout: execution exceeded 30s"``. The categories are the constants below; the
requester and the CLI match on the prefix before the first colon (``shoal.outcomes``), and
read the signal that ended a job from ``ended by SIG...``.
"""

from __future__ import annotations

import re
import signal

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
"""The job is not runnable here (untranslated, or for an engine this executor does not serve)."""
STOPPED = "stopped"
"""A stop request ended the job (state ``stopped``)."""
SETUP_FAILED = "setup failed"
"""The runtime image's launcher could not prepare the job (staging its code, its venv)."""
EXIT_CODE = "exit code"
"""The job's command exited non-zero."""
INTERNAL = "executor error"
"""Something failed in the executor or its engine (Docker, wasmtime) itself."""


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


LAUNCHER_PREFIX = "shoal-launch: "
"""How the python image's launcher starts its own error line (its exit codes: 2 usage, 3
dependency install failed, 4 setup failed, 126 not executable, 127 not found)."""
LAUNCHER_CODES = (2, 3, 4, 126, 127)
_DEPS_DETAIL = re.compile(r"dependency install failed \((.+)\)")


def exit_error(code: int, last_line: str) -> str:
    """The error of a job whose command exited non-zero by itself: the launcher's own failure
    when its line is the last on stderr, else the signal that killed the command (``128 + N``
    under the container's init) and the job's last stderr line."""
    if last_line.startswith(LAUNCHER_PREFIX) and code in LAUNCHER_CODES:
        message = last_line.removeprefix(LAUNCHER_PREFIX)
        if code == 3:
            found = _DEPS_DETAIL.search(message)
            return f"{DEPS_FAILED}: {found.group(1) if found else message}"
        return f"{SETUP_FAILED if code in (2, 4) else EXIT_CODE}: {message}"
    details = [last_line] if last_line else []
    if by := _signalled(code):
        details.insert(0, by)
    return f"{EXIT_CODE}: {': '.join(details or [f'the command exited with code {code}'])}"


def ended_by(code: int) -> str:
    """How a command ended that the executor did not signal, for the end of an error:
    `` (ended by SIGTERM)`` for a code of ``128 + N``, else `` (exited with code N)``."""
    by = _signalled(code)
    return f" ({by})" if by else f" (exited with code {code})"


def _signalled(code: int) -> str | None:
    """``ended by SIGTERM`` for an exit code of ``128 + N`` (under the container's init)."""
    if not 128 < code <= 128 + 64:
        return None
    try:
        return f"ended by {signal.Signals(code - 128).name}"
    except ValueError:
        return f"ended by signal {code - 128}"


def ending(sent: str | None, exit_code: int, grace: float, interrupted: bool = False) -> str:
    """How a job the executor signalled (``sent``: its last signal) ended, for the end of
    its error: `` (ended by SIGTERM)``, `` (ended by SIGKILL after the 10s grace)``...;
    `` (interrupted at once: ...)`` when the engine ended it without a signal (wasm)."""
    if interrupted:
        return " (interrupted at once: WASI has no signals)"
    if sent == "SIGKILL":
        return f" (ended by SIGKILL after the {grace:g}s grace)" if grace else " (ended by SIGKILL)"
    if sent == "SIGTERM" and exit_code != 128 + signal.SIGTERM:
        return f" (ended by SIGTERM: exited with code {exit_code} within the grace)"
    return f" (ended by {sent})" if sent else ""
