#!/usr/bin/env bash
# `make demo`: start a requester and an executor in the background (unless this demo already
# started them), run the examples through the whole system and print their results.
# Services stay up for more jobs; `make stop` stops the processes this demo started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATE=.demo
SHOAL=.venv/bin/shoal
mkdir -p "$STATE"
export SHOAL_DATABASE_URL="sqlite+aiosqlite:///$PWD/$STATE/jobs.sqlite3"

# One broker account per role (shoal broker setup: random passwords in $STATE/secrets); the
# examples run as the demo user, who sees only its own jobs.
"$SHOAL" broker setup --secrets "$STATE/secrets" >/dev/null
account() { echo "amqp://$1:$(cat "$STATE/secrets/$1.password")@127.0.0.1:5672/"; }
export SHOAL_EXECUTOR_USERS=shoal-executor SHOAL_OPERATOR_USERS=shoal-operator

start() {
    local role=$1 pidfile="$STATE/$1.pid"
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "demo: $role already running (pid $(cat "$pidfile"))"
        return
    fi
    SHOAL_BROKER_URL=$(account "shoal-$role") nohup "$SHOAL" serve "$role" \
        >"$STATE/$role.log" 2>&1 &
    echo $! >"$pidfile"
    echo "demo: started $role (pid $!, log $STATE/$role.log)"
}

# Wait for a service's ready line: on a broker that never saw Shoal, the requester declares
# the queues, and a job sent before that would be refused.
ready() {
    local role=$1 line=$2 pid
    pid=$(cat "$STATE/$role.pid")
    for _ in $(seq 300); do
        grep -qF -- "$line" "$STATE/$role.log" 2>/dev/null && return
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "demo: the $role stopped; its log, $STATE/$role.log, ends:" >&2
            tail -5 "$STATE/$role.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "demo: the $role is not ready after 30 s; see $STATE/$role.log" >&2
    exit 1
}

run() {
    local shown="" word
    for word in "$@"; do  # show each word the way a shell would need it typed
        if [[ ! $word =~ [[:space:]\'\"*\$] ]]; then
            shown+=" $word"
        elif [[ ! $word =~ [\"\$\`\\] ]]; then
            shown+=" \"$word\""
        else
            shown+=" '${word//\'/\'\\\'\'}'"
        fi
    done
    printf '\n$ shoal%s\n' "$shown" >&2
    "$SHOAL" "$@"
}

start requester
ready requester requester.started
start executor  # after the requester has declared the queues its first heartbeat goes to
ready executor executor.ready
SHOAL_BROKER_URL=$(account demo)
export SHOAL_BROKER_URL

echo
echo "== python: revenue per region from examples/sales.csv"
job=$(run exec python --code examples/stats.py -i src=examples/sales.csv,dst=/inputs/sales.csv \
    --id-only --wait -- python stats.py /inputs/sales.csv)
run job logs "$job"
rm -rf "$STATE/outputs"
run job get "$job" --output-dir "$STATE/outputs"
echo "--- $STATE/outputs/outputs/summary.json"
cat "$STATE/outputs/outputs/summary.json"
echo

echo
echo "== duckdb: top products, SQL file plus a query with spaces"
job=$(run exec duckdb --code examples/top_products.sql \
    -i src=examples/sales.csv,dst=/inputs/sales.csv --id-only --wait \
    -- -init /code/top_products.sql -c "select count(*) AS rows FROM '/inputs/sales.csv'")
run job logs "$job"

echo
echo "== wasm: a WASI module run in the executor's process (wasmtime, no container)"
.venv/bin/python -c 'import sys, wasmtime; open(sys.argv[2], "wb").write(wasmtime.wat2wasm(open(sys.argv[1]).read()))' \
    examples/hello.wat "$STATE/hello.wasm"
job=$(run exec wasm --code "$STATE/hello.wasm" --id-only --wait)
run job logs "$job"

echo
run job list
echo
run status
echo
echo "demo: done. Try, as the demo user:"
echo "  export SHOAL_BROKER_URL=amqp://demo:\$(cat $STATE/secrets/demo.password)@127.0.0.1:5672/"
echo "  $SHOAL exec python --wait -f -- python -c \"import this\""
echo "demo: requester and executor keep running; stop them with: make stop"
