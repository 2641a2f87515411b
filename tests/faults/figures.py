"""The suite's figures: what each case injected and what became of its jobs.

Each case adds a :class:`Case`; at the end of the session they are written as JSON to the
file named by ``SHOAL_FAULTS_REPORT`` (when set), which ``scripts/reliability.py`` reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cluster import Audit

LONG = os.environ.get("SHOAL_FAULTS", "short") == "long"


@dataclass
class Case:
    """One fault case's figures."""

    name: str
    faults: dict[str, int]
    submitted: int
    accepted: int = 0
    lost: int = 0
    run_twice: int = 0
    stuck: int = 0
    untruthful: int = 0
    leaked: int = 0
    ran_at_once: int = 0
    states: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def judged(self, audit: Audit) -> Case:
        self.accepted = audit.accepted
        self.lost = len(audit.lost)
        self.run_twice = len(audit.run_twice)
        self.stuck = len(audit.stuck)
        self.untruthful = len(audit.untruthful)
        self.leaked = len(audit.leaked)
        self.ran_at_once = len(audit.ran_at_once)
        self.states = dict(audit.states)
        self.reasons = dict(audit.reasons)
        return self


class Figures:
    """Every case of the session, written out at its end."""

    def __init__(self) -> None:
        self.cases: list[Case] = []

    def add(self, case: Case) -> None:
        self.cases.append(case)

    def write(self) -> None:
        target = os.environ.get("SHOAL_FAULTS_REPORT")
        if not target:
            return
        data = {"version": "long" if LONG else "short", "cases": [asdict(c) for c in self.cases]}
        Path(target).write_text(json.dumps(data, indent=2) + "\n")
