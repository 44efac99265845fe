#!/usr/bin/env bash
# Checks the deployment files with tools written elsewhere: both Kustomize overlays rendered by
# kubectl, validated against the Kubernetes schemas (kubernetes-validate) and scanned by checkov
# with every skipped check annotated with its reason; the compose file by `docker compose
# config`; the alerting rules by promtool (syntax, and each alert's unit tests).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${TOOLS:-$PWD/.tools}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.32.0}
out=target/deploy
mkdir -p "$out"

for overlay in lab production; do
    rendered="$out/$overlay.yaml"
    kubectl kustomize "deploy/k8s/overlays/$overlay" > "$rendered"
    echo "deploy/k8s/overlays/$overlay: $(grep -c '^kind:' "$rendered") objects rendered to $rendered"
    "$TOOLS/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$rendered"
    # A skip must say why: checkov.io/skipN: CKV_ID=reason.
    if grep -E 'checkov\.io/skip[0-9]+:' "$rendered" | grep -vE ':[[:space:]]*CKV2?_[A-Z0-9_]+=.{10,}'; then
        echo "$rendered: a checkov skip without its reason (checkov.io/skipN: CKV_ID=reason)" >&2
        exit 1
    fi
    "$TOOLS/bin/checkov" --file "$rendered" --framework kubernetes --compact --quiet \
        --skip-download --output cli
done

if docker compose version >/dev/null 2>&1; then
    docker compose -f docker-compose.yml config --quiet
elif command -v docker-compose >/dev/null; then
    docker-compose -f docker-compose.yml config --quiet
else
    echo "docker compose is needed to check docker-compose.yml (apt-get install docker-compose)" >&2
    exit 1
fi
echo "docker-compose.yml: valid"

promtool check rules deploy/observability/alerts.yml
promtool test rules deploy/observability/alerts.test.yml
