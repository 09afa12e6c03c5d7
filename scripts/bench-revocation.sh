#!/usr/bin/env bash
# HTTP load benchmark of the revocation check: jwtd /auth (HS256 and ES256, 1000 distinct tokens,
# cache on and off) with no [revocation] section next to the same with 100,000 revocation
# entries loaded (90% jti, 9% sub, 1% kid, none covering the tokens), alternating, in one run,
# all on 127.0.0.1 and bounded in time. Prints one row per run and the cost in percent.
# Usage: scripts/bench-revocation.sh [SECONDS=10] [THREADS=2] [CONNS=32] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}; THREADS=${2:-2}; CONNS=${3:-32}; ROUNDS=${4:-5}
. scripts/bench-lib.sh

export JWTD_BENCH_SECRET=bench-secret-0123456789abcdef0123456789 JWTD_BENCH_ADMIN=bench-admin
base="$work/base.toml"; echo 'listen = "127.0.0.1:18090"' > "$base"
for alg in HS256 ES256; do
  $B mint $alg 1000 "https://bench-$alg" bench "$work/t_$alg.txt" "$work/jwks_$alg.json"
  if [ $alg = HS256 ]; then src='secret_env = "JWTD_BENCH_SECRET"'; else src="jwks_file = \"$work/jwks_$alg.json\""; fi
  printf '[[issuer]]\nname = "%s"\nissuer = "https://bench-%s"\n%s\nalgorithms = ["%s"]\naudiences = ["bench"]\n' $alg $alg "$src" $alg >> "$base"
done
mkdir -p "$work/data"
rev="$work/rev.toml"
{ cat "$base"; printf '[admin]\napi_key_env = "JWTD_BENCH_ADMIN"\n[revocation]\ndata_dir = "%s"\n' "$work/data"; } > "$rev"
for c in base rev; do { cat "$work/$c.toml"; printf '[cache]\nenabled = false\n'; } > "$work/$c-nocache.toml"; done

# Create the store (migrations), then load 100,000 entries straight into it.
RUST_LOG=warn $J serve --config "$rev" 2>/dev/null & JP=$!; pids+=($JP); wait_port 18090; kill $JP; wait $JP 2>/dev/null || true
python3 - "$work/data/keys.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1]); now = int(time.time()); rows = []
for i in range(100_000):
    kind, value = ("kid", f"revoked-key-{i}") if i % 100 == 0 else \
                  ("sub", f"revoked-user-{i:020}") if i % 100 < 10 else ("jti", f"{i:032x}")
    rows.append((kind, value, None, now if kind == "sub" else None, now + 86_400, now, None))
db.executemany("INSERT INTO revocations (kind, value, iss, issued_before, expires_at, created_at, note) VALUES (?,?,?,?,?,?,?)", rows)
db.commit(); print("loaded", db.execute("SELECT count(*) FROM revocations").fetchone()[0], "revocations")
PY

declare -A sum
for round in $(seq "$ROUNDS"); do
  for cache in on off; do
    for which in base rev; do
      cfg="$work/$which.toml"; [ $cache = off ] && cfg="$work/$which-nocache.toml"
      RUST_LOG=warn $J serve --config "$cfg" 2>"$work/jwtd.log" & JP=$!; pids+=($JP); wait_port 18090
      if [ $which = rev ]; then
        n=$(curl -s -H "Authorization: Bearer $JWTD_BENCH_ADMIN" http://127.0.0.1:18090/v1/revocations | sed -E 's/.*"entries":([0-9]+).*/\1/')
        [ "$n" = 100000 ] || { echo "expected 100000 entries, jwtd holds $n" >&2; exit 1; }
      fi
      for alg in HS256 ES256; do
        label="$alg cache=$cache $([ $which = rev ] && echo '100k revocations' || echo 'no revocation')"
        row=$(load "jwtd /auth $label" http://127.0.0.1:18090/auth "$work/t_$alg.txt")
        echo "round $round: $row"
        rps=$(echo "$row" | sed -E 's/.*rps=([0-9]+).*/\1/')
        sum["$alg $cache $which"]="${sum["$alg $cache $which"]:-} $rps"
      done
      kill $JP; wait $JP 2>/dev/null || true
    done
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "| alg | cache | req/s, no revocation (median of $ROUNDS) | req/s, 100k revocations | cost |"
echo "|---|---|---:|---:|---:|"
for alg in HS256 ES256; do for cache in on off; do
  a=$(echo "${sum["$alg $cache base"]}" | median); b=$(echo "${sum["$alg $cache rev"]}" | median)
  awk -v a="$a" -v b="$b" -v alg=$alg -v c=$cache 'BEGIN { printf "| %s | %s | %.0f | %.0f | %+.1f%% |\n", alg, c, a, b, (b / a - 1) * 100 }'
done; done
