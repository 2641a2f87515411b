"""Shoal's exceptions: one root, each with the CLI exit code it maps to.

::

    ShoalError                    (exit 2 unless a subclass says otherwise)
    ├── UsageError                bad command line or bad input: fix and retry (exit 2)
    │   ├── TooLargeError         a message, or a part of it, over its size limit
    │   ├── InvalidJobError       a job spec that fails validation
    │   ├── TemplateError         a job type's template cannot be found or rendered
    │   ├── CodeArchiveError      ``--code`` path missing, too large, or escaping its folder
    │   ├── IdempotencyConflictError  an ``--idempotency-key`` already used for another spec
    │   ├── UnsupportedError      a job asking for what no executor offers (GPUs, more memory)
    │   └── TranslationError      a job the requester cannot turn into a docker job
    │       └── UnknownJobTypeError
    ├── ProtocolError             a wire message that cannot be parsed (exit 2)
    ├── NotFoundError             no job with that ID (exit 2)
    ├── JobFailedError            a job waited on ended failed or stopped (exit 1, or the code
    │                             ``shoal.outcomes.exit_status`` gives: the job's own, 125, 130)
    ├── JobNotEndedError          ``job get`` of a job that has not ended (exit 1)
    ├── OutputsLeftOutError       ``job get``: some outputs were left out over a limit (exit 1)
    ├── WaitTimeoutError          ``--wait-timeout`` ran out; the job is left as it is (124)
    └── UnavailableError          the broker or the requester cannot be reached (exit 3)

Every error travels over the wire as ``{"type": <class name>, "message": ...}`` and is rebuilt
on the other side with :func:`from_wire`, so the CLI prints the same one line the requester
meant.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_WAIT_TIMEOUT = 124
"""As ``timeout(1)`` exits when its command ran out of time."""


class ShoalError(Exception):
    """Root of every error Shoal raises on purpose."""

    exit_code: int = EXIT_USAGE
    """The CLI's exit code for this error (a class default; an instance may have its own)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        """The error as a wire-protocol object."""
        return {"type": type(self).__name__, "message": self.message}


class UsageError(ShoalError):
    """Bad command line or bad input; nothing was submitted."""


class InvalidJobError(UsageError):
    """A job spec that fails validation."""


class TooLargeError(UsageError):
    """A message, or a part of it, over its size limit (``shoal.limits``)."""


class TemplateError(UsageError):
    """A job type's template is missing, broken, or given unknown variables."""


class CodeArchiveError(UsageError):
    """``--code`` cannot be packed: missing, unreadable, too large, or escaping its folder."""


class IdempotencyConflictError(UsageError):
    """The ``--idempotency-key`` already names a job submitted with a different spec."""


class UnsupportedError(UsageError):
    """The job asks for something no executor of this cluster offers (GPUs, more memory)."""


class TranslationError(UsageError):
    """A job the requester cannot translate into a docker job."""


class UnknownJobTypeError(TranslationError):
    """No template or translator for this job type."""

    def __init__(self, job_type: str, supported: Iterable[str]) -> None:
        names = ", ".join(sorted(supported))
        super().__init__(f"unknown job type {job_type!r}; supported types: {names}")
        self.job_type = job_type


class ProtocolError(ShoalError):
    """A wire message that cannot be parsed."""


class AccessError(UsageError):
    """The caller has no right to this (no identity, or not a member of a namespace)."""


class NotFoundError(ShoalError):
    """No job with that ID."""


class JobFailedError(ShoalError):
    """A job that was waited on did not complete; ``exit_code`` may be the job's own."""

    exit_code = EXIT_JOB_FAILED

    def __init__(self, message: str, exit_code: int = EXIT_JOB_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class JobNotEndedError(ShoalError):
    """The job has not ended, so it has no outputs yet."""

    exit_code = EXIT_JOB_FAILED


class OutputsLeftOutError(ShoalError):
    """Some of a job's outputs were left out (over the executor's or the store's limit)."""

    exit_code = EXIT_JOB_FAILED


class WaitTimeoutError(ShoalError):
    """A wait's deadline passed before the job ended; the job was not touched."""

    exit_code = EXIT_WAIT_TIMEOUT


class UnavailableError(ShoalError):
    """The broker or the requester cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


def _all_subclasses(cls: type[ShoalError]) -> Iterable[type[ShoalError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def from_wire(payload: object) -> ShoalError:
    """Rebuild an error sent with :meth:`ShoalError.to_wire`; unknown types become the root."""
    if not isinstance(payload, dict):
        return ProtocolError(f"malformed error payload: {payload!r}")
    name = str(payload.get("type", "ShoalError"))
    message = str(payload.get("message", "unknown error"))
    classes: list[type[ShoalError]] = [ShoalError, *_all_subclasses(ShoalError)]
    for cls in classes:
        if cls.__name__ == name:
            error: ShoalError = cls.__new__(cls)
            ShoalError.__init__(error, message)
            return error
    return ShoalError(message)
