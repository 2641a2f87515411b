#!/usr/bin/env bash
# Make sure Postgres answers on 127.0.0.1:5432 for the store's Postgres tests (user postgres,
# database test, no password from localhost). Leaves a running server alone; otherwise starts
# the installed cluster, or installs Debian's postgresql and allows trust auth on loopback.
set -euo pipefail

port_open() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! port_open; then
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        echo "installing postgresql"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        for hba in /etc/postgresql/*/main/pg_hba.conf; do
            sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+$/\1trust/' "$hba"
        done
    fi
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    echo "starting postgresql $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true  # may be up already
    for _ in $(seq 1 30); do
        port_open && break
        sleep 1
    done
    port_open || { echo "Postgres did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
if ! psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname = 'test'" \
    | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -qc "create database test"
fi
echo "postgres: ready on 127.0.0.1:5432"
