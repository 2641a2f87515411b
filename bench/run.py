"""Run every benchmark and write ``bench/RESULTS.md``: ``python -m bench.run [NAME ...]``.

Each benchmark is a module that measures Shoal against a baseline in the same run and prints
one Markdown section; this script runs them in turn, stamps the machine and the date, and
keeps the sections of benchmarks not run this time from the previous file.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS = {
    "requester": ["-m", "bench.bench_requester"],
    "executor": ["-m", "bench.bench_executor", "--rounds", "7"],
    "depcache": ["-m", "bench.bench_depcache"],
    "metrics": ["-m", "bench.bench_metrics"],
    "fleet": ["-m", "bench.bench_fleet"],
    "wasm": ["-m", "bench.bench_wasm"],
    "pywasm": ["-m", "bench.bench_pywasm", "--compile"],
    "submit": ["-m", "bench.bench_submit"],
    "batch": ["-m", "bench.bench_batch"],
}
RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = re.compile(
    r"^<!-- bench:(\w+) -->\n(.*?)^<!-- /bench:\1 -->\n(.*?)(?=^<!-- bench:|\Z)", re.M | re.S
)
"""A generated section, and the notes written by hand after it (kept as they are)."""


def machine() -> str:
    """One line about where the numbers come from."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{os.cpu_count()} CPUs, {memory:.0f} GiB, Python {platform.python_version()}"


def run_one(name: str) -> str:
    """The Markdown a benchmark prints, with the command that produced it."""
    command = [sys.executable, *BENCHMARKS[name]]
    print(f"bench: running {name} …", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    shown = "python " + " ".join(BENCHMARKS[name])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if done.returncode != 0:
        body = f"**failed** (exit {done.returncode}):\n\n```\n{done.stderr[-2000:]}\n```\n"
    else:
        body = done.stdout.strip() + "\n"
    return f"Command: `{shown}` — {stamp}, {machine()}\n\n{body}"


def main() -> int:
    """Run the chosen benchmarks (all by default) and rewrite RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], metavar="NAME")
    names = parser.parse_args().names or list(BENCHMARKS)
    old = RESULTS.read_text() if RESULTS.exists() else ""
    found = list(SECTION.finditer(old))
    sections = {m.group(1): m.group(2) for m in found}
    notes = {m.group(1): m.group(3) for m in found}
    for name in names:
        sections[name] = run_one(name)
    parts = [
        "# Benchmark results\n",
        "Written by `python -m bench.run` (or `make bench`). Every figure is compared with a",
        "baseline measured in the same run on the same machine; quote the ratios, the machine",
        "is noisy.\n",
    ]
    for name in BENCHMARKS:
        if name in sections:
            section = f"<!-- bench:{name} -->\n{sections[name]}<!-- /bench:{name} -->\n"
            kept = notes.get(name, "").strip()
            parts.append(section + (f"\n{kept}\n" if kept else ""))
    RESULTS.write_text("\n".join(parts))
    print(f"bench: wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
