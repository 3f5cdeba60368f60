#!/usr/bin/env bash
# The hub end-to-end benchmark (docs/benchmarks.md, "Hub (end to end)").
#
#   tools/hubload/bench.sh single   # 10k viewers, one server process, SQLite
#   tools/hubload/bench.sh multi    # 64k viewers, 4 server processes, PostgreSQL + NATS
#
# Knobs (environment): VIEWERS, SERVERS, RATE (chat msg/s in total), DURATION (s),
# NO_BUILD=1 (use the binaries already in $CARGO_TARGET_DIR/release),
# DATABASE_ADMIN_URL (multi: where to CREATE DATABASE; default postgres://postgres@127.0.0.1:5432/postgres),
# NATS_URL (multi; default nats://127.0.0.1:4222, which must be running).
# Everything listens on and connects to loopback only; servers are stopped on exit.
set -euo pipefail

MODE=${1:-single}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-load}
BIN=$CARGO_TARGET_DIR/release
case "$MODE" in
  single) VIEWERS=${VIEWERS:-10000}; SERVERS=${SERVERS:-1}; RATE=${RATE:-100}; BASE_PORT=18180 ;;
  multi)  VIEWERS=${VIEWERS:-64000}; SERVERS=${SERVERS:-4}; RATE=${RATE:-20}; BASE_PORT=18190 ;;
  *) echo "usage: $0 single|multi" >&2; exit 2 ;;
esac
DURATION=${DURATION:-20}

if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p web --bin gongkai && cargo build --release -p hubload)
fi

WORK=$(mktemp -d /tmp/hubload.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

export GONGKAI_LOG_LEVEL=${GONGKAI_LOG_LEVEL:-warn}
# Every simulated viewer comes from 127.0.0.1: lift the per-address caps and budgets.
export GONGKAI_HUB_LIMIT_PER_IP=false
export GONGKAI_LIMITS_WEBSOCKETS_PER_IP=1000000
export GONGKAI_LIMITS_VIEWER_IDENTITIES_PER_IP_PER_HOUR=1000000
if [[ "$MODE" == multi ]]; then
  ADMIN_URL=${DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  DB=hubload_$(date +%Y%m%d%H%M%S)
  psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
  export GONGKAI_DATABASE_URL=${ADMIN_URL%/*}/$DB
  export GONGKAI_NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
  echo "database $GONGKAI_DATABASE_URL, bus $GONGKAI_NATS_URL"
fi

# The first server creates the schema; staff user and token go into the same database.
export GONGKAI_DATA_DIR=$WORK/data0
start_server() { # index
  local port=$((BASE_PORT + $1))
  mkdir -p "$WORK/data$1"
  GONGKAI_DATA_DIR=$WORK/data$1 "$BIN/gongkai" serve --listen "127.0.0.1:$port" \
    >"$WORK/server$1.out" 2>"$WORK/server$1.log" &
  PIDS+=($!)
  for _ in $(seq 600); do
    grep -q "gongkai listening" "$WORK/server$1.out" && return 0
    sleep 0.1
  done
  echo "server $1 did not start; log:" >&2; tail -20 "$WORK/server$1.log" >&2; exit 1
}
start_server 0
echo "bench-password-$RANDOM$RANDOM" | "$BIN/gongkai" admin create-user --username bench --role admin >/dev/null
TOKEN=$("$BIN/gongkai" admin create-token --username bench --name hubload | tail -1)
for i in $(seq 1 $((SERVERS - 1))); do start_server "$i"; done

URL0=http://127.0.0.1:$BASE_PORT
EVENT=$(curl -sf -X POST "$URL0/api/v1/events" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"kind":"interview","title":"hubload","scheduled_start":"2026-12-01T09:30:00+08:00","scheduled_end":"2026-12-01T11:00:00+08:00"}' \
  | jq -r .id)
curl -sf -X POST "$URL0/api/v1/events/$EVENT/start" -H "Authorization: Bearer $TOKEN" >/dev/null

URLS=$(for i in $(seq 0 $((SERVERS - 1))); do printf 'http://127.0.0.1:%d,' $((BASE_PORT + i)); done)
SERVER_PIDS=$(IFS=,; echo "${PIDS[*]}")
EXTRA=()
if [[ "$MODE" == multi ]] && NATS_PID=$(pgrep -xo nats-server); then EXTRA=(--extra-pid "$NATS_PID"); fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB, load $(cut -d' ' -f1-3 /proc/loadavg)"
set -x
"$BIN/hubload" run --url "${URLS%,}" --event "$EVENT" --viewers "$VIEWERS" --rate "$RATE" \
  --duration "$DURATION" --server-pid "$SERVER_PIDS" "${EXTRA[@]}" --json "$WORK/report.json" \
  ${HUBLOAD_ARGS:-}
set +x
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); report: $WORK/report.json; server logs: $WORK/server*.log"
