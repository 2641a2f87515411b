"""Submit three jobs with Shoal's Python API, wait for them, and collect their outputs."""

import sys
from pathlib import Path

import shoal
from shoal.errors import ShoalError

results_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
jobs = [
    shoal.exec_job(
        "python",
        ["python", "stats.py", "/inputs/sales.csv"],
        code="examples/stats.py",
        inputs=["src=examples/sales.csv,dst=/inputs/sales.csv"],
        labels={"part": str(part)},
    )
    for part in range(3)
]
with shoal.Client() as client:  # SHOAL_BROKER_URL, or amqp://guest:guest@127.0.0.1:5672/
    submitted = client.submit_many(jobs)  # one result per job, in order
    for result in submitted:
        if isinstance(result, ShoalError):  # this job was refused; the others were not
            sys.exit(f"{type(result).__name__}: {result.message}")
        client.wait(result.job_id, timeout=600)  # JobFailedError if it failed
        outputs = client.get(result.job_id, results_dir / result.job_id)
        print(result.job_id, outputs.folders["outputs"] / "summary.json")
