#!/usr/bin/env bash
# Makes the runtime base image without a registry: a minimal Debian root from Debian's own
# package mirror (debootstrap), trimmed, and `docker import`ed under the name the Dockerfiles
# expect (BASE_IMAGE, default debian:bookworm-slim). Needs root (debootstrap) and Docker.
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE exists"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  echo "==> installing debootstrap"
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "==> debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >/dev/null
# What a runtime image does not need.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "==> docker import as $BASE_IMAGE"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
docker image inspect "$BASE_IMAGE" --format '{{.Id}} {{.Size}}'
