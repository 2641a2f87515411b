#!/usr/bin/env bash
# Build shoal/service:local, the image ../compose.yaml runs (what `make service-image` runs).
#
# Its base, shoal/service-base:bookworm, is made once from Debian packages (see
# scripts/debian-image.sh). Shoal and its libraries are built as wheels on the host into
# deploy/wheels (gitignored): the libraries again only when pyproject.toml changed. The image
# carries a label with the hash of its inputs and is rebuilt only when they change.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$here/..
TAG=${SHOAL_IMAGE:-shoal/service:local}
BASE=shoal/service-base:bookworm
PY=${HOST_PYTHON:-$root/.venv/bin/python}
wheels=$here/wheels
log() { printf 'deploy/build.sh: %s\n' "$*" >&2; }

docker info >/dev/null 2>&1 || { log "docker is not running (run scripts/ensure-docker.sh)"; exit 1; }
bash "$root/scripts/debian-image.sh" "$BASE" \
    python3,python3-venv,ca-certificates,iptables,rabbitmq-server,util-linux

# pip wheel ARGS: quiet unless it fails.
wheel() {
    local out
    out=$(mktemp)
    if ! "$PY" -m pip wheel --disable-pip-version-check --wheel-dir "$wheels" "$@" >"$out" 2>&1
    then
        cat "$out" >&2; rm -f "$out"; log "pip wheel failed"; exit 1
    fi
    rm -f "$out"
}
stamp=$wheels/.pyproject
if [[ ! -f $stamp ]] || ! cmp -s "$root/pyproject.toml" "$stamp"; then
    log "building the wheels of Shoal's libraries into deploy/wheels"
    rm -rf "$wheels"; mkdir -p "$wheels"
    wheel "$root"
    cp "$root/pyproject.toml" "$stamp"
fi
rm -f "$wheels"/shoal-*.whl
wheel --no-deps "$root"

# The wheel's contents, not its bytes (those carry file times).
content_hash() {
    "$PY" - "$@" <<'PY'
import hashlib, sys, zipfile
digest = hashlib.sha256()
for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as wheel:
        for name in sorted(wheel.namelist()):
            digest.update(name.encode() + wheel.read(name))
print(digest.hexdigest())
PY
}
hash=$( (docker image inspect -f '{{.Id}}' "$BASE"; cat "$here/Dockerfile" "$here/rabbitmq-entrypoint.sh"
         cd "$wheels" && ls -1 ./*.whl && content_hash shoal-*.whl) | sha256sum | cut -c1-16)
bash "$root/scripts/build-image.sh" "$TAG" "$here" "$hash" --build-arg "BASE=$BASE"
