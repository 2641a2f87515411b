#!/usr/bin/env bash
# Make a Docker image from Debian bookworm packages, without a registry: debootstrap a
# minimal root with the packages asked for, then `docker import` it. Does nothing when the
# image exists.
#
# Usage: bash scripts/debian-image.sh TAG PACKAGE[,PACKAGE…]
#   DEBIAN_MIRROR=URL   the mirror (default: this host's apt source)
set -euo pipefail

tag=${1:?usage: debian-image.sh TAG PACKAGES}
packages=${2:?usage: debian-image.sh TAG PACKAGES}
log() { printf 'debian-image: %s\n' "$*" >&2; }

if docker image inspect "$tag" >/dev/null 2>&1; then exit 0; fi
command -v debootstrap >/dev/null || { log "debootstrap missing (run scripts/ensure-docker.sh)"; exit 1; }

mirror=${DEBIAN_MIRROR:-}
src=/etc/apt/sources.list.d/debian.sources
if [[ -z $mirror && -r $src ]]; then
    mirror=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$src")
fi
mirror=${mirror:-http://deb.debian.org/debian}

dir=$(mktemp -d /tmp/shoal-root.XXXXXX)
trap 'rm -rf "$dir"' EXIT
log "making $tag with debootstrap from $mirror (about a minute)"
debootstrap --variant=minbase --include="$packages" bookworm "$dir" "$mirror" \
    >/tmp/shoal-debootstrap.log 2>&1 \
    || { log "debootstrap failed; see /tmp/shoal-debootstrap.log"; exit 1; }
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
tar -C "$dir" -c . | docker import -c 'CMD ["/bin/bash"]' - "$tag" >/dev/null
log "made $tag"
