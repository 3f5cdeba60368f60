#!/usr/bin/env bash
# The SFU benchmark (docs/benchmarks.md, "Media (SFU)", GitHub issue 5): one Rust WHIP
# publisher sending a real 1280x720 VP8 clip at ~2 Mb/s (~230 packets/s, plus Opus
# silence at 50 packets/s) and N webrtc-rs WHEP viewers, all `tools/mediaload`, on
# loopback against a release `gongkai serve` (recording off). Each viewer count is a
# fresh server, event and publisher, so memory per viewer is not masked by a previous
# run's freed heap. Per run: the viewers' first-frame times, loss, frames/s, the server's
# CPU per forwarded packet and memory per viewer, the load tool's own CPU, and a summary
# line; at the end, the most viewers with < 1% loss.
#
#   tools/mediaload/bench.sh                        # 100 250 500 750 1000 viewers
#   VIEWERS="50 100" MEASURE=5 tools/mediaload/bench.sh
#   STEP=100 START=200 MAX=2000 tools/mediaload/bench.sh   # 200, 300, ... until a run fails
#
# Knobs: VIEWERS (list, ascending), STEP/START/MAX (search instead of a list), RAMP
# (viewers/s, default 50), MEASURE (steady window, s, default 10), AUDIO=0 (video only),
# KEEP_GOING=1 (run the whole list even after a failing count), CLIP (a VP8 IVF file;
# default target-load/mediaload-720p-2m.ivf, made once with ffmpeg, installed with apt-get
# if missing), NO_BUILD=1, CARGO_TARGET_DIR (default target-load). A run passes when
# every viewer connected and received media and total loss in the window was < 1%.
#
# The viewers run on the same cores as the server (SRTP decryption of every packet for
# every viewer), so at high counts the load tool competes with the server: its own CPU
# is printed ("load tool") so the figures can be judged.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-load}
BIN=$CARGO_TARGET_DIR/release
VIEWERS=${VIEWERS:-"100 250 500 750 1000"}
RAMP=${RAMP:-50}
MEASURE=${MEASURE:-10}
AUDIO=${AUDIO:-1}
CLIP=${CLIP:-$ROOT/target-load/mediaload-720p-2m.ivf}
BASE_PORT=18431

if [[ -z "${NO_BUILD:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p web --bin gongkai && cargo build --release -p mediaload)
fi

if [[ ! -s "$CLIP" ]]; then
  if ! command -v ffmpeg >/dev/null; then
    echo "installing ffmpeg (Debian) for the test clip" >&2
    SUDO=; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg </dev/null ||
      { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg </dev/null; }
  fi
  mkdir -p "$(dirname "$CLIP")"
  echo "making $CLIP (10 s of 1280x720 testsrc2 at 30 fps, VP8 CBR, keyframe every 2 s)" >&2
  # CBR (min = max = target). libvpx in realtime mode lands ~7% under its target, so
  # 2.2 Mb/s asked gives ~2 Mb/s, ~230 packets/s of 1200 bytes; cpu-used 8 keeps it quick.
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 \
    -c:v libvpx -b:v 2200k -minrate 2200k -maxrate 2200k -g 60 -deadline realtime -cpu-used 8 \
    "$CLIP.tmp.ivf"
  mv "$CLIP.tmp.ivf" "$CLIP"
fi

# Each viewer is a UDP socket plus tasks, in the tool and in the server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/mediaload.XXXXXX)
PIDS=()
stop() {
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}
cleanup() { stop "${PIDS[@]}"; }
trap cleanup EXIT
json() { python3 -c "import sys,json;print(json.load(sys.stdin)[\"$1\"])"; }

# One viewer count against a fresh server and publisher; prints the viewers' report and
# the publisher's last progress line, and returns 0 when the summary says result=ok.
run_one() {
  local n=$1 port=$2
  local dir=$WORK/$n
  mkdir -p "$dir"
  cat >"$dir/gongkai.toml" <<T
listen = "127.0.0.1:$port"
data_dir = "$dir/data"
log_level = "warn"
[media]
bind_ip = "127.0.0.1"
recording = false
# Every viewer comes from 127.0.0.1.
[limits]
whep_sessions_per_ip = 1000000
T
  "$BIN/gongkai" admin create-user --config "$dir/gongkai.toml" --username bench --role admin \
    <<<"correct horse battery staple" >/dev/null
  local api
  api=$("$BIN/gongkai" admin create-token --config "$dir/gongkai.toml" --username bench --name bench | tail -1)
  touch "$dir/server.out"
  "$BIN/gongkai" serve --config "$dir/gongkai.toml" >"$dir/server.out" 2>"$dir/server.log" &
  local server=$!
  PIDS+=("$server")
  for _ in $(seq 300); do grep -q "gongkai listening" "$dir/server.out" && break; sleep 0.1; done
  local url=http://127.0.0.1:$port event token
  event=$(curl -sf -H "Authorization: Bearer $api" -H 'content-type: application/json' \
    -d '{"kind":"interview","title":"bench","scheduled_start":"2030-01-01T09:30:00+08:00","scheduled_end":"2030-01-01T11:00:00+08:00"}' \
    "$url/api/v1/events" | json id)
  token=$(curl -sf -X POST -H "Authorization: Bearer $api" "$url/api/v1/events/$event/publish-token" | json token)
  local audio=()
  [[ "$AUDIO" == 1 ]] || audio=(--no-audio)
  MEDIALOAD_PUBLISH_TOKEN=$token "$BIN/mediaload" publish --server "$url" --event "$event" \
    --clip "$CLIP" --report 2 "${audio[@]}" >"$dir/publisher.log" 2>&1 &
  local publisher=$!
  PIDS+=("$publisher")
  for _ in $(seq 150); do grep -q "^published" "$dir/publisher.log" && break; sleep 0.1; done
  if ! grep -q "^published" "$dir/publisher.log"; then
    echo "publisher did not publish:" >&2
    cat "$dir/publisher.log" >&2
    stop "$publisher" "$server"
    PIDS=()
    return 1
  fi
  sleep 3
  echo "## $n viewers"
  grep "^clip" "$dir/publisher.log" | head -1
  local status=0
  "$BIN/mediaload" view --server "$url" --event "$event" --viewers "$n" --ramp "$RAMP" \
    --measure "$MEASURE" --server-pid "$server" --csv "$dir/viewers.csv" | tee "$dir/view.out" || status=$?
  grep "^sent" "$dir/publisher.log" | tail -1 || true
  stop "$publisher" "$server"
  PIDS=()
  sleep 3
  [[ $status -eq 0 ]] && grep -q "result=ok" "$dir/view.out"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), clip $CLIP, audio $AUDIO, work dir $WORK"
if [[ -n "${STEP:-}" ]]; then
  COUNTS=$(seq "${START:-$STEP}" "$STEP" "${MAX:-3000}")
  KEEP_GOING=
else
  COUNTS=$VIEWERS
fi
best=0
failed=
i=0
for n in $COUNTS; do
  if run_one "$n" $((BASE_PORT + i)); then
    best=$n
  else
    failed=$n
    if [[ -z "${KEEP_GOING:-}" ]]; then
      echo "($n viewers did not pass; stopping)"
      break
    fi
  fi
  i=$((i + 1))
done
echo "# summaries"
for f in "$WORK"/*/view.out; do grep "^summary" "$f" || true; done | sort -t= -k2 -n
[[ -n "$failed" ]] || echo "(every count passed: the limit is above the largest one tried)"
echo "most viewers with <1% loss: $best"
