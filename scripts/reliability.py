"""Run the fault suite (and the fuzzers, when ``tests/fuzz`` exists) and write RELIABILITY.md.

Usage: ``.venv/bin/python scripts/reliability.py [--short] [--output RELIABILITY.md]``
(``make reliability``). The fault suite runs in its long version (``SHOAL_FAULTS=long``) unless
``--short``; each case writes its figures to a JSON file (``SHOAL_FAULTS_REPORT``) that this
script adds up. The fuzzers run through ``scripts/fuzz-report.py --json`` when both exist;
otherwise the report says "not run". Every figure is written next to the command that
produced it. Exits 0 only when every run passed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "submitted",
    "accepted",
    "lost",
    "run_twice",
    "stuck",
    "untruthful",
    "leaked",
    "ran_at_once",
)


def run(command: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    """Run ``command`` from the repository root: exit code, seconds taken, output."""
    began = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    return done.returncode, time.monotonic() - began, done.stdout + done.stderr


def fault_suite(long: bool) -> dict[str, Any]:
    """Run tests/faults; its exit code, duration, shown command and per-case figures."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "faults.json"
        version = "long" if long else "short"
        env = {**os.environ, "SHOAL_FAULTS": version, "SHOAL_FAULTS_REPORT": str(report)}
        command = [sys.executable, "-m", "pytest", "-m", "faults", "tests/faults", "-q",
                   "-p", "no:cacheprovider"]  # fmt: skip
        code, seconds, output = run(command, env)
        cases = json.loads(report.read_text())["cases"] if report.exists() else []
    shown = f"SHOAL_FAULTS={version} .venv/bin/pytest -m faults tests/faults"
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    failures = [line[:300] for line in output.splitlines() if line.startswith(("FAILED", "E  "))]
    return {
        "code": code,
        "seconds": seconds,
        "command": shown,
        "cases": cases,
        "tail": tail,
        "failures": failures[:12],
    }


def fuzzers(profile: str) -> dict[str, Any] | None:
    """Run scripts/fuzz-report.py --json when the fuzz tier exists; None when it does not."""
    script = ROOT / "scripts" / "fuzz-report.py"
    if not (script.exists() and (ROOT / "tests" / "fuzz").is_dir()):
        return None
    command = [sys.executable, str(script), "--json", "--profile", profile]
    code, seconds, output = run(command, dict(os.environ))
    try:
        report = json.loads(output[output.index("{") : output.rindex("}") + 1])
    except ValueError:
        report = {"targets": {}}
    return {
        "code": code,
        "seconds": seconds,
        "command": f".venv/bin/python scripts/fuzz-report.py --json --profile {profile}",
        "targets": report.get("targets", {}),
    }


def _faults_text(cases: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n} {name}" for c in cases for name, n in c["faults"].items())


def fault_section(suite: dict[str, Any]) -> list[str]:
    """The fault suite's table: one row per case, then the totals."""
    cases = suite["cases"]
    verdict = "passed" if suite["code"] == 0 else f"FAILED (exit code {suite['code']})"
    lines = [
        "## Fault suite",
        "",
        f"Command: `{suite['command']}` — {verdict} in {suite['seconds']:.0f} s"
        f" (`{suite['tail']}`).",
        "",
        "| Case | Faults injected | Submitted | Accepted | Lost | Run twice | Stuck "
        "| Untruthful | Leaked | Ran at once | End states |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in cases:
        states = ", ".join(f"{n} {s}" for s, n in sorted(case["states"].items()))
        figures = " | ".join(str(case[f]) for f in FIGURES)
        lines.append(f"| {case['name']} | {_faults_text([case])} | {figures} | {states} |")
    totals = {f: sum(c[f] for c in cases) for f in FIGURES}
    injected = sum(n for c in cases for n in c["faults"].values())
    lines.append(f"| **all** | **{injected}** | " + " | ".join(f"**{totals[f]}**" for f in FIGURES))
    lines[-1] += " | |"
    if suite["failures"]:
        lines += ["", "Failures, as pytest reported them:", "", "```", *suite["failures"], "```"]
    if not cases:
        lines.append("")
        lines.append("No case reported its figures (the suite did not get that far).")
    return lines


def fuzz_section(fuzz: dict[str, Any] | None) -> list[str]:
    """The fuzzers' cases tried per target, or "not run"."""
    lines = ["## Fuzzing", ""]
    if fuzz is None:
        return [*lines, "Not run: this tree has no `tests/fuzz` or `scripts/fuzz-report.py`."]
    verdict = "passed" if fuzz["code"] == 0 else f"FAILED (exit code {fuzz['code']})"
    tried = sum(t["tried"] for t in fuzz["targets"].values())
    lines += [
        f"Command: `{fuzz['command']}` — {verdict} in {fuzz['seconds']:.0f} s;"
        f" {tried} fuzz cases tried.",
        "",
        "| Target | Cases tried | Invalid (rejected by the strategy) |",
        "|---|---|---|",
    ]
    for target, entry in fuzz["targets"].items():
        lines.append(f"| `{target}` | {entry['tried']} | {entry['invalid']} |")
    return lines


def render(suite: dict[str, Any], fuzz: dict[str, Any] | None, commit: str) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "# Reliability",
        "",
        f"Written by `scripts/reliability.py` (`make reliability`) on {when}, commit {commit}.",
        "Each figure below comes from the command named above its table; re-run it to check.",
        "",
        "Definitions: *accepted* — the requester answered the submission with a job ID;"
        " *lost* — accepted but not in the store; *stuck* — not in a terminal state"
        " (completed, failed, stopped) when the case ended; *run twice* — more than one"
        " execution of the job ran to an exit code; *untruthful* — a terminal state that is"
        " neither the expected outcome nor failed/stopped with a reason; *leaked* — containers"
        " labelled with the case's executor nodes, and firewall rules of their http proxies,"
        " left after the executors stopped; *ran at once* — a job whose container of a"
        " killed executor still ran when another executor's container of it started (Docker's"
        " events; the window until the orphan is reaped, not counted as a failure).",
        "",
    ]
    body = [*fault_section(suite), "", *fuzz_section(fuzz), ""]
    return "\n".join(head + body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the short fault suite")
    parser.add_argument("--fuzz-profile", choices=["quick", "thorough"], default="thorough")
    parser.add_argument("--output", type=Path, default=ROOT / "RELIABILITY.md")
    args = parser.parse_args()
    suite = fault_suite(long=not args.short)
    fuzz = fuzzers(args.fuzz_profile)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    args.output.write_text(render(suite, fuzz, commit or "unknown"))
    print(f"wrote {args.output}")
    return 0 if suite["code"] == 0 and (fuzz is None or fuzz["code"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
