#!/usr/bin/env bash
# `make test-compose`: the compose stack for real, without a registry. Builds the images
# (scripts/images.sh), starts docker-compose.yml with the local overlay, applies the example
# hierarchy through supctl against the composed coordinator and waits for its declared state;
# then takes a NATS node away (kill), cuts another off (network disconnect), stops a coordinator
# replica, and moves the central site's active SUP during each, checking after every step that
# each slot has one holder and that the event history's epochs only grow. The stack is secure by
# default: a NATS client without credentials and a gRPC client without its certificate are
# refused. Prometheus scrapes every service, and a stopped service fires its alert. Tears
# everything down (down -v) however it ends; the generated credentials are removed with it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROJECT=${COMPOSE_PROJECT:-suptest}
export SUP_COMPOSE_COORDINATOR_PORT=${SUP_COMPOSE_COORDINATOR_PORT:-51051}
export SUP_COMPOSE_COORDINATOR2_PORT=${SUP_COMPOSE_COORDINATOR2_PORT:-51061}
export SUP_COMPOSE_PROMETHEUS_PORT=${SUP_COMPOSE_PROMETHEUS_PORT:-51090}
export SUP_COMPOSE_NATS_PORT=${SUP_COMPOSE_NATS_PORT:-14223}
export SUP_COMPOSE_CONSOLE_PORT=${SUP_COMPOSE_CONSOLE_PORT:-51080}
CONSOLE=http://127.0.0.1:$SUP_COMPOSE_CONSOLE_PORT
C1=https://127.0.0.1:$SUP_COMPOSE_COORDINATOR_PORT
C2=https://127.0.0.1:$SUP_COMPOSE_COORDINATOR2_PORT
PROM=http://127.0.0.1:$SUP_COMPOSE_PROMETHEUS_PORT
# supctl speaks mutual TLS with the certificates the stack generates at its first start.
SECRETS=$PWD/.compose-secrets
export SUP_TLS_CA=$SECRETS/operator/ca.pem SUP_TLS_CERT=$SECRETS/operator/supctl.pem \
  SUP_TLS_KEY=$SECRETS/operator/supctl-key.pem

docker info >/dev/null 2>&1 || {
  echo "make test-compose: no Docker engine answers (docker info failed). It needs one; make test does not." >&2
  exit 1
}
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); elif command -v docker-compose >/dev/null; then COMPOSE=(docker-compose); else
  echo "make test-compose: neither 'docker compose' nor docker-compose is installed" >&2; exit 1
fi
compose() { "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml -f deploy/docker/compose.local.yml "$@"; }

scripts/images.sh
SUPCTL=$ROOT/target/release/supctl
CHECK=$ROOT/scripts/compose-check.py

cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "==> failed; the services' last log lines:"
    compose logs --tail 30 2>&1 | tail -200 || true
  fi
  echo "==> docker compose down -v"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$SECRETS"
  exit $rc
}
trap cleanup EXIT

step() { echo "==> $*"; }
# Retries a command until it succeeds or the deadline passes.
retry() { # seconds, command...
  local until=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $until ] || { echo "gave up after waiting: $*"; return 1; }
    sleep 2
  done
}
status_ok() { # coordinator, expected active servers...
  local c=$1; shift
  local out
  out=$(SUP_COORDINATOR=$c "$SUPCTL" status -o json 2>/dev/null) || return 1
  echo "$out" | python3 "$CHECK" status "$@" >/tmp/sup-compose-check.$$ 2>&1 || { cat /tmp/sup-compose-check.$$; return 1; }
}
# A NATS node is back in the cluster with JetStream current (its full /healthz).
nats_current() {
  compose exec -T "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/8222 && printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3 && grep -q ' 200 ' <&3"
}
history_ok() {
  local out
  out=$(SUP_COORDINATOR=$1 "$SUPCTL" events -o json) || return 1
  python3 "$CHECK" events <<<"$out"
}

compose down -v --remove-orphans >/dev/null 2>&1 || true
rm -rf "$SECRETS" && mkdir -p "$SECRETS"
step "docker compose up (3 NATS nodes, 2 coordinators, provisioner, scheduler, health, logwatch, console, emulator, collector)"
compose up -d --no-build
retry 120 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SUP_COMPOSE_COORDINATOR_PORT" 2>/dev/null

step "secure by default: no NATS client without credentials, no gRPC client without its certificate"
"$ROOT/.tools/bin/python3" - "$SUP_COMPOSE_NATS_PORT" "$SECRETS/automation/nats.password" <<'PY'
import asyncio, sys
import nats
from nats.errors import Error as NatsError

url = f"nats://127.0.0.1:{sys.argv[1]}"

async def main():
    try:
        await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5)
    except NatsError as e:
        assert "Authorization Violation" in str(e), e
        print(f"a client without credentials: refused ({e})")
    else:
        sys.exit("a client without credentials was let in")
    password = open(sys.argv[2]).read().strip()
    nc = await nats.connect(url, user="automation", password=password, inbox_prefix="_INBOX_automation")
    print("the automation user with its generated password: connected")
    await nc.close()

asyncio.run(main())
PY
if env -u SUP_TLS_CERT -u SUP_TLS_KEY SUP_COORDINATOR=$C1 "$SUPCTL" status >/dev/null 2>&1; then
  echo "the coordinator answered a client without a certificate"; exit 1
fi
echo "supctl without its client certificate: refused"

step "supctl apply deploy/examples/site.toml against the composed coordinator"
retry 60 env SUP_COORDINATOR=$C1 "$SUPCTL" apply -f deploy/examples/site.toml --wait --timeout 5m
retry 60 status_ok "$C1"
retry 60 history_ok "$C1"
step "every site went through its (emulated) SMS Provider: the commits name each active SUP"
journal=$(compose exec -T emulator wsus-emulator ctl --control 127.0.0.1:7701 provider-journal)
python3 -c '
import json, sys
commits = json.load(sys.stdin)
for site, active in [("CEN", "cen-sup01.corp.example.com"), ("CH2", "ch2-sup01.corp.example.com")]:
    assert any(c["site"] == site and c["default_wsus"] == active for c in commits), (site, commits)
assert all(c["accepted"] for c in commits), commits
' <<<"$journal"

step "the console shows every site through mutual TLS, and refuses an action without the token"
console_ok() {
  local page
  page=$(curl -fsS "$CONSOLE/") || return 1
  for site in CEN CH1 CH2; do grep -q "data-site=\"$site\"" <<<"$page" || { echo "console: $site missing"; return 1; }; done
  page=$(curl -fsS "$CONSOLE/sites/CEN") || return 1
  grep -q "cen-sup01.corp.example.com" <<<"$page"
}
retry 60 console_ok
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$CONSOLE/sites/CEN/sync")
[ "$code" = 403 ] || { echo "the console ran an action without the token ($code)"; exit 1; }
echo "console: every site shown; an action without the token refused"

step "kill one NATS node; move the central site's active SUP while it is gone"
compose kill nats2
retry 90 env SUP_COORDINATOR=$C1 "$SUPCTL" sup activate --site CEN --server cen-sup02.corp.example.com
retry 90 status_ok "$C1" cen-sup02.corp.example.com
retry 60 history_ok "$C1"
compose start nats2
retry 120 nats_current nats2

step "partition another NATS node from the network; move the active SUP back"
NATS3=$(compose ps -q nats3)
NETWORK=${PROJECT}_default
docker network disconnect "$NETWORK" "$NATS3"
retry 90 env SUP_COORDINATOR=$C1 "$SUPCTL" sup activate --site CEN --server cen-sup01.corp.example.com
retry 90 status_ok "$C1" cen-sup01.corp.example.com
docker network connect "$NETWORK" "$NATS3"
retry 120 nats_current nats3
retry 60 history_ok "$C1"

step "stop one coordinator replica; the other serves and moves the active SUP"
compose stop coordinator-1
retry 90 env SUP_COORDINATOR=$C2 "$SUPCTL" sup activate --site CEN --server cen-sup02.corp.example.com
retry 90 status_ok "$C2" cen-sup02.corp.example.com
compose start coordinator-1

step "everything back: one holder per slot, epochs only grew, both replicas agree"
retry 120 status_ok "$C1" cen-sup02.corp.example.com
retry 60 status_ok "$C2" cen-sup02.corp.example.com
retry 60 history_ok "$C1"
step "Prometheus scrapes every service"
targets_up() {
  curl -fsS "$PROM/api/v1/targets" | python3 -c '
import json, sys
targets = json.load(sys.stdin)["data"]["activeTargets"]
jobs = {t["labels"]["job"] for t in targets if t["health"] == "up"}
want = {"sup-coordinator", "sup-provisioner", "sup-scheduler", "sup-health", "sup-logwatch", "sup-console"}
down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
if not (want <= jobs and not down and len(targets) == 7):
    sys.exit(f"not every target is up yet: down {down}")
print(f"{len(targets)} targets up: {sorted(jobs)}")'
}
retry 60 targets_up
step "an injected fault fires its alert: the log watcher stopped, SupServiceDown"
compose stop logwatch
alert_firing() { # alert name, job
  curl -fsS "$PROM/api/v1/alerts" | python3 -c '
import json, sys
alerts = json.load(sys.stdin)["data"]["alerts"]
if not any(a["labels"]["alertname"] == sys.argv[1] and a["labels"].get("job") == sys.argv[2]
           and a["state"] == "firing" and a["annotations"].get("runbook_url") for a in alerts):
    seen = [(a["labels"]["alertname"], a["state"]) for a in alerts]
    sys.exit(f"{sys.argv[1]} not firing yet: {seen}")
print(f"{sys.argv[1]} firing for {sys.argv[2]}")' "$1" "$2"
}
retry 240 alert_firing SupServiceDown sup-logwatch
compose start logwatch
retry 60 targets_up

step "the collector received spans"
collector_log=$(compose logs otel-collector 2>&1)
grep -q "span(s)" <<<"$collector_log" || { echo "no spans reached the collector"; exit 1; }
echo "test-compose: passed"
