#!/usr/bin/env bash
# `make images`: the compose stack's images without a registry. Release binaries are built on
# this machine, the Debian base is made with debootstrap + docker import (deploy/docker/
# make-base.sh), and the runtime and NATS images are built from deploy/docker/Dockerfile.prebuilt
# and Dockerfile.nats on it. With a registry, `docker compose build` uses deploy/docker/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-debian:bookworm-slim}
SUP_LOCAL_IMAGE=${SUP_LOCAL_IMAGE:-sup-control-plane:local}
NATS_LOCAL_IMAGE=${NATS_LOCAL_IMAGE:-sup-nats:local}

docker info >/dev/null 2>&1 || {
  echo "make images: no Docker engine answers (docker info failed); start one or set DOCKER_HOST" >&2
  exit 1
}
echo "==> building release binaries"
cargo build --release --locked --workspace --bins
BASE_IMAGE=$BASE_IMAGE deploy/docker/make-base.sh

ctx=target/docker-context
rm -rf "$ctx" && mkdir -p "$ctx/app/bin" "$ctx/nats"
for b in sup-coordinator sup-provisioner sup-scheduler sup-health sup-logwatch supctl wsus-emulator otlp-sink; do
  cp "target/release/$b" "$ctx/app/bin/"
done
cp .tools/bin/nats-server "$ctx/nats/"
echo "==> $SUP_LOCAL_IMAGE"
docker build -q -f deploy/docker/Dockerfile.prebuilt --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$SUP_LOCAL_IMAGE" "$ctx/app"
echo "==> $NATS_LOCAL_IMAGE"
docker build -q -f deploy/docker/Dockerfile.nats --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$NATS_LOCAL_IMAGE" "$ctx/nats"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(${SUP_LOCAL_IMAGE%%:*}|${NATS_LOCAL_IMAGE%%:*}|${BASE_IMAGE%%:*}):"
