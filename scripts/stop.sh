#!/usr/bin/env bash
# `make stop`: stops what `make run` started (SIGTERM, then SIGKILL after 10 s).
set -uo pipefail
cd "$(dirname "$0")/.."
PIDS=.run/pids
[ -f "$PIDS" ] || { echo "nothing to stop"; exit 0; }
tac "$PIDS" | while read -r name pid; do
  if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null && echo "stopping $name ($pid)"; fi
done
for _ in $(seq 1 100); do
  left=0
  while read -r _ pid; do kill -0 "$pid" 2>/dev/null && left=1; done < "$PIDS"
  [ "$left" = 0 ] && break
  sleep 0.1
done
while read -r name pid; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" && echo "killed $name ($pid)"; done < "$PIDS"
rm -f "$PIDS"
echo "stopped"
