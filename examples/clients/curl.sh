#!/bin/sh
# Verifies a token with jwtd's POST /v1/verify from the shell.
#   JWTD_URL=http://127.0.0.1:8080 sh curl.sh "$TOKEN"
# Exit 0 and jwtd's answer {"issuer","iss","header","claims"} on stdout when the token is valid;
# 1 and jwtd's {"error","reason","message"} on stderr when it is refused (no token: 401
# missing_token); 3 when jwtd cannot answer within 3 s (fail closed).
set -u
JWTD_URL=${JWTD_URL:-http://127.0.0.1:8080}
TOKEN=${1:-}
case $TOKEN in
  *[!A-Za-z0-9._-]*) echo '{"error":"invalid_token","reason":"malformed"}' >&2; exit 1 ;;
esac
if [ -n "$TOKEN" ]; then BODY="{\"token\":\"$TOKEN\"}"; else BODY='{}'; fi
OUT=$(mktemp) || exit 3
trap 'rm -f "$OUT"' EXIT
STATUS=$(curl -sS --max-time 3 -o "$OUT" -w '%{http_code}' \
  -H 'Content-Type: application/json' --data "$BODY" "$JWTD_URL/v1/verify") || exit 3
case $STATUS in
  200) cat "$OUT"; echo ;;
  400|401|403) cat "$OUT" >&2; echo >&2; exit 1 ;;
  *) echo "jwtd answered $STATUS" >&2; exit 3 ;;
esac
