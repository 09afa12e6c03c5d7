#!/usr/bin/env bash
# Instructions per request of jwtd's proxy mode (callgrind, all threads of jwtd; the upstream,
# the hyper ceiling server, and the Python client outside the count), which do not drift with
# the machine's load the way requests per second do. N RS256 requests on one keep-alive
# connection, GET /v1/orders/42 as in scripts/bench-proxy.sh:
#   - proxy, cache on: the same N tokens sent once before counting (every counted one a hit);
#   - proxy, cache off: N distinct tokens (every one verified);
#   - /auth, cache on, hits, from the same jwtd process (what the proxy adds to a decision);
# next to the hyper ceiling server itself sent the same requests (the HTTP floor).
# BASE=path/to/another/jwtd measures that binary too, in the same run (before/after).
# Usage: [IR_KEEP=dir] [BASE=jwtd] scripts/bench-proxy-ir.sh [N=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}; DUR=1; THREADS=1; CONNS=1
. scripts/bench-lib.sh
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

UP=18130 CEIL=18131 API=18132 PX=18133
ISS=https://bench-RS256
$B mint RS256 $((2 * N + 200)) "$ISS" bench "$work/all.txt" "$work/jwks.json"
head -n "$N" "$work/all.txt" > "$work/hit.txt"
sed -n "$((N + 1)),$((2 * N))p" "$work/all.txt" > "$work/distinct.txt"
tail -n 200 "$work/all.txt" > "$work/fill.txt"
for m in on off; do
  {
    printf 'listen = "127.0.0.1:%s"\n' $API
    printf '[[issuer]]\nname = "bench"\nissuer = "%s"\njwks_file = "%s"\nalgorithms = ["RS256"]\naudiences = ["bench"]\n' "$ISS" "$work/jwks.json"
    printf '[proxy]\nlisten = "127.0.0.1:%s"\n[upstream]\nurl = "http://127.0.0.1:%s"\n' $PX $UP
    [ $m = off ] && printf '[cache]\nenabled = false\n'
  } > "$work/$m.toml"
  $J config check "$work/$m.toml" >/dev/null
done

declare -A ir
$B http-ceiling 127.0.0.1:$UP & pids+=($!); wait_port $UP
cg "$work/ceiling" $B http-ceiling 127.0.0.1:$CEIL & CP=$!; pids+=($CP); wait_long $CEIL
ir[ceiling]=$(measure $CP "$work/ceiling" http://127.0.0.1:$CEIL/v1/orders/42 "$work/distinct.txt" "$work/fill.txt")
kill $CP; wait $CP 2>/dev/null || true
bins="new"; [ -n "${BASE:-}" ] && bins="base new"
for bin in $bins; do
  exe=$J; [ $bin = base ] && exe=$BASE
  for m in on off; do
    RUST_LOG=warn cg "$work/${bin}_$m" $exe serve --config "$work/$m.toml" & JP=$!; pids+=($JP)
    wait_long $API; wait_long $PX
    if [ $m = on ]; then
      ir["$bin proxy on"]=$(measure $JP "$work/${bin}_$m" http://127.0.0.1:$PX/v1/orders/42 "$work/hit.txt" "$work/hit.txt")
      ir["$bin auth on"]=$(measure $JP "$work/${bin}_$m" http://127.0.0.1:$API/auth "$work/hit.txt" "$work/hit.txt")
    else
      ir["$bin proxy off"]=$(measure $JP "$work/${bin}_$m" http://127.0.0.1:$PX/v1/orders/42 "$work/distinct.txt" "$work/fill.txt")
    fi
    kill $JP; wait $JP 2>/dev/null || true
  done
done
# IR_KEEP=dir keeps the callgrind dumps there (for callgrind_annotate --inclusive=yes).
if [ -n "${IR_KEEP:-}" ]; then mkdir -p "$IR_KEEP" && cp "$work"/ceiling* "$work"/*_on* "$work"/*_off* "$IR_KEEP"/; fi
echo
echo "Instructions per request (callgrind Ir, all threads of the server; $N requests, one keep-alive connection, RS256)"
echo "| binary | hyper ceiling | proxy, cache on (hits) | proxy, cache off | /auth, cache on (hits) | proxy hit minus /auth hit |"
echo "|---|---:|---:|---:|---:|---:|"
for bin in $bins; do
  awk -v b=$bin -v c="${ir[ceiling]}" -v on="${ir["$bin proxy on"]}" -v off="${ir["$bin proxy off"]}" -v a="${ir["$bin auth on"]}" \
    'BEGIN { printf "| %s | %d | %d | %d | %d | %d |\n", b, c, on, off, a, on - a }'
done
