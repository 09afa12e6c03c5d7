#!/usr/bin/env bash
# How close jwtd /auth comes to the HTTP ceiling of this machine, in one run, alternating so
# that drift and noise hit every row alike; medians of ROUNDS runs, all on 127.0.0.1:
#   - the ceiling: a minimal hyper server answering 200 to everything;
#   - jwtd /auth, 1000 rotating tokens per algorithm, cache on (all hits after warm-up);
#   - the same with the cache off, and with a 100-entry cache that the 1000 tokens keep
#     missing (every request a miss plus an insert and an eviction).
# Usage: scripts/bench-ceiling.sh [SECONDS=5] [THREADS=2] [CONNS=32] [ROUNDS=5] [ALGS="HS256 RS256 ES256"]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}; THREADS=${2:-2}; CONNS=${3:-32}; ROUNDS=${4:-5}; ALGS=${5:-HS256 RS256 ES256}
. scripts/bench-lib.sh

export JWTD_BENCH_SECRET=bench-secret-0123456789abcdef0123456789
cfg="$work/on.toml"; echo 'listen = "127.0.0.1:18091"' > "$cfg"
for alg in $ALGS; do
  $B mint $alg 1000 "https://bench-$alg" bench "$work/t_$alg.txt" "$work/jwks_$alg.json"
  if [ $alg = HS256 ]; then src='secret_env = "JWTD_BENCH_SECRET"'; else src="jwks_file = \"$work/jwks_$alg.json\""; fi
  printf '[[issuer]]\nname = "%s"\nissuer = "https://bench-%s"\n%s\nalgorithms = ["%s"]\naudiences = ["bench"]\n' $alg $alg "$src" $alg >> "$cfg"
done
{ cat "$cfg"; printf '[cache]\nenabled = false\n'; } > "$work/off.toml"
{ cat "$cfg"; printf '[cache]\nmax_entries = 100\n'; } > "$work/miss.toml"
echo x > "$work/x.txt"

declare -A runs
record() { local rps; rps=$(echo "$2" | sed -E 's/.*rps=([0-9]+).*/\1/'); runs["$1"]="${runs["$1"]:-} $rps"; echo "$2"; }
for round in $(seq "$ROUNDS"); do
  $B http-ceiling 127.0.0.1:18099 & CP=$!; pids+=($CP); wait_port 18099
  record ceiling "$(load "round $round: hyper ceiling" http://127.0.0.1:18099/ "$work/x.txt")"
  kill $CP; wait $CP 2>/dev/null || true
  for mode in on miss off; do
    RUST_LOG=warn $J serve --config "$work/$mode.toml" 2>"$work/jwtd.log" & JP=$!; pids+=($JP); wait_port 18091
    for alg in $ALGS; do
      record "$alg $mode" "$(load "round $round: jwtd /auth $alg cache=$mode" http://127.0.0.1:18091/auth "$work/t_$alg.txt")"
    done
    kill $JP; wait $JP 2>/dev/null || true
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
c=$(echo "${runs[ceiling]}" | median)
echo
echo "Medians of $ROUNDS runs of ${DUR}s (wrk -t$THREADS -c$CONNS); hyper ceiling: $c req/s"
echo "| alg | cache on, all hits | of ceiling | 100-entry cache, all misses | cache off | misses vs off |"
echo "|---|---:|---:|---:|---:|---:|"
for alg in $ALGS; do
  on=$(echo "${runs["$alg on"]}" | median); miss=$(echo "${runs["$alg miss"]}" | median); off=$(echo "${runs["$alg off"]}" | median)
  awk -v a=$alg -v c=$c -v on=$on -v m=$miss -v off=$off 'BEGIN { printf "| %s | %.0f | %.1f%% | %.0f | %.0f | %+.1f%% |\n", a, on, on / c * 100, m, off, (m / off - 1) * 100 }'
done
