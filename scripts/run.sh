#!/usr/bin/env bash
# `make run`: the whole stack on this machine. nats-server with JetStream, the five services and
# the WSUS emulator standing in for every site system of the site file, each set up as the file
# declares it (its WSUS web site on its ports, with SSL where it says so), and for each site's SMS
# Provider, which the provisioner reaches over WinRM (NTLM, sealed messages) as it would a real
# site (PROVIDER=agent uses the emulator's gRPC agent instead); then the file is applied and
# followed until every role is in its declared state. Every run starts fresh: the
# emulated servers cannot remember what an earlier run installed, so the bus state is not kept
# either. Logs live under .run/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/.run
SITE=${SITE:-deploy/examples/site.toml}
NATS_PORT=${NATS_PORT:-14222}
COORDINATOR_PORT=${COORDINATOR_PORT:-50051}
SCHEDULER_PORT=${SCHEDULER_PORT:-50052}
HEALTH_PORT=${HEALTH_PORT:-50053}
CONSOLE_PORT=${CONSOLE_PORT:-8080}
EMU_AGENT=${EMU_AGENT:-7700}
EMU_CONTROL=${EMU_CONTROL:-7701}
EMU_PROVIDER=${EMU_PROVIDER:-15985}
PROVIDER=${PROVIDER:-sms}
PROFILE=${PROFILE:-release}

alive() { [ -f "$RUN/pids" ] && while read -r name pid; do kill -0 "$pid" 2>/dev/null || return 1; done < "$RUN/pids"; }

if alive; then
  # The emulator stands in for the servers of the file the stack started with: another file (or
  # this one changed) needs a fresh stack.
  if [ -f "$SITE" ] && [ -f "$RUN/site.sha256" ] && [ "$(sha256sum < "$SITE")" != "$(cat "$RUN/site.sha256")" ]; then
    echo "make run: the stack is running with $(cat "$RUN/site.path" 2>/dev/null || echo another site file), whose servers the emulator stands in for;"
    echo "  make stop, then SITE=$SITE make run"
    exit 2
  fi
  echo "The stack is already running (make stop stops it). Status:"
  # shellcheck disable=SC1091
  . "$RUN/env"
  supctl status
  exit 0
fi
[ -f "$RUN/pids" ] && "$ROOT/scripts/stop.sh" >/dev/null 2>&1 || true

[ -f "$SITE" ] || { echo "make run: site file $SITE not found"; exit 2; }

# Ports below 1024 (the WSUS default web site's 80/443) need root or a lowered
# ip_unprivileged_port_start; otherwise the emulator binds them 18000 higher and the health
# service probes them there.
# LOW_PORT_OFFSET=N chooses the offset (0: bind them as they are).
LOW_PORT_ARGS=()
if [ -n "${LOW_PORT_OFFSET:-}" ]; then
  [ "$LOW_PORT_OFFSET" != 0 ] && LOW_PORT_ARGS=(--low-port-offset "$LOW_PORT_OFFSET")
elif [ "$(id -u)" != 0 ] && [ "$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start 2>/dev/null || echo 1024)" -gt 80 ]; then
  LOW_PORT_ARGS=(--low-port-offset 18000)
fi

echo "==> building ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --workspace --bins --locked; else cargo build --workspace --bins --locked; fi
if [ -d "$RUN/nats" ] || [ -d "$RUN/sites" ]; then
  echo "==> starting fresh: the bus state and emulated servers of the earlier run are discarded"
  rm -rf "$RUN/nats" "$RUN/sites"
fi
mkdir -p "$RUN/bin" "$RUN/logs" "$RUN/config" "$RUN/sites"
for b in sup-coordinator sup-provisioner sup-scheduler sup-health sup-logwatch sup-console supctl wsus-emulator; do
  cp -f "target/$PROFILE/$b" "$RUN/bin/$b"
done
cp -f .tools/bin/nats-server "$RUN/bin/nats-server"
export PATH="$RUN/bin:$PATH"
: > "$RUN/pids"

start() { # name, then the command
  local name=$1; shift
  "$@" > "$RUN/logs/$name.log" 2>&1 &
  echo "$name $!" >> "$RUN/pids"
}

wait_port() { # name port
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "make run: $1 did not start listening on $2; see $RUN/logs/$1.log"; tail -20 "$RUN/logs/$1.log"; exit 1
}

NATS_URL="nats://127.0.0.1:$NATS_PORT"
echo "==> starting nats-server (JetStream, store in .run/nats)"
start nats nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$RUN/nats"
wait_port nats "$NATS_PORT"

# The emulated SMS Providers' lab account: a fresh password each run, kept only in .run/.
SMS_PROVIDER_USER='LAB\sup-provider'
SMS_PROVIDER_PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
( umask 077; printf '%s\n' "$SMS_PROVIDER_PASSWORD" > "$RUN/provider-password" )
export WSUS_EMULATOR_PROVIDER_PASSWORD=$SMS_PROVIDER_PASSWORD SMS_PROVIDER_PASSWORD

echo "==> starting the WSUS emulator (every server of $SITE, as it declares them, and each site's SMS Provider)"
rm -f "$RUN/emulator-ca.pem" "$RUN/port-map.toml"
sha256sum < "$SITE" > "$RUN/site.sha256"
echo "$SITE" > "$RUN/site.path"
start wsus-emulator wsus-emulator run --site-file "$SITE" "${LOW_PORT_ARGS[@]}" \
  --port-map-out "$RUN/port-map.toml" --ca-out "$RUN/emulator-ca.pem" \
  --agent "127.0.0.1:$EMU_AGENT" --control "127.0.0.1:$EMU_CONTROL" \
  --provider-http "127.0.0.1:$EMU_PROVIDER" --provider-user "$SMS_PROVIDER_USER" \
  --logs "$RUN/sites" --step-ms 300 --health-interval-ms 5000
wait_port wsus-emulator "$EMU_CONTROL"
for _ in $(seq 1 100); do [ -f "$RUN/emulator-ca.pem" ] && [ -f "$RUN/port-map.toml" ] && break; sleep 0.1; done
[ -f "$RUN/port-map.toml" ] || { echo "make run: the emulator did not start; see $RUN/logs/wsus-emulator.log"; tail -20 "$RUN/logs/wsus-emulator.log"; exit 1; }
# The first declared HTTP port, where it is bound, for WSUS_EMULATOR_HTTP.
EMU_HTTP=$(awk -F' = ' 'NR==1{print $2}' "$RUN/port-map.toml")

cat > "$RUN/config/coordinator.toml" <<CONF
listen = "127.0.0.1:$COORDINATOR_PORT"
admin_listen = "127.0.0.1:9101"
reconcile_interval_secs = 5
failover_after_secs = 20
[nats]
url = "$NATS_URL"
CONF
cat > "$RUN/config/provisioner.toml" <<CONF
admin_listen = "127.0.0.1:9102"
install_timeout_secs = 120
drift_interval_secs = 60
[agents]
"*" = "http://127.0.0.1:$EMU_AGENT"
[nats]
url = "$NATS_URL"
CONF
# Every site with a site server is reached through its SMS Provider (the emulator's, on one
# port for all: connect_to), as a real site would be; the others through the agent.
if [ "$PROVIDER" = sms ]; then
  python3 - "$SITE" "$EMU_PROVIDER" >> "$RUN/config/provisioner.toml" <<'PY'
import sys, tomllib
site_file, port = sys.argv[1], sys.argv[2]
with open(site_file, "rb") as f:
    sites = tomllib.load(f).get("site", [])
for s in sites:
    if s.get("site_server"):
        print(f'[providers.{s["code"]}]')
        print(f'url = "http://{s["site_server"]}:5985/wsman"')
        print("user = 'LAB\\sup-provider'")
        print('password_env = "SMS_PROVIDER_PASSWORD"')
        print(f'connect_to = "127.0.0.1:{port}"')
PY
fi
cat > "$RUN/config/scheduler.toml" <<CONF
listen = "127.0.0.1:$SCHEDULER_PORT"
admin_listen = "127.0.0.1:9103"
[nats]
url = "$NATS_URL"
CONF
cat > "$RUN/config/health.toml" <<CONF
listen = "127.0.0.1:$HEALTH_PORT"
admin_listen = "127.0.0.1:9104"
interval_ms = 3000
milestone_max_age_secs = 120
ca_file = "$RUN/emulator-ca.pem"
[resolve]
"*" = "127.0.0.1"
[port_map]
$(cat "$RUN/port-map.toml")
[nats]
url = "$NATS_URL"
CONF
# The console: read-only unless CONSOLE_ACTIONS=1, which enables Run Synchronization and
# activation for whoever holds the token in .run/console-token.
CONSOLE_ACTIONS_CONF="enabled = false"
if [ "${CONSOLE_ACTIONS:-0}" = 1 ]; then
  ( umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$RUN/console-token" )
  CONSOLE_ACTIONS_CONF="enabled = true
token_file = \"$RUN/console-token\""
fi
cat > "$RUN/config/console.toml" <<CONF
listen = "127.0.0.1:$CONSOLE_PORT"
admin_listen = "127.0.0.1:9106"
coordinator = "http://127.0.0.1:$COORDINATOR_PORT"
scheduler = "http://127.0.0.1:$SCHEDULER_PORT"
[actions]
$CONSOLE_ACTIONS_CONF
CONF
cat > "$RUN/config/logwatch.toml" <<CONF
admin_listen = "127.0.0.1:9105"
poll_interval_ms = 250
root = "$RUN/sites"
[nats]
url = "$NATS_URL"
CONF

echo "==> starting the services"
export SUP_INSTALL_PW=${SUP_INSTALL_PW:-example-only}
start coordinator sup-coordinator --config "$RUN/config/coordinator.toml"
start provisioner sup-provisioner --config "$RUN/config/provisioner.toml"
start scheduler sup-scheduler --config "$RUN/config/scheduler.toml"
start health sup-health --config "$RUN/config/health.toml"
start logwatch sup-logwatch run --config "$RUN/config/logwatch.toml"
start console sup-console --config "$RUN/config/console.toml"
wait_port coordinator "$COORDINATOR_PORT"
wait_port scheduler "$SCHEDULER_PORT"
wait_port health "$HEALTH_PORT"
wait_port console "$CONSOLE_PORT"

cat > "$RUN/env" <<ENV
# The local SUP control plane: source this file to use supctl against it.
export NATS_URL=$NATS_URL
export SUP_COORDINATOR=http://127.0.0.1:$COORDINATOR_PORT
export SUP_SCHEDULER=http://127.0.0.1:$SCHEDULER_PORT
export SUP_HEALTH=http://127.0.0.1:$HEALTH_PORT
# The web console (open it in a browser).
export SUP_CONSOLE=http://127.0.0.1:$CONSOLE_PORT
export WSUS_EMULATOR_HTTP=http://127.0.0.1:$EMU_HTTP
export WSUS_EMULATOR_CONTROL=127.0.0.1:$EMU_CONTROL
# The emulated SMS Providers (every site of the file on one WinRM port) and their lab account,
# for supctl import.
export SMS_PROVIDER_URL=http://127.0.0.1:$EMU_PROVIDER/wsman
export SMS_PROVIDER_USER='$SMS_PROVIDER_USER'
export SMS_PROVIDER_PASSWORD=\$(cat "$RUN/provider-password")
export PATH=$RUN/bin:\$PATH
ENV
# shellcheck disable=SC1091
. "$RUN/env"

echo "==> applying $SITE"
supctl apply -f "$SITE" --wait --timeout 5m
echo
supctl status
cat <<DONE

The stack is running. The console: http://127.0.0.1:$CONSOLE_PORT/
  source .run/env                 supctl, NATS_URL and the endpoints in your shell
  supctl events --follow          watch every change as it happens
  supctl sync run --site CODE     Run Synchronization on a top site (CODE is its site code)
  supctl import --site CODE       the site as its (emulated) SMS Provider holds it, as a site file
  wsus-emulator ctl fault SERVER down    see health and failover react (SERVER: a SUP's FQDN)
  logs: .run/logs/*.log (services), .run/sites/<server>/Logs (the emulated ConfigMgr logs)
  make stop                       stop everything make run started
DONE
