#!/usr/bin/env bash
# `make run`: a collector and an agent for this machine, on loopback, embedded SQLite, no config.
# State lives in .run/ (database, spool, token). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-debug}
flags=()
[ "$profile" = release ] && flags+=(--release)
cargo build --workspace --bins "${flags[@]}"
bin="target/$profile"
state="$PWD/.run"
mkdir -p "$state"

# The agent id becomes the `host` label: this machine's name, restricted to [A-Za-z0-9._-].
host=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)
host=$(printf '%s' "$host" | tr -c 'A-Za-z0-9._-' '-' | cut -c1-128)

collector=("$bin/b24watch-collector" --config "$state/collector.toml" --data-dir "$state/collector")
# --rotate issues a fresh token each run whether or not the agent was enrolled before.
"${collector[@]}" enroll "$host" --rotate > "$state/agent.token"
chmod 600 "$state/agent.token"

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

"${collector[@]}" run &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/10061) 2>/dev/null && break
    sleep 0.1
done
"$bin/b24watch-agent" --config "$state/agent.toml" --collector-url http://127.0.0.1:10062 \
    --token-file "$state/agent.token" --state-dir "$state/agent" &
pids+=($!)

cat <<MSG

b24watch is running (host "$host"; state in $state):
  status:   http://127.0.0.1:10061/
  metrics:  http://127.0.0.1:10061/metrics
  hosts:    http://127.0.0.1:10061/api/v1/hosts
  history:  http://127.0.0.1:10061/api/v1/hosts/$host/series?name=cpu_usage_ratio
  checks:   http://127.0.0.1:10061/api/v1/hosts/$host/checks
  report:   http://127.0.0.1:10061/reports/sla
  gRPC:     127.0.0.1:10062 (agents)
The first samples arrive within 10 s (CPU usage after 20 s). Press Ctrl-C to stop both.

MSG
wait
