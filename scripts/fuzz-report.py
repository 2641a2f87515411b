"""Run the fuzz tier (tests/fuzz) and print how many cases each target tried.

Usage: ``.venv/bin/python scripts/fuzz-report.py [--profile quick|thorough] [--json]``
(``thorough`` by default, as ``make fuzz``). The counts are Hypothesis's own statistics
(``--hypothesis-show-statistics``): every generated case, passing, failing or rejected as
invalid by the strategy, summed over the phases. Exits with pytest's exit code, so a figure is
only worth quoting when the exit code is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = re.compile(r"^(tests/fuzz/\S+::\S+):$")
COUNTS = re.compile(r"(\d+) passing\D+(\d+) failing\D+(\d+) invalid")


def count_cases(output: str) -> dict[str, dict[str, int]]:
    """Target → ``{"tried", "passing", "failing", "invalid"}`` from pytest's output."""
    found: dict[str, dict[str, int]] = {}
    target = None
    for line in output.splitlines():
        if header := HEADER.match(line.strip()):
            target = header.group(1)
            found[target] = {"tried": 0, "passing": 0, "failing": 0, "invalid": 0}
        elif target is not None and (counts := COUNTS.search(line)):
            passing, failing, invalid = (int(n) for n in counts.groups())
            entry = found[target]
            entry["passing"] += passing
            entry["failing"] += failing
            entry["invalid"] += invalid
            entry["tried"] += passing + failing + invalid
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["quick", "thorough"], default="thorough")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider",
               "--hypothesis-show-statistics", "--timeout=3600"]  # fmt: skip
    env = {**os.environ, "SHOAL_FUZZ_PROFILE": args.profile}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    counts = count_cases(run.stdout)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
    if args.json:
        report = {"profile": args.profile, "exit_code": run.returncode, "targets": counts}
        print(json.dumps(report, indent=2))
    else:
        width = max((len(t) for t in counts), default=10)
        for target, entry in counts.items():
            print(f"{target:<{width}}  {entry['tried']:>7} cases ({entry['invalid']} invalid)")
        total = sum(entry["tried"] for entry in counts.values())
        print(f"{'total':<{width}}  {total:>7} cases; profile {args.profile}; pytest: {summary}")
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
