#!/usr/bin/env bash
# End-to-end draw timings with the release binary: `gongkai draw simulate` (phase timings of
# the organiser's side) and `gongkai draw verify --timings`, each under /usr/bin/time -v for
# wall time and peak memory. Figures go to docs/benchmarks.md (## Draw engine).
#
#   CARGO_TARGET_DIR=target-lottery cargo build --release -p web --bin gongkai
#   GONGKAI_BIN=target-lottery/release/gongkai lottery/benches/cli_timings.sh [SIZES...]
set -euo pipefail
bin=${GONGKAI_BIN:-target/release/gongkai}
sizes=("${@:-10000 100000 1000000}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for n in ${sizes[@]}; do
    kgs=$(( n / 500 )); (( kgs < 2 )) && kgs=2
    echo "== $n applications, $kgs kindergartens, 3 choices, 5% twins/triplets"
    /usr/bin/time -v "$bin" draw simulate --applications "$n" --kindergartens "$kgs" --choices 3 \
        --multiples-per-mille 50 --out "$work/$n" --seed "bench-$n" 2> "$work/sim.time"
    grep -E "Elapsed|Maximum resident" "$work/sim.time"
    ls -l "$work/$n/signed.json" | awk '{print "signed.json bytes:", $5}'
    /usr/bin/time -v "$bin" draw verify "$work/$n/signed.json" --timings > "$work/verify.out" 2> "$work/verify.err"
    head -1 "$work/verify.out"
    grep -vE "^\s+(Command|User|System|Percent|Average|Major|Minor|Volun|Invol|Swaps|File|Socket|Signals|Page|Exit)" "$work/verify.err" \
        | grep -vE "^\s*$"
done
