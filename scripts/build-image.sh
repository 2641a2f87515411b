#!/usr/bin/env bash
# Build a Shoal image unless an image with the same inputs exists: each image carries the
# label io.shoal.inputs=HASH (the caller's hash of everything that goes into it), and an
# image whose label matches is kept. FORCE=1 builds anyway. Docker's output is shown only
# when the build fails.
#
# Usage: bash scripts/build-image.sh TAG CONTEXT HASH [DOCKER-BUILD-ARGS…]
set -euo pipefail

tag=${1:?usage: build-image.sh TAG CONTEXT HASH [ARGS…]}
context=${2:?usage: build-image.sh TAG CONTEXT HASH [ARGS…]}
hash=${3:?usage: build-image.sh TAG CONTEXT HASH [ARGS…]}
shift 3
log() { printf 'build-image: %s\n' "$*" >&2; }

label=$(docker image inspect -f '{{ index .Config.Labels "io.shoal.inputs" }}' "$tag" 2>/dev/null || true)
if [[ -z ${FORCE:-} && $label == "$hash" ]]; then
    log "$tag is up to date"
    exit 0
fi
log "building $tag"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! docker build --force-rm --label "io.shoal.inputs=$hash" --tag "$tag" "$@" "$context" \
        >"$out" 2>&1; then
    cat "$out" >&2
    log "docker build of $tag failed"
    exit 1
fi
log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=si)B)"
