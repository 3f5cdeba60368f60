#!/usr/bin/env bash
# The SFU benchmark (docs/benchmarks.md, "Media (SFU)"): one aiortc WHIP publisher
# (tests/peers/whip_publisher.py: 320x240 VP8 ~30 fps + Opus) and N webrtc-rs WHEP
# viewers (tools/mediaload) on loopback against a release `gongkai serve`.
#
#   tools/mediaload/bench.sh            # 100, 250 and 500 viewers
#   VIEWERS="50 100" tools/mediaload/bench.sh
#
# Knobs: VIEWERS (list), RAMP (viewers/s, default 50), MEASURE (s, default 10),
# CODEC (vp8|h264), NO_BUILD=1. Needs python3 with tests/requirements.txt (aiortc).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-load}
BIN=$CARGO_TARGET_DIR/release
VIEWERS=${VIEWERS:-"100 250 500"}
RAMP=${RAMP:-50}
MEASURE=${MEASURE:-10}
CODEC=${CODEC:-vp8}
PORT=18431

if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p web --bin gongkai && cargo build --release -p mediaload)
fi

WORK=$(mktemp -d /tmp/mediaload.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

cat >"$WORK/gongkai.toml" <<T
listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"
log_level = "warn"
[media]
bind_ip = "127.0.0.1"
recording = false
T
"$BIN/gongkai" admin create-user --config "$WORK/gongkai.toml" --username bench --role admin <<<"correct horse battery staple" >/dev/null
API=$("$BIN/gongkai" admin create-token --config "$WORK/gongkai.toml" --username bench --name bench | tail -1)
touch "$WORK/server.out"
"$BIN/gongkai" serve --config "$WORK/gongkai.toml" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 300); do grep -q "gongkai listening" "$WORK/server.out" && break; sleep 0.1; done
URL=http://127.0.0.1:$PORT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)[\"$1\"])"; }
EVENT=$(curl -sf -H "Authorization: Bearer $API" -H 'content-type: application/json' \
  -d '{"kind":"interview","title":"bench","scheduled_start":"2030-01-01T09:30:00+08:00","scheduled_end":"2030-01-01T11:00:00+08:00"}' \
  "$URL/api/v1/events" | json id)
TOKEN=$(curl -sf -X POST -H "Authorization: Bearer $API" "$URL/api/v1/events/$EVENT/publish-token" | json token)
python3 "$ROOT/tests/peers/whip_publisher.py" "$URL/whip/$EVENT" "$TOKEN" 100000 "$CODEC" >"$WORK/publisher.log" 2>&1 &
PIDS+=($!)
sleep 4
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), codec $CODEC"
for n in $VIEWERS; do
  echo "## $n viewers"
  "$BIN/mediaload" --server "$URL" --event "$EVENT" --viewers "$n" --ramp "$RAMP" \
    --measure "$MEASURE" --server-pid "$SERVER"
  sleep 3
done
