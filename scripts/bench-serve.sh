#!/usr/bin/env bash
# HTTP load benchmark of `jwtd serve` /auth, all on 127.0.0.1, bounded in time, in one run:
#   - the HTTP ceiling: a minimal hyper server that answers 200;
#   - jwtd /auth with 1000 distinct tokens per algorithm (HS256, RS256, ES256, EdDSA);
#   - with PEERS_DIR (default ../shared/peers) and node present: the shared mock IdP and the
#     Express+jsonwebtoken+jwks-rsa and node jose peers (copied to a temp dir and npm-installed
#     there), against jwtd configured by discovery of the same mock IdP, same RS256/ES256 tokens.
# Prints one row per run: req/s, p50, p99, non-2xx, and jwtd's peak RSS.
# Usage: scripts/bench-serve.sh [SECONDS=10] [THREADS=2] [CONNS=32] [PEERS_DIR=../shared/peers]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-10}; THREADS=${2:-2}; CONNS=${3:-32}; PEERS=${4:-../shared/peers}
. scripts/bench-lib.sh

# The ceiling.
$B http-ceiling 127.0.0.1:18099 & pids+=($!); wait_port 18099
echo -n "" > "$work/empty.txt"; echo x > "$work/empty.txt"
load "hyper ceiling (200, no work)" http://127.0.0.1:18099/ "$work/empty.txt"
kill "${pids[-1]}"

# jwtd with local keys, one issuer per algorithm.
export JWTD_BENCH_SECRET=bench-secret-0123456789abcdef0123456789
{ echo 'listen = "127.0.0.1:18080"'; } > "$work/jwtd.toml"
for alg in HS256 RS256 ES256 EdDSA; do
  $B mint $alg 1000 "https://bench-$alg" bench "$work/t_$alg.txt" "$work/jwks_$alg.json"
  if [ $alg = HS256 ]; then src='secret_env = "JWTD_BENCH_SECRET"'; else src="jwks_file = \"$work/jwks_$alg.json\""; fi
  printf '[[issuer]]\nname = "%s"\nissuer = "https://bench-%s"\n%s\nalgorithms = ["%s"]\naudiences = ["bench"]\n' $alg $alg "$src" $alg >> "$work/jwtd.toml"
done
for cache in on off; do
  cfg="$work/jwtd.toml"
  if [ $cache = off ]; then cfg="$work/jwtd-nocache.toml"; { cat "$work/jwtd.toml"; echo '[cache]'; echo 'enabled = false'; } > "$cfg"; fi
  RUST_LOG=warn $J serve --config "$cfg" 2>"$work/jwtd.log" & JP=$!; pids+=($JP); wait_port 18080
  for alg in HS256 RS256 ES256 EdDSA; do load "jwtd /auth $alg cache=$cache" http://127.0.0.1:18080/auth "$work/t_$alg.txt"; done
  echo "jwtd peak RSS (cache=$cache): $(rss $JP)"
  kill $JP; wait $JP 2>/dev/null || true
done

# Minting: POST /v1/tokens on the embedded issuer (ES256), admin key from its data directory.
mkdir -p "$work/embedded" && cd "$work/embedded"
RUST_LOG=warn $J serve --listen 127.0.0.1:18083 2>/dev/null & JP=$!; pids+=($JP); wait_port 18083
cat > "$work/mint.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"sub":"alice","aud":"partner-42","ttl":"10m"}'
wrk.headers["Authorization"] = "Bearer $(cat jwtd-data/admin.key)"
wrk.headers["Content-Type"] = "application/json"
LUA
cat "$work/report.lua" >> "$work/mint.lua"
printf '%-34s %s\n' "jwtd POST /v1/tokens ES256" "$(timeout $((DUR + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --timeout 5s -s "$work/mint.lua" http://127.0.0.1:18083/v1/tokens | grep RESULT)"
kill $JP; cd "$ROOT"

# The peers, against the shared mock IdP, with jwtd on the same tokens.
if [ -f "$PEERS/mock_idp.py" ] && command -v node >/dev/null; then
  cp -r "$PEERS" "$work/peers"; cd "$work/peers"
  python3 -m venv .venv >/dev/null && .venv/bin/pip install -q -r requirements.txt >/dev/null
  npm install --silent --no-audit --no-fund >/dev/null 2>&1
  export ISSUER=http://127.0.0.1:9000 AUDIENCE=jwtd-bench
  .venv/bin/python mock_idp.py serve --port 9000 --keys keys.json > idp.log 2>&1 & pids+=($!); wait_port 9000
  for alg in RS256 ES256; do .venv/bin/python mock_idp.py mint --keys keys.json --issuer $ISSUER --aud $AUDIENCE --alg $alg --kind valid --n 1000 --out t_$alg.txt >/dev/null; done
  for peer in express_jwksrsa node_jose; do
    case $peer in
      express_jwksrsa) PORT=18081 node peer_express_jwksrsa.js > $peer.log 2>&1 & ;;
      node_jose) PORT=18081 node peer_node_jose.mjs > $peer.log 2>&1 & ;;
    esac
    pids+=($!); wait_port 18081; sleep 0.5
    for alg in RS256 ES256; do load "peer $peer $alg" http://127.0.0.1:18081/verify "$PWD/t_$alg.txt"; done
    kill "${pids[-1]}"; sleep 1
  done
  RUST_LOG=warn $J serve --listen 127.0.0.1:18082 --issuer $ISSUER --audience $AUDIENCE --alg RS256,ES256 2>jwtd-idp.log & JP=$!; pids+=($JP); wait_port 18082
  sleep 0.5
  for alg in RS256 ES256; do load "jwtd /auth (mock IdP) $alg" http://127.0.0.1:18082/auth "$PWD/t_$alg.txt"; done
  echo "jwtd peak RSS: $(rss $JP)"
else
  echo "(peers skipped: no $PEERS/mock_idp.py or no node)"
fi
