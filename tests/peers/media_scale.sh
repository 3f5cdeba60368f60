#!/bin/bash
# Rough SFU scale check (not the Rust load tool the issue asks for): one aiortc WHIP
# publisher (320x240 VP8 ~30 fps + Opus) and N aiortc WHEP viewers on loopback for ~25 s.
# Prints server CPU ticks over 10 s (100 ticks/s = one core), packets forwarded in those
# 10 s, RSS, dropped packets, decoded frames per viewer and first-frame times.
# Usage: BIN=target/release/gongkai tests/peers/media_scale.sh N
set -u
N=$1
BIN=${BIN:-target/release/gongkai}
D=$(mktemp -d)
PORT=18431
cat > $D/g.toml <<T
listen = "127.0.0.1:$PORT"
data_dir = "$D"
log_level = "warn"
[media]
bind_ip = "127.0.0.1"
T
$BIN admin create-user --config $D/g.toml --username admin --role admin <<< "correct horse battery" >/dev/null 2>&1
API=$($BIN admin create-token --config $D/g.toml --username admin --name bench 2>/dev/null | tail -1)
$BIN serve --config $D/g.toml > $D/out.log 2>&1 &
SPID=$!
sleep 2
EV=$(curl -s -H "Authorization: Bearer $API" -H 'content-type: application/json' -d '{"kind":"interview","title":"bench","scheduled_start":"2030-01-01T09:30:00+08:00","scheduled_end":"2030-01-01T11:00:00+08:00"}' http://127.0.0.1:$PORT/api/v1/events | python3 -c 'import sys,json;print(json.load(sys.stdin)["id"])')
TOK=$(curl -s -X POST -H "Authorization: Bearer $API" http://127.0.0.1:$PORT/api/v1/events/$EV/publish-token | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
python3 "$(dirname "$0")"/whip_publisher.py http://127.0.0.1:$PORT/whip/$EV $TOK 40 > $D/pub.log 2>/dev/null &
PPID2=$!
sleep 3
for i in $(seq 1 $N); do python3 "$(dirname "$0")"/whep_viewer.py http://127.0.0.1:$PORT/whep/$EV 25 > $D/v$i.log 2>/dev/null & done
sleep 8
T0=$(awk '{print $14+$15}' /proc/$SPID/stat); F0=$(curl -s http://127.0.0.1:$PORT/metrics | grep '^gongkai_media_packets_forwarded_total{' | awk '{print $2}')
sleep 10
T1=$(awk '{print $14+$15}' /proc/$SPID/stat); F1=$(curl -s http://127.0.0.1:$PORT/metrics | grep '^gongkai_media_packets_forwarded_total{' | awk '{print $2}')
RSS=$(grep VmRSS /proc/$SPID/status)
DROP=$(curl -s http://127.0.0.1:$PORT/metrics | grep '^gongkai_media_packets_dropped_total{')
wait $(jobs -p | grep -v $SPID | grep -v $PPID2) 2>/dev/null
sleep 8
echo "viewers=$N cpu_ticks_10s=$((T1-T0)) (100/s = one core) forwarded_10s=$(python3 -c "print(int($F1-$F0))") $RSS $DROP"
python3 - $D $N <<'P'
import json,sys,glob
d,n=sys.argv[1],int(sys.argv[2])
fr=[];ff=[]
for f in glob.glob(d+"/v*.log"):
    lines=[json.loads(l) for l in open(f) if l.strip()]
    if lines: fr.append(lines[-1].get("video_frames",0)); ff.append(lines[-1].get("first_frame_s"))
ff=sorted(x for x in ff if x is not None)
print("video_frames min/max", min(fr) if fr else None, max(fr) if fr else None, "first_frame p50", ff[len(ff)//2] if ff else None, "max", ff[-1] if ff else None, "viewers_reporting", len(fr))
P
kill $SPID $PPID2 2>/dev/null
wait $SPID 2>/dev/null
rm -rf $D
