#!/usr/bin/env bash
# jwtd in front of an upstream, next to what people run instead, in one run, all on 127.0.0.1,
# the same RS256 tokens (1000, rotating) and the same upstream (the hyper ceiling server):
#   (a) HAProxy (Debian) proxying without any check;
#   (b) HAProxy's inline jwt_verify with alg, iss, aud and exp rules;
#   (c) nginx auth_request -> jwtd /auth (keep-alive to both jwtd and the upstream);
#   (d) jwtd's proxy mode ([proxy] + [upstream]), cache on (all hits after warm-up) and off.
# Every row is checked first: a valid token is let through (200), a bad signature refused
# (401). Medians of ROUNDS runs of SECONDS each with wrk -t2 -cCONNS, alternating so that drift
# hits every row alike; each run's ratio to the (b) run right before it, medians of those;
# peak RSS of each proxy (jwtd's own for c, nginx's workers not included).
# BASE=path/to/another/jwtd adds the rows d_on_base and d_off_base (that binary, e.g. a build
# from before a change, with the same configurations) to the default rows.
# Usage: [ROWS="a b c d_on d_off"] [BASE=jwtd] scripts/bench-proxy.sh [SECONDS=5] [CONNS=32] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${1:-5}; CONNS=${2:-32}; ROUNDS=${3:-3}; THREADS=2
. scripts/bench-lib.sh
command -v haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }

UP=18120 HA=18121 HJ=18122 NG=18123 JA=18124 JP_ON=18125 JP_OFF=18126
ISS=https://bench-RS256
$B mint RS256 1001 "$ISS" bench "$work/all.txt" "$work/jwks.json" "$work/pub.pem"
head -n 1000 "$work/all.txt" > "$work/t.txt"
# A bad signature: the last token's signature swapped for another of its own kind.
good=$(tail -n 1 "$work/all.txt"); bad="${good%.*}.$(head -n 1 "$work/t.txt" | sed 's/.*\.//')"

$B http-ceiling 127.0.0.1:$UP & pids+=($!); wait_port $UP

haproxy_cfg() { # port, jwt checks (0/1)
  cat <<EOF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$1
EOF
  if [ "$2" = 1 ]; then cat <<EOF
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny status 401 unless { var(txn.iss) -m str $ISS }
  http-request deny status 401 unless { var(txn.aud) -m str bench }
  http-request deny status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/pub.pem") -m int 1 }
EOF
  fi
  cat <<EOF
  default_backend up
backend up
  server up 127.0.0.1:$UP
EOF
}
haproxy_cfg $HA 0 > "$work/ha.cfg"; haproxy_cfg $HJ 1 > "$work/hj.cfg"
for c in ha hj; do haproxy -c -q -f "$work/$c.cfg"; done

cat > "$work/jwtd_base.toml" <<EOF
[[issuer]]
name = "bench"
issuer = "$ISS"
jwks_file = "$work/jwks.json"
algorithms = ["RS256"]
audiences = ["bench"]
EOF
{ echo "listen = \"127.0.0.1:$JA\""; cat "$work/jwtd_base.toml"; } > "$work/auth.toml"
for m in on off; do
  port=$([ $m = on ] && echo $JP_ON || echo $JP_OFF)
  {
    echo "listen = \"127.0.0.1:$((port + 10))\""
    cat "$work/jwtd_base.toml"
    printf '[proxy]\nlisten = "127.0.0.1:%s"\n[upstream]\nurl = "http://127.0.0.1:%s"\n' $port $UP
    [ $m = off ] && printf '[cache]\nenabled = false\n'
  } > "$work/proxy_$m.toml"
  case " ${ROWS:-d_on} " in *" d_$m "*|*" d_${m}_base "*) $J config check "$work/proxy_$m.toml" >/dev/null ;; esac
done
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream jwtd { server 127.0.0.1:$JA; keepalive 64; }
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location = /_jwtd {
      internal;
      proxy_pass http://jwtd/auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI \$request_uri;
      proxy_set_header X-Original-Method \$request_method;
    }
    location / {
      auth_request /_jwtd;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -t -q -c "$work/nginx.conf" -p "$work/nginx"

# Starts row $1; its processes' pids go to row_pids (for RSS and stop) and pids (cleanup).
bg() { "$@" >/dev/null 2>&1 & row_pids+=($!); pids+=($!); }
start_row() {
  row_pids=()
  case $1 in
    a) bg haproxy -db -f "$work/ha.cfg"; wait_port $HA ;;
    b) bg haproxy -db -f "$work/hj.cfg"; wait_port $HJ ;;
    c) RUST_LOG=warn bg $J serve --config "$work/auth.toml"; wait_port $JA
       bg nginx -c "$work/nginx.conf" -p "$work/nginx" -g 'daemon off;'; wait_port $NG ;;
    d_on) RUST_LOG=warn bg $J serve --config "$work/proxy_on.toml"; wait_port $JP_ON ;;
    d_off) RUST_LOG=warn bg $J serve --config "$work/proxy_off.toml"; wait_port $JP_OFF ;;
    d_on_base) RUST_LOG=warn bg "$BASE" serve --config "$work/proxy_on.toml"; wait_port $JP_ON ;;
    d_off_base) RUST_LOG=warn bg "$BASE" serve --config "$work/proxy_off.toml"; wait_port $JP_OFF ;;
  esac
}
port_of() { case $1 in a) echo $HA ;; b) echo $HJ ;; c) echo $NG ;; d_on|d_on_base) echo $JP_ON ;; d_off|d_off_base) echo $JP_OFF ;; esac; }
status() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "http://127.0.0.1:$1/v1/orders/42"; }

declare -A runs rss_of
rps_of() { echo "$1" | sed -E 's/.*rps=([0-9]+).*/\1/'; }
p99_of() { echo "$1" | sed -E 's/.*p99_ms=([0-9.]+).*/\1/'; }
ROWS=${ROWS:-a b c d_on d_off${BASE:+ d_on_base d_off_base}}
for round in $(seq "$ROUNDS"); do
  for row in $ROWS; do
    start_row $row
    port=$(port_of $row)
    # Checked before measured: a valid token passes, a bad signature does not (row a lets all).
    [ "$(status $port "$good")" = 200 ] || { echo "row $row refused a valid token" >&2; exit 1; }
    if [ $row != a ]; then [ "$(status $port "$bad")" = 401 ] || { echo "row $row let a bad signature through" >&2; exit 1; }; fi
    once "http://127.0.0.1:$port/v1/orders/42" "$work/t.txt"
    line=$(load "round $round: $row" "http://127.0.0.1:$port/v1/orders/42" "$work/t.txt")
    echo "$line"
    runs["$row rps"]="${runs["$row rps"]:-} $(rps_of "$line")"; runs["$row p99"]="${runs["$row p99"]:-} $(p99_of "$line")"
    [ $row = b ] && b_rps=$(rps_of "$line")
    [ $row != a ] && [ $row != b ] && runs["$row ratio"]="${runs["$row ratio"]:-} $(awk -v x="$(rps_of "$line")" -v b="$b_rps" 'BEGIN { printf "%.4f", x / b }')"
    rss_of[$row]=$(for p in "${row_pids[@]}"; do rss $p; done | awk '{ s += $1 } END { print s " kB" }')
    for p in "${row_pids[@]}"; do kill $p 2>/dev/null || true; wait $p 2>/dev/null || true; done
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "Medians of $ROUNDS runs of ${DUR}s (wrk -t$THREADS -c$CONNS, 1000 rotating RS256 tokens, upstream: the hyper ceiling server)."
echo "| row | req/s | p99 ms | of (a) | vs (b) | peak RSS |"
echo "|---|---:|---:|---:|---:|---:|"
a=$(echo "${runs["a rps"]}" | median)
for row in $ROWS; do
  r=$(echo "${runs["$row rps"]}" | median); p=$(echo "${runs["$row p99"]}" | median)
  vb=$( [ $row = a ] || [ $row = b ] && echo "-" || echo "${runs["$row ratio"]}" | median)
  name=$(case $row in a) echo "(a) HAProxy, no check" ;; b) echo "(b) HAProxy jwt_verify" ;; c) echo "(c) nginx auth_request -> jwtd" ;; d_on) echo "(d) jwtd proxy, cache on" ;; d_off) echo "(d) jwtd proxy, cache off" ;; d_on_base) echo "(d) cache on, BASE binary" ;; d_off_base) echo "(d) cache off, BASE binary" ;; esac)
  awk -v n="$name" -v r=$r -v p=$p -v a=$a -v vb="$vb" -v m="${rss_of[$row]}" 'BEGIN { printf "| %s | %.0f | %.2f | %.1f%% | %s | %s |\n", n, r, p, r / a * 100, (vb == "-" ? "-" : sprintf("%.2fx", vb)), m }'
done
