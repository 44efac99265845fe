#!/usr/bin/env bash
# Makes the runtime base image without a registry: a minimal Debian root from Debian's own
# package mirror (debootstrap) with the CA certificates (TLS to NATS and WinRM trusts the
# system's roots when no CA file is given; openssl comes with them, for the compose stack's
# credentials), trimmed, and `docker import`ed under a name of the project's own (BASE_IMAGE,
# default sup-base:bookworm). Needs root (debootstrap) and Docker.
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-sup-base:bookworm}
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
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR" >/dev/null
# What a runtime image does not need.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
echo "==> docker import as $BASE_IMAGE"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
docker image inspect "$BASE_IMAGE" --format '{{.Id}} {{.Size}}'
