#!/usr/bin/env bash
# Summarise every CSV file of a folder with Shoal (one job per file), wait for the batch,
# and collect each job's outputs. Run from the repository root: examples/csv_batch.sh DATA RESULTS
set -euo pipefail
data=${1:-data}         # the folder of CSV files
results=${2:-results}   # where each job's outputs go: RESULTS/JOB_ID/outputs/summary.json
mkdir -p "$results"
shoal exec python --code examples/stats.py --each "$data/*.csv" \
    -- python stats.py {} > "$results/jobs.txt"   # the batch ID, then one job ID a line
batch=$(head -n 1 "$results/jobs.txt")
shoal job wait --batch "$batch"   # progress until every job ended; exit 1 if any failed
for job in $(tail -n +2 "$results/jobs.txt"); do
    shoal job get "$job" --output-dir "$results/$job"
done
