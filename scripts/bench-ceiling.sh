#!/usr/bin/env bash
# How close jwtd /auth comes to the HTTP ceiling of this machine, in one run, alternating so
# that drift and noise hit every row alike; medians of ROUNDS runs, all on 127.0.0.1; ratios
# are taken run by run to the ceiling measured just before (the machine's speed drifts):
#   - the ceiling: a minimal hyper server answering 200 to everything, sent the same requests;
#   - jwtd /auth, 1000 rotating tokens per algorithm, cache on (all hits after warm-up);
#   - the same with 200 [[rule]]s (scripts/bench-lib.sh: the request named by X-Original-URI);
#   - 20,000 distinct tokens (DISTINCT) with a 100-entry cache (every request a miss plus an
#     insert and an eviction; the cache's counters are printed to show it), and with the
#     cache off.
# Usage: scripts/bench-ceiling.sh [SECONDS=5] [THREADS=2] [CONNS=32] [ROUNDS=5] [ALGS="HS256 RS256 ES256"]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}; THREADS=${2:-2}; CONNS=${3:-32}; ROUNDS=${4:-5}; ALGS=${5:-HS256 RS256 ES256}
DISTINCT=${DISTINCT:-20000}
. scripts/bench-lib.sh

export JWTD_BENCH_SECRET=bench-secret-0123456789abcdef0123456789
for alg in $ALGS; do
  # DISTINCT tokens for the all-misses and cache-off runs, the first 1000 of them for the hits.
  $B mint $alg "$DISTINCT" "https://bench-$alg" bench "$work/d_$alg.txt" "$work/jwks_$alg.json"
  head -n 1000 "$work/d_$alg.txt" > "$work/on_$alg.txt"; cp "$work/on_$alg.txt" "$work/rules_$alg.txt"
  cp "$work/d_$alg.txt" "$work/miss_$alg.txt"; cp "$work/d_$alg.txt" "$work/off_$alg.txt"
done
cache_configs 18091 "$ALGS"

declare -A runs
rps_of() { echo "$1" | sed -E 's/.*rps=([0-9]+).*/\1/'; }
record() { runs["$1"]="${runs["$1"]:-} $(rps_of "$2")"; echo "$2"; }
# The ceiling stays up (idle between its runs) and gets the very same requests as jwtd, the
# same Authorization header included, right before each jwtd run: on a shared machine the speed
# drifts, so each jwtd run is divided by the ceiling run next to it, and the medians of those
# ratios are reported.
$B http-ceiling 127.0.0.1:18099 & CP=$!; pids+=($CP); wait_port 18099
for round in $(seq "$ROUNDS"); do
  for mode in on rules miss off; do
    RUST_LOG=warn $J serve --config "$work/$mode.toml" 2>"$work/jwtd.log" & JP=$!; pids+=($JP); wait_port 18091
    for alg in $ALGS; do
      tokens="$work/${mode}_$alg.txt"
      line=$(load "round $round: hyper ceiling, $alg tokens" http://127.0.0.1:18099/auth "$tokens"); record "$alg ceiling" "$line"
      c=$(rps_of "$line")
      line=$(load "round $round: jwtd /auth $alg cache=$mode" http://127.0.0.1:18091/auth "$tokens")
      record "$alg $mode" "$line"
      runs["$alg $mode ratio"]="${runs["$alg $mode ratio"]:-} $(awk -v a="$(rps_of "$line")" -v c="$c" 'BEGIN { printf "%.4f", a / c }')"
    done
    if [ $mode = miss ]; then
      # All misses indeed: the cache's own counters, from /metrics.
      curl -fsS http://127.0.0.1:18091/metrics | grep -E '^jwtd_token_cache_(hits|misses)_total' | tr '\n' ' '; echo
    fi
    kill $JP; wait $JP 2>/dev/null || true
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "Medians of $ROUNDS runs of ${DUR}s (wrk -t$THREADS -c$CONNS). \"of ceiling\": the median of each run's ratio"
echo "to the hyper ceiling run just before it with the same tokens."
echo "| alg | hyper ceiling | cache on, all hits | of ceiling | hits, 200 rules | of ceiling | $DISTINCT tokens, 100-entry cache: misses | of ceiling | cache off | of ceiling | misses vs off |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for alg in $ALGS; do
  c=$(echo "${runs["$alg ceiling"]}" | median)
  on=$(echo "${runs["$alg on"]}" | median); miss=$(echo "${runs["$alg miss"]}" | median); off=$(echo "${runs["$alg off"]}" | median)
  rl=$(echo "${runs["$alg rules"]}" | median); rrl=$(echo "${runs["$alg rules ratio"]}" | median)
  ron=$(echo "${runs["$alg on ratio"]}" | median); rmiss=$(echo "${runs["$alg miss ratio"]}" | median); roff=$(echo "${runs["$alg off ratio"]}" | median)
  awk -v a=$alg -v c=$c -v on=$on -v rl=$rl -v rrl=$rrl -v m=$miss -v off=$off -v ron=$ron -v rm=$rmiss -v roff=$roff 'BEGIN { printf "| %s | %.0f | %.0f | %.1f%% | %.0f | %.1f%% | %.0f | %.1f%% | %.0f | %.1f%% | %+.1f%% |\n", a, c, on, ron * 100, rl, rrl * 100, m, rm * 100, off, roff * 100, (rm / roff - 1) * 100 }'
done
