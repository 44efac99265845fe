#!/usr/bin/env bash
# `make images`: the compose stack's images without a registry. Release binaries are built on
# this machine, the Debian base (with CA certificates) is made with debootstrap + docker import
# (deploy/docker/make-base.sh) as sup-base:bookworm, and on it: the production image (the
# services and supctl, Dockerfile.prebuilt), the lab image (plus the WSUS emulator and the OTLP
# sink, Dockerfile.lab), NATS (Dockerfile.nats) and Prometheus from Debian's package
# (Dockerfile.prometheus). With a registry, `docker compose build` uses deploy/docker/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-sup-base:bookworm}
SUP_LOCAL_IMAGE=${SUP_LOCAL_IMAGE:-sup-control-plane:local}
SUP_LAB_IMAGE=${SUP_LAB_IMAGE:-sup-lab:local}
NATS_LOCAL_IMAGE=${NATS_LOCAL_IMAGE:-sup-nats:local}
PROMETHEUS_LOCAL_IMAGE=${PROMETHEUS_LOCAL_IMAGE:-sup-prometheus:local}

docker info >/dev/null 2>&1 || {
  echo "make images: no Docker engine answers (docker info failed); start one or set DOCKER_HOST" >&2
  exit 1
}
echo "==> building release binaries"
cargo build --release --locked --workspace --bins
BASE_IMAGE=$BASE_IMAGE deploy/docker/make-base.sh

command -v prometheus >/dev/null || {
  echo "make images: Debian's prometheus package is needed (make tools installs it)" >&2
  exit 1
}

ctx=target/docker-context
rm -rf "$ctx" && mkdir -p "$ctx/app/bin" "$ctx/lab/bin" "$ctx/nats" "$ctx/prometheus"
for b in sup-coordinator sup-provisioner sup-scheduler sup-health sup-logwatch sup-console supctl; do
  cp "target/release/$b" "$ctx/app/bin/"
done
for b in wsus-emulator otlp-sink; do
  cp "target/release/$b" "$ctx/lab/bin/"
done
cp .tools/bin/nats-server "$ctx/nats/"
cp "$(command -v prometheus)" "$ctx/prometheus/"
echo "==> $SUP_LOCAL_IMAGE"
docker build -q -f deploy/docker/Dockerfile.prebuilt --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$SUP_LOCAL_IMAGE" "$ctx/app"
echo "==> $SUP_LAB_IMAGE"
docker build -q -f deploy/docker/Dockerfile.lab --build-arg "PRODUCTION_IMAGE=$SUP_LOCAL_IMAGE" -t "$SUP_LAB_IMAGE" "$ctx/lab"
echo "==> $NATS_LOCAL_IMAGE"
docker build -q -f deploy/docker/Dockerfile.nats --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$NATS_LOCAL_IMAGE" "$ctx/nats"
echo "==> $PROMETHEUS_LOCAL_IMAGE"
docker build -q -f deploy/docker/Dockerfile.prometheus --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$PROMETHEUS_LOCAL_IMAGE" "$ctx/prometheus"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E "^(${SUP_LOCAL_IMAGE%%:*}|${SUP_LAB_IMAGE%%:*}|${NATS_LOCAL_IMAGE%%:*}|${PROMETHEUS_LOCAL_IMAGE%%:*}|${BASE_IMAGE%%:*}):"
