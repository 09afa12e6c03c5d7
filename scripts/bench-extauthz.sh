#!/usr/bin/env bash
# jwtd's Envoy external authorizer (gRPC Authorization/Check) next to /auth over HTTP/1.1, in
# one run, all on 127.0.0.1, the same tokens and the same original request (GET /v1/orders/42):
#   - throughput and latency: wrk on /auth and jwtd-bench grpc-load on Check (CONNS connections
#     each, one request in flight per connection), alternating, medians of ROUNDS runs; cache on
#     (all hits after warm-up), without rules and with 200 [[rule]]s (scripts/bench-lib.sh);
#   - instructions per decision inside jwtd (callgrind, all threads, N requests on one
#     connection after a warm-up with the same tokens), /auth and Check from the same process;
#   - the peak RSS of each jwtd process.
# Usage: [IR_KEEP=dir] scripts/bench-extauthz.sh [SECONDS=5] [CONNS=32] [ROUNDS=3] [ALGS="HS256 RS256 ES256"] [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}; CONNS=${2:-32}; ROUNDS=${3:-3}; ALGS=${4:-HS256 RS256 ES256}; N=${5:-1000}
THREADS=2
. scripts/bench-lib.sh
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

export JWTD_BENCH_SECRET=bench-secret-0123456789abcdef0123456789
for alg in $ALGS; do
  $B mint $alg 1000 "https://bench-$alg" bench "$work/t_$alg.txt" "$work/jwks_$alg.json"
  head -n "$N" "$work/t_$alg.txt" > "$work/n_$alg.txt"
done
cache_configs 18097 "$ALGS"
for mode in on rules; do printf '[ext_authz]\nlisten = "127.0.0.1:18098"\n' >> "$work/$mode.toml"; done
$J config check "$work/rules.toml" >/dev/null

declare -A runs rss_of
rps_of() { echo "$1" | sed -E 's/.*rps=([0-9]+).*/\1/'; }
p99_of() { echo "$1" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/'; }
record() { runs["$1 rps"]="${runs["$1 rps"]:-} $(rps_of "$2")"; runs["$1 p99"]="${runs["$1 p99"]:-} $(p99_of "$2")"; echo "$2"; }
grpc() { # name addr tokens
  local r; r=$(timeout $((DUR + 15)) $B grpc-load "$2" "$3" "$CONNS" "$DUR")
  printf '%-34s %s\n' "$1" "$r"
}
for round in $(seq "$ROUNDS"); do
  for mode in on rules; do
    RUST_LOG=warn $J serve --config "$work/$mode.toml" 2>"$work/jwtd.log" & JP=$!; pids+=($JP)
    wait_port 18097; wait_port 18098
    for alg in $ALGS; do
      tokens="$work/t_$alg.txt"
      once http://127.0.0.1:18097/auth "$tokens"; once_grpc 127.0.0.1:18098 "$tokens"
      record "$alg $mode auth" "$(load "round $round: /auth $alg $mode" http://127.0.0.1:18097/auth "$tokens")"
      record "$alg $mode grpc" "$(grpc "round $round: Check $alg $mode" 127.0.0.1:18098 "$tokens")"
    done
    rss_of[$mode]=$(rss $JP)
    kill $JP; wait $JP 2>/dev/null || true
  done
done

declare -A ir
for mode in on rules; do
  RUST_LOG=warn cg "$work/ir_$mode" $J serve --config "$work/$mode.toml" & JP=$!; pids+=($JP)
  wait_long 18097; wait_long 18098
  for alg in $ALGS; do
    ir["$alg $mode auth"]=$(measure $JP "$work/ir_$mode" http://127.0.0.1:18097/auth "$work/n_$alg.txt" "$work/n_$alg.txt")
    ir["$alg $mode grpc"]=$(measure $JP "$work/ir_$mode" 127.0.0.1:18098 "$work/n_$alg.txt" "$work/n_$alg.txt" once_grpc)
  done
  kill $JP; wait $JP 2>/dev/null || true
done

# IR_KEEP=dir keeps the callgrind dumps there (for callgrind_annotate).
if [ -n "${IR_KEEP:-}" ]; then mkdir -p "$IR_KEEP" && cp "$work"/ir_* "$IR_KEEP"/; fi
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "Medians of $ROUNDS runs of ${DUR}s, $CONNS connections each (wrk -t$THREADS for /auth; jwtd-bench grpc-load for Check);"
echo "instructions per decision (callgrind Ir inside jwtd, $N requests on one connection, after warm-up)."
echo "Peak RSS of jwtd: no rules ${rss_of[on]}, 200 rules ${rss_of[rules]}."
echo "| alg | rules | /auth req/s | /auth p99 ms | Check req/s | Check p99 ms | Check/auth | /auth Ir | Check Ir |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for alg in $ALGS; do
  for mode in on rules; do
    a=$(echo "${runs["$alg $mode auth rps"]}" | median); ap=$(echo "${runs["$alg $mode auth p99"]}" | median)
    g=$(echo "${runs["$alg $mode grpc rps"]}" | median); gp=$(echo "${runs["$alg $mode grpc p99"]}" | median)
    awk -v al=$alg -v m=$([ $mode = on ] && echo none || echo 200) -v a=$a -v ap=$ap -v g=$g -v gp=$gp \
      -v ia="${ir["$alg $mode auth"]}" -v ig="${ir["$alg $mode grpc"]}" \
      'BEGIN { printf "| %s | %s | %.0f | %.2f | %.0f | %.2f | %.2fx | %d | %d |\n", al, m, a, ap, g, gp, g / a, ia, ig }'
  done
done
