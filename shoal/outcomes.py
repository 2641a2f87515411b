"""Why a job ended, in words and as an exit code: read from its state, exit code and error.

A job's ``error`` (set by its executor, ``shoal.executor.failures``, or by the requester for a job
it ended itself: lost, expired, timed out) starts with a prefix that names what went wrong.
:func:`explain` turns it into an :class:`Outcome`: a category from :data:`CATEGORIES`, the
last useful line (the launcher's message, the job's last stderr line, the requester's
reason) and the signal that ended the job, when one did. Records written before categories
existed explain the same way: nothing new is stored.

:func:`exit_status` is the exit code of ``shoal exec --wait``/``-f``, ``shoal job wait`` and
``shoal job logs -f`` for a job that ended (see :data:`EXIT_OUTSIDE` and :data:`EXIT_STOPPED`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

DEPENDENCY_INSTALL = "dependency-install"
SETUP = "setup"
TIMEOUT = "timeout"
OOM = "oom"
STOPPED = "stopped"
EXIT = "exit"
LOST = "lost"
EXPIRED = "expired"
OUTPUT_TOO_LARGE = "output-too-large"
OUTPUT = "output"
IMAGE = "image"
INPUT = "input"
NETWORK = "network"
UNSUPPORTED = "unsupported"
ENGINE = "engine"
FAILED = "failed"
"""A failure whose error names no known cause."""

PREFIXES = {
    "dependencies failed": DEPENDENCY_INSTALL,
    "setup failed": SETUP,
    "timeout": TIMEOUT,
    "timed out": TIMEOUT,
    "queue timeout": EXPIRED,
    "expired in the queue": EXPIRED,
    "expired before anyone took it": EXPIRED,
    "oom-killed": OOM,
    "stopped": STOPPED,
    "exit code": EXIT,
    "lost": LOST,
    "delivery limit reached": LOST,
    "rejected as unreadable": LOST,
    "dropped from a full queue": LOST,
    "its submission was dead-lettered from shoal.submit": LOST,
    "output too large": OUTPUT_TOO_LARGE,
    "output not writable": OUTPUT,
    "image missing": IMAGE,
    "image not allowed": IMAGE,
    "input failed": INPUT,
    "network not allowed": NETWORK,
    "unsupported job": UNSUPPORTED,
    "executor error": ENGINE,
}
"""The start of an error (before the first ``:`` or ``(``) → its category."""

CATEGORIES = (*dict.fromkeys(PREFIXES.values()), FAILED)

WORDS = {DEPENDENCY_INSTALL: "dependency install", OUTPUT_TOO_LARGE: "output too large"}
"""How a category reads in a sentence, where its name does not."""

EXIT_STOPPED = 130
"""Exit code for a job that was stopped (``shoal job stop``), as for an interrupted command."""
EXIT_OUTSIDE = 125
"""Exit code for a job that failed without an exit code of its own: before its command ran
or around it (dependency install, image, inputs, timeout, memory, lost, expired, ...)."""

_SIGNAL = re.compile(r"\bended by (SIG[A-Z0-9]+)")


@dataclass(frozen=True)
class Outcome:
    """How a job ended: a category (``None`` while it runs or once it completed), a line
    that says why, and the signal that ended it (``SIGTERM``, ``SIGKILL``, ``SIGSEGV``...)."""

    category: str | None
    message: str = ""
    signal: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``job describe --output-format json``: ``outcome``)."""
        return asdict(self)


def _prefix(error: str) -> str | None:
    """The known prefix ``error`` starts with, followed by ``:``, `` (`` or nothing."""
    head = error.strip().lower()
    for prefix in sorted(PREFIXES, key=len, reverse=True):
        if head.startswith(prefix) and head[len(prefix) :][:2] in ("", ":", ": ", " ("):
            return prefix
    return None


def category_of(error: str) -> str:
    """The category an error text starts with (:data:`FAILED` when none)."""
    prefix = _prefix(error)
    return PREFIXES[prefix] if prefix else FAILED


def explain(state: str, error: str | None) -> Outcome:
    """The outcome of a job in ``state`` whose error is ``error``."""
    if state not in ("failed", "stopped"):
        return Outcome(category=None)
    text = (error or "").strip()
    prefix = _prefix(text)
    category = STOPPED if state == "stopped" else PREFIXES[prefix] if prefix else FAILED
    match = _SIGNAL.search(text)
    said = prefix is not None and text[len(prefix) : len(prefix) + 1] == ":"
    message = text[len(prefix or "") + 1 :].strip() if said else text
    return Outcome(category=category, message=message, signal=match.group(1) if match else None)


def headline(record: Mapping[str, Any]) -> str:
    """One line for an ended job: ``failed (dependency install): pip install x exited 1 —
    shoal job get ID for requirements.log``; ``completed`` for a job that completed."""
    state = str(record.get("state"))
    outcome = explain(state, record.get("error"))
    if outcome.category is None:
        return state
    what: str | None = WORDS.get(outcome.category, outcome.category)
    if outcome.category in (EXIT, FAILED):
        code = record.get("exit_code")
        what = f"exit {code}" if code is not None else None
    head = state if outcome.category == STOPPED or what is None else f"{state} ({what})"
    line = f"{head}: {outcome.message}" if outcome.message else head
    if outcome.category == DEPENDENCY_INSTALL and record.get("outputs"):
        line += f" — shoal job get {record.get('id')} for requirements.log"
    return line


def exit_status(record: Mapping[str, Any]) -> int:
    """The CLI's exit code for an ended job: 0 completed; the job's own code when its command
    exited non-zero (an error of no known category with an exit code counts as that);
    :data:`EXIT_STOPPED` stopped; :data:`EXIT_OUTSIDE` any other failure."""
    state = str(record.get("state"))
    if state in ("completed", "translated"):
        return 0
    outcome = explain(state, record.get("error"))
    if outcome.category == STOPPED:
        return EXIT_STOPPED
    code = record.get("exit_code")
    if outcome.category in (EXIT, FAILED) and isinstance(code, int) and 0 < code < 256:
        return code
    return EXIT_OUTSIDE
