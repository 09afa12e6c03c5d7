#!/usr/bin/env bash
# DPoP proof-check cost in instructions (callgrind), per algorithm: one token verification,
# the proof's bare signature check (pre-parsed key, and key parsed per call), and the proof
# check with its key parsed per call (a client's first proof), with the key from jwtd-gate's
# proof-key cache (the access token hashed for `ath`), and with the token's hash kept with its
# cached verification too (a returning client). The issue's bar: the check costs at most one
# proof signature verification plus 10% of the token's verification ("- sig" columns, as a
# share of the token verify). Figures: docs/dpop.md ("Cost").
# Usage: scripts/bench-dpop-ir.sh [ALG...]   (default ES256 EdDSA RS256 PS256)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
nice cargo build --release -q -p jwtd-bench
exec target/release/jwtd-bench dpop "$@"
