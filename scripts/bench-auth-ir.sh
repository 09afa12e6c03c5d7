#!/usr/bin/env bash
# Instructions per /auth request inside jwtd (callgrind, all threads), which do not drift with
# the machine's load the way requests per second do: for each algorithm, N requests on one
# keep-alive connection (a Python client, outside the count) with
#   - hits: cache on, the same N tokens sent once before counting (every counted one a hit);
#   - misses: N distinct tokens never seen, 100-entry cache (a miss, an insert, an eviction);
#   - off: the same distinct tokens, cache off;
#   - rules: as hits, with 200 [[rule]]s (scripts/bench-lib.sh), the request named by
#     X-Original-URI/-Method as nginx sends them (every request carries these headers);
# next to a minimal hyper server sent the same requests (the HTTP floor). Counting starts after
# start-up and warm-up (callgrind_control -z) and ends with a dump (-d).
# Usage: [IR_KEEP=dir] scripts/bench-auth-ir.sh [N=1000] [ALGS="HS256 RS256 ES256"]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}; ALGS=${2:-HS256 RS256 ES256}
. scripts/bench-lib.sh
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

export JWTD_BENCH_SECRET=bench-secret-0123456789abcdef0123456789
for alg in $ALGS; do
  $B mint $alg $((2 * N + 200)) "https://bench-$alg" bench "$work/all_$alg.txt" "$work/jwks_$alg.json"
  head -n "$N" "$work/all_$alg.txt" > "$work/hit_$alg.txt"
  sed -n "$((N + 1)),$((2 * N))p" "$work/all_$alg.txt" > "$work/distinct_$alg.txt"
  tail -n 200 "$work/all_$alg.txt" > "$work/fill_$alg.txt"
done
cache_configs 18093 "$ALGS"

declare -A ir
cg "$work/ceiling" $B http-ceiling 127.0.0.1:18094 & CP=$!; pids+=($CP); wait_long 18094
for alg in $ALGS; do
  ir["$alg ceiling"]=$(measure $CP "$work/ceiling" http://127.0.0.1:18094/auth "$work/distinct_$alg.txt" "$work/fill_$alg.txt")
done
kill $CP; wait $CP 2>/dev/null || true
for mode in on rules miss off; do
  RUST_LOG=warn cg "$work/$mode" $J serve --config "$work/$mode.toml" & JP=$!; pids+=($JP); wait_long 18093
  for alg in $ALGS; do
    if [ $mode = on ] || [ $mode = rules ]; then
      ir["$alg $mode"]=$(measure $JP "$work/$mode" http://127.0.0.1:18093/auth "$work/hit_$alg.txt" "$work/hit_$alg.txt")
    else
      ir["$alg $mode"]=$(measure $JP "$work/$mode" http://127.0.0.1:18093/auth "$work/distinct_$alg.txt" "$work/fill_$alg.txt")
    fi
  done
  if [ $mode = on ] || [ $mode = miss ]; then
    # Hits and misses indeed: the cache's own counters (warm-up included).
    echo "cache=$mode: $(curl -fsS http://127.0.0.1:18093/metrics | grep -E '^jwtd_token_cache_(hits|misses)_total' | tr '\n' ' ')"
  fi
  if [ $mode = rules ]; then
    # Decided by the one rule that takes the request, among 200.
    echo "rules: $(curl -fsS http://127.0.0.1:18093/metrics | grep -E '^jwtd_decisions_total' | tr '\n' ' ')"
  fi
  kill $JP; wait $JP 2>/dev/null || true
done
# IR_KEEP=dir keeps the callgrind dumps there (for callgrind_annotate).
if [ -n "${IR_KEEP:-}" ]; then mkdir -p "$IR_KEEP" && cp "$work"/ceiling* "$work"/on* "$work"/rules* "$work"/miss* "$work"/off* "$IR_KEEP"/; fi
echo
echo "Instructions per /auth request (callgrind Ir, all threads; $N requests, one keep-alive connection)"
echo "| alg | hyper ceiling | cache on, all hits | hits, 200 rules | rules vs none | 100-entry cache, all misses | cache off | misses vs off |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for alg in $ALGS; do
  awk -v a=$alg -v c="${ir["$alg ceiling"]}" -v on="${ir["$alg on"]}" -v r="${ir["$alg rules"]}" -v m="${ir["$alg miss"]}" -v off="${ir["$alg off"]}" \
    'BEGIN { printf "| %s | %d | %d | %d | %+.2f%% | %d | %d | %+.2f%% |\n", a, c, on, r, (r / on - 1) * 100, m, off, (m / off - 1) * 100 }'
done
