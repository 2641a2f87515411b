#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`, and that debootstrap and a compose CLI are
# available.
#
# Idempotent; run as root. Installs docker.io when dockerd is missing, starts dockerd in the
# background (logging to /var/log/dockerd.log, detached so it outlives this script) and waits
# up to 60 s for it. debootstrap is needed by runtime-images/build.sh and deploy/build.sh to
# make base images when no registry is reachable; Debian's docker-compose runs compose.yaml
# where the `docker compose` plugin is not installed.
set -euo pipefail

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt_install debootstrap
fi

if ! command -v docker-compose >/dev/null 2>&1 \
    && ! docker compose version >/dev/null 2>&1; then
    log "installing docker-compose"
    apt_install docker-compose
fi

if docker info >/dev/null 2>&1; then
    log "docker is up"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    log "installing docker.io"
    apt_install docker.io
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "starting dockerd (log: /var/log/dockerd.log)"
    nohup setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
    disown || true
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "docker is up"
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/dockerd.log"
exit 1
