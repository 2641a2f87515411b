"""Summarise a sales CSV: revenue per region, written to /outputs/summary.json.

Run it with Shoal:

    shoal exec python --code examples/stats.py \
        -i src=examples/sales.csv,dst=/inputs/sales.csv -- python stats.py /inputs/sales.csv
"""

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path


def main(path: str) -> None:
    revenue: dict[str, float] = defaultdict(float)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            revenue[row["region"]] += int(row["units"]) * float(row["price"])
    for region, total in sorted(revenue.items()):
        print(f"{region:<6} {total:8.2f}")
    Path("/outputs/summary.json").write_text(json.dumps(revenue, indent=2, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
