# Shared by the HTTP benchmarks (sourced): wrk, release binaries, a work dir cleaned on exit,
# wrk scripts that rotate through a token file and print one RESULT line, and helpers.
# Expects DUR, THREADS, CONNS set by the caller.
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
# BENCH_NO_BUILD=1: use the release binaries as they are; JWTD_BIN / JWTD_BENCH_BIN: other
# copies of them (e.g. a build kept from before a change).
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --release --locked -p jwtd -p jwtd-bench >/dev/null
ROOT=$PWD; J=${JWTD_BIN:-$ROOT/target/release/jwtd}; B=${JWTD_BENCH_BIN:-$ROOT/target/release/jwtd-bench}
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
cat > "$work/report.lua" <<'LUA'
function done(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx_or_errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, bad))
end
LUA
cat > "$work/rotate.lua" <<'LUA'
-- Each thread walks the whole list from its own evenly spaced start (so two threads never
-- send the same token close together: a cache smaller than the list then misses every time).
local tokens, i = {}, 0
local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end
function init(args)
  for line in io.lines(os.getenv("TOKENS")) do if #line > 0 then tokens[#tokens + 1] = line end end
  i = math.floor(#tokens * index / tonumber(os.getenv("WRK_THREADS") or "1"))
end
function request()
  i = (i % #tokens) + 1
  -- The original request as nginx names it: read by jwtd only with rules (rules.toml).
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i],
    ["X-Original-Method"] = "GET", ["X-Original-URI"] = "/v1/orders/42" })
end
LUA
cat "$work/report.lua" >> "$work/rotate.lua"
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
load() { # name url tokens
  local r; r=$(TOKENS="$3" WRK_THREADS="$THREADS" timeout $((DUR + 15)) wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --timeout 5s -s "$work/rotate.lua" "$2" | grep RESULT)
  printf '%-34s %s\n' "$1" "$r"
}
# Writes $work/on.toml (jwtd on 127.0.0.1:$1, one issuer per algorithm of $2, each with its
# key from $work/jwks_<alg>.json or the HS256 secret), and the same with the cache off
# ($work/off.toml), with 100 entries ($work/miss.toml), and with the cache on and 200 rules
# ($work/rules.toml): 199 that the benchmark's request (GET /v1/orders/42, named by
# X-Original-URI/-Method) does not take (other paths, rests, hosts, methods) and the one that
# takes it, any of the issuers.
cache_configs() {
  local cfg="$work/on.toml" alg src
  echo "listen = \"127.0.0.1:$1\"" > "$cfg"
  for alg in $2; do
    if [ "$alg" = HS256 ]; then src='secret_env = "JWTD_BENCH_SECRET"'; else src="jwks_file = \"$work/jwks_$alg.json\""; fi
    printf '[[issuer]]\nname = "%s"\nissuer = "https://bench-%s"\n%s\nalgorithms = ["%s"]\naudiences = ["bench"]\n' "$alg" "$alg" "$src" "$alg" >> "$cfg"
  done
  { cat "$cfg"; printf '[cache]\nenabled = false\n'; } > "$work/off.toml"
  { cat "$cfg"; printf '[cache]\nmax_entries = 100\n'; } > "$work/miss.toml"
  local any; any=$(printf '"%s", ' $2); any="[${any%, }]"
  {
    cat "$cfg"
    for i in $(seq 199); do
      case $((i % 4)) in
        0) printf '[[rule]]\nid = "d%s"\npath = "/svc%s/items/:id"\nmethods = ["GET"]\nauth = { any = %s }\n' $i $i "$any" ;;
        1) printf '[[rule]]\nid = "d%s"\npath = "/svc%s/**"\nauth = { any = %s }\nscopes = { all = ["s%s"] }\n' $i $i "$any" $i ;;
        2) printf '[[rule]]\nid = "d%s"\nhosts = ["h%s.example"]\npath = "/v1/orders/:id"\nauth = { any = %s }\n' $i $i "$any" ;;
        3) printf '[[rule]]\nid = "d%s"\npath = "/v1/orders/%s"\nmethods = ["GET", "POST"]\nauth = { any = %s }\n' $i $i "$any" ;;
      esac
    done
    printf '[[rule]]\nid = "orders"\npath = "/v1/orders/:id"\nmethods = ["GET"]\nauth = { any = %s }\n' "$any"
  } > "$work/rules.toml"
  $J config check "$work/rules.toml" >/dev/null
}
# Sends every token of file $2 once to URL $1, in order, on one keep-alive connection; fails
# unless every answer is 200.
once() {
  python3 - "$1" "$2" <<'PY'
import http.client, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
tokens = [t for t in open(sys.argv[2]).read().split("\n") if t]
for t in tokens:
    conn.request("GET", url.path, headers={"Authorization": "Bearer " + t,
        "X-Original-Method": "GET", "X-Original-URI": "/v1/orders/42"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{sys.argv[1]} answered {r.status}")
PY
}
# The same for jwtd's gRPC external authorizer at ADDR $1 (jwtd-bench grpc-load, one
# connection): every check must be allowed.
once_grpc() {
  local r; r=$($B grpc-load "$1" "$2" 1 --count "$(grep -c . "$2")")
  case "$r" in *non2xx_or_errors=0) ;; *) echo "gRPC checks at $1 failed: $r" >&2; exit 1 ;; esac
}
wait_long() { for _ in $(seq 1200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
# Started with `&`: exec, so that $! is valgrind's (and the program's) process.
cg() { exec valgrind --tool=callgrind --callgrind-out-file="$1" "${@:2}" 2>/dev/null; }
# Instructions per request of the server under callgrind (PID $1, dump prefix $2) for tokens $4
# sent to $3 by the function $6 (default `once`), after warm-up tokens $5.
measure() {
  local pid=$1 out=$2 url=$3 tokens=$4 warm=$5 send=${6:-once}
  $send "$url" "$warm"
  callgrind_control -z "$pid" >/dev/null 2>&1 || { echo "callgrind_control -z $pid failed" >&2; kill $$; }
  $send "$url" "$tokens"
  callgrind_control -d "$pid" >/dev/null 2>&1 || { echo "callgrind_control -d $pid failed" >&2; kill $$; }
  local f; f=$(ls -t "$out"* 2>/dev/null | head -1)
  [ -n "$f" ] || { echo "no callgrind dump for $out" >&2; kill $$; }
  awk -v n="$(wc -l < "$tokens")" '/^(summary|totals):/ { t = $2 } END { printf "%.0f", t / n }' "$f"
}
rss() { awk '/VmHWM/ {print $2 " kB"}' /proc/$1/status; }

