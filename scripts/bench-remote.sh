#!/usr/bin/env bash
# Remote-key scenarios against the shared mock IdP (../shared/peers/mock_idp.py), 127.0.0.1 only:
#   1. an unknown-kid flood (1000 RS256 tokens with random kids) for SECONDS, 32 concurrent
#      verifiers: how many JWKS fetches it causes (compare RESULTS.md: jwks-rsa 6, jose 1,
#      PyJWT 2 in 10 s);
#   2. the same with valid tokens (0 fetches expected);
#   3. key rotation: delay from a key's publication to its first accepted token, and fetches.
# Usage: scripts/bench-remote.sh [SECONDS=10] [PEERS_DIR=../shared/peers] [PORT=9000]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}; PEERS=${2:-../shared/peers}; PORT=${3:-9000}
IDP=http://127.0.0.1:$PORT
VENV=target/bench-venv
[ -x $VENV/bin/python ] || { python3 -m venv $VENV && $VENV/bin/pip install -q 'pyjwt[crypto]'; }
PY=$VENV/bin/python
cargo build --release --locked -p jwtd-bench >/dev/null
B=target/release/jwtd-bench
work=$(mktemp -d)
$PY "$PEERS/mock_idp.py" serve --port "$PORT" --keys "$work/keys.json" > "$work/idp.log" 2>&1 & IDP_PID=$!
trap 'kill $IDP_PID 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s --max-time 1 "$IDP/stats" >/dev/null && break; sleep 0.1; done
mint() { $PY "$PEERS/mock_idp.py" mint --keys "$work/keys.json" --issuer "$IDP" --aud jwtd-bench --alg RS256 "$@" >/dev/null; }
mint --kind unknownkid --n 1000 --out "$work/unknown.txt"
mint --kind valid --n 1000 --out "$work/valid.txt"
stats() { curl -s "$IDP/stats"; echo; }
curl -s -X POST "$IDP/control/reset" >/dev/null
echo "unknown-kid flood ($SECS s, 32 concurrent):"
$B remote-flood "$IDP" jwtd-bench RS256 "$work/unknown.txt" "$SECS" 32
echo "  IdP counters (start-up included): $(stats)"
curl -s -X POST "$IDP/control/reset" >/dev/null
echo "valid tokens ($SECS s, 32 concurrent):"
$B remote-flood "$IDP" jwtd-bench RS256 "$work/valid.txt" "$SECS" 32
echo "  IdP counters (start-up included): $(stats)"
echo "rotation (publish a new key, then its first token):"
$B rotation "$IDP" jwtd-bench RS256 "$work/valid.txt" "$work/new.txt" \
  "curl -s -X POST $IDP/control/rotate >/dev/null && $PY $PEERS/mock_idp.py mint --keys $work/keys.json --issuer $IDP --aud jwtd-bench --alg RS256 --kind valid --n 1 --out $work/new.txt >/dev/null"
