#!/usr/bin/env bash
# Build Shoal's runtime images: shoal/python:<ver>-<rev> and shoal/duckdb:<ver>-<rev>.
#
# Usage: bash runtime-images/build.sh        (what `make images` runs)
#   PYTHON_VERSIONS="3.11 3.12"  python versions to build (default: PYTHON_VERSIONS in
#                                shoal/images.py, the versions jobs may ask for)
#   FORCE=1                      rebuild even when an image with the same inputs exists
#   DEBIAN_MIRROR=URL            mirror for the local base (see scripts/debian-image.sh)
#
# Idempotent and fast when nothing changed: each image carries a label with the hash of its
# inputs (Dockerfile, launcher, wheel pins, base image id) and is skipped when it matches.
# No registry is needed: when the official python:<ver>-slim base is neither present nor
# pullable, the default version is built on shoal/base:bookworm, made here with debootstrap
# (Debian bookworm's python3 is 3.11; other versions are skipped, and said so, without a base).
# RUN steps cannot reach PyPI, so the wheels an image needs are downloaded on the host into
# its build context (gitignored) and installed with --no-index.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
images_py="$here/../shoal/images.py"

py_const() { sed -n "s/^$1 = \"\\(.*\\)\"/\\1/p" "$images_py"; }
REVISION=$(py_const RUNTIME_REVISION)
DEFAULT_PYTHON=$(py_const DEFAULT_PYTHON_VERSION)
DUCKDB_VERSION=$(py_const DUCKDB_VERSION)
: "${REVISION:?cannot read RUNTIME_REVISION from shoal/images.py}"
: "${DEFAULT_PYTHON:?cannot read DEFAULT_PYTHON_VERSION}" "${DUCKDB_VERSION:?cannot read DUCKDB_VERSION}"
OFFERED=$(sed -n 's/^PYTHON_VERSIONS: .* = (\(.*\))$/\1/p' "$images_py" | tr -d '",')
: "${OFFERED:?cannot read PYTHON_VERSIONS from shoal/images.py}"
PYTHON_VERSIONS=${PYTHON_VERSIONS:-$OFFERED}
LOCAL_BASE=shoal/base:bookworm
HOST_PY=${HOST_PYTHON:-python3}
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64)

log() { printf 'build.sh: %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }

ensure_local_base() {
    bash "$here/../scripts/debian-image.sh" "$LOCAL_BASE" python3,python3-pip,python3-venv,ca-certificates
}

# Print the base image for a python version, or nothing when none is available: the official
# slim image (pulled when a registry answers), else the local Debian base for 3.11.
python_base() {
    local ver=$1
    if have_image "python:$ver-slim" \
        || timeout 300 docker pull -q "python:$ver-slim" >/dev/null 2>&1; then
        echo "python:$ver-slim"
        return
    fi
    if [[ $ver == 3.11 ]]; then ensure_local_base; echo "$LOCAL_BASE"; fi
}

# Download the wheels in $2 (a requirements file) for python $3 into $1, unless present.
fetch_wheels() {
    local dest=$1 reqs=$2 ver=$3 stamp
    stamp="$dest/.requirements"
    if [[ -f $stamp ]] && cmp -s "$reqs" "$stamp"; then return; fi
    log "downloading wheels for python $ver into ${dest#"$here"/}"
    rm -rf "$dest"; mkdir -p "$dest"
    "$HOST_PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$ver" --implementation cp "${PLATFORMS[@]}" \
        --dest "$dest" -r "$reqs"
    cp "$reqs" "$stamp"
}

inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }

build() { bash "$here/../scripts/build-image.sh" "$@"; }

build_python() {
    local ver=$1 base ctx=$here/python tag="shoal/python:$1-$REVISION" hash
    base=$(python_base "$ver")
    if [[ -z $base ]]; then
        log "SKIPPED $tag: no base image (python:$ver-slim is not present and cannot be pulled;"
        log "         only $DEFAULT_PYTHON can be built offline, from Debian bookworm)"
        skipped+=("$tag")
        return
    fi
    fetch_wheels "$ctx/wheels/$ver" "$ctx/tools.txt" "$ver"
    hash=$(printf '%s %s %s' "$REVISION" "$(image_id "$base")" \
        "$(inputs_hash "$ctx/Dockerfile" "$ctx/launcher.py" "$ctx/tools.txt")" | sha256sum | cut -c1-16)
    build "$tag" "$ctx" "$hash" --build-arg "BASE=$base" --build-arg "PYTHON_VERSION=$ver" \
        --build-arg "REVISION=$REVISION"
    built+=("$tag")
}

build_duckdb() {
    local ctx=$here/duckdb tag="shoal/duckdb:$DUCKDB_VERSION-$REVISION" base hash reqs
    base=$(python_base "$DEFAULT_PYTHON")
    reqs=$(mktemp); echo "duckdb-cli==$DUCKDB_VERSION" >"$reqs"
    fetch_wheels "$ctx/wheels" "$reqs" "$DEFAULT_PYTHON"
    rm -f "$reqs"
    hash=$(printf '%s %s %s' "$REVISION" "$(image_id "$base")" \
        "$(inputs_hash "$ctx/Dockerfile" "$ctx/wheels/.requirements")" | sha256sum | cut -c1-16)
    build "$tag" "$ctx" "$hash" --build-arg "BASE=$base" --build-arg "REVISION=$REVISION" \
        --build-arg "DUCKDB_VERSION=$DUCKDB_VERSION"
    built+=("$tag")
}

docker info >/dev/null 2>&1 || { log "docker is not running (run scripts/ensure-docker.sh)"; exit 1; }
built=(); skipped=()
for ver in $PYTHON_VERSIONS; do build_python "$ver"; done
build_duckdb
log "ready: ${built[*]}"
if [[ ${#skipped[@]} -gt 0 ]]; then log "skipped: ${skipped[*]}"; fi
