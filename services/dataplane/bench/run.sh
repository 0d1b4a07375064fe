#!/usr/bin/env bash
# Dataplane benchmark (docs/benchmarks.md, section "Dataplane"). Release builds only.
#   services/dataplane/bench/run.sh            full run (about 10 minutes)
#   DURATION=10 CALLS=200000 services/dataplane/bench/run.sh   shorter
#   DP_WORKERS=2 services/dataplane/bench/run.sh                  dataplane with one worker per core
#   RATE_PAIRS=5 LOADGEN_DUMP_DIR=/tmp/lat services/dataplane/bench/run.sh   more fixed-rate rounds, every latency kept
# Needs: wrk (apt-get install wrk). Fixed-rate latency, the 1M-call memory run and the idle
# sessions use examples/loadgen.rs. With nginx installed (apt-get install nginx-light), the same
# run also measures nginx as a bare reverse proxy in front of the same upstream (no policy at
# all): the cost of the extra hop itself on this machine.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DURATION="${DURATION:-20}"
CALLS="${CALLS:-1000000}"
RATE="${RATE:-1000}"
CONNS="${CONNS:-32}"
DP_WORKERS="${DP_WORKERS:-1}"
RATE_PAIRS="${RATE_PAIRS:-3}"
ECHO_PORT=18090 DP_PORT=18091 JWKS_PORT=18092 NGINX_PORT=18095 BARE_PORT=18096
BIN="${CARGO_TARGET_DIR:-target}/release/examples"
LUA="services/dataplane/bench/tools_call.lua"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

cargo build --release -p gatehouse-dataplane --examples >&2

cleanup() { kill "${ECHO_PID:-}" "${DP_PID:-}" "${NGINX_PID:-}" "${BARE_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT
"$BIN/echo_upstream" "127.0.0.1:$ECHO_PORT" 1 2>/dev/null &
ECHO_PID=$!
OUT="$(mktemp)"
"$BIN/bench_dataplane" --upstream "http://127.0.0.1:$ECHO_PORT/mcp" --listen "127.0.0.1:$DP_PORT" \
  --jwks-port "$JWKS_PORT" --workers "$DP_WORKERS" >"$OUT" 2>/dev/null &
DP_PID=$!
for _ in $(seq 1 100); do grep -q '^pid=' "$OUT" && break; sleep 0.1; done
DP_URL="$(sed -n 's/^url=//p' "$OUT")"
export TOKEN="$(sed -n 's/^token=//p' "$OUT")"
DIRECT_URL="http://127.0.0.1:$ECHO_PORT/mcp"
# shellcheck source=services/dataplane/bench/machine.sh
. services/dataplane/bench/machine.sh
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
LOADGEN="$BIN/loadgen"

# One wrk throughput run, with the CPU per call of the proxy (if any) and of the upstream, from
# /proc, and the machine's busy, steal and idle shares over the run.
# Arguments: label, URL, pid of the proxy whose CPU is counted ("" for direct), token ("" for none).
through() {
  local before echo_before machine_before after requests
  before="$([ -n "$3" ] && cpu_ticks "$3" || echo 0)"
  echo_before="$(cpu_ticks "$ECHO_PID")"
  machine_before="$(machine_ticks)"
  TOKEN="$4" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$LUA" "$2" | tee "/tmp/bench-$1.txt"
  after="$([ -n "$3" ] && cpu_ticks "$3" || echo 0)"
  requests="$(awk '/requests in/ {print $1}' "/tmp/bench-$1.txt")"
  if [ -n "$3" ]; then
    echo "$1 CPU: $(per_call "$((after - before))" "$requests") us per tools/call ($((after - before)) ticks for $requests calls)"
  fi
  echo "$1 upstream CPU: $(per_call "$(( $(cpu_ticks "$ECHO_PID") - echo_before ))" "$requests") us per call; $(machine_shares "$machine_before" "$(machine_ticks)")"
}

# Warm up (JWKS fetch, connection pools, pin check).
TOKEN="$TOKEN" wrk -t1 -c4 -d2s -s "$LUA" "$DP_URL" >/dev/null
TOKEN="" wrk -t1 -c4 -d2s -s "$LUA" "$DIRECT_URL" >/dev/null

echo "== throughput: direct to the upstream (wrk -t1 -c$CONNS -d${DURATION}s)"
through direct "$DIRECT_URL" "" ""

echo "== throughput: through the dataplane (token verification, authorization, rate limits, events on)"
through dataplane "$DP_URL" "$DP_PID" "$TOKEN"

if command -v nginx >/dev/null; then
  NGINX_DIR="$(mktemp -d)"
  cat >"$NGINX_DIR/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $NGINX_DIR/error.log warn;
pid $NGINX_DIR/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  upstream echo { server 127.0.0.1:$ECHO_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
EOF
  nginx -c "$NGINX_DIR/nginx.conf" &
  NGINX_PID=$!
  sleep 0.5
  NGINX_WORKER="$(pgrep -P "$NGINX_PID" | head -1)"
  TOKEN="" wrk -t1 -c4 -d2s -s "$LUA" "http://127.0.0.1:$NGINX_PORT/mcp" >/dev/null
  echo "== throughput: through nginx as a bare reverse proxy (reference: no policy at all)"
  through nginx "http://127.0.0.1:$NGINX_PORT/mcp" "$NGINX_WORKER" ""
fi

# The dataplane's own stack (actix-web and reqwest) passing bytes through, with no policy at all.
"$BIN/bare_proxy" "127.0.0.1:$BARE_PORT" "$DIRECT_URL" 2>/dev/null &
BARE_PID=$!
sleep 0.5
TOKEN="" wrk -t1 -c4 -d2s -s "$LUA" "http://127.0.0.1:$BARE_PORT/mcp" >/dev/null
echo "== throughput: through a bare actix-web + reqwest pass-through (reference: the dataplane's stack, no policy)"
through bare "http://127.0.0.1:$BARE_PORT/mcp" "$BARE_PID" ""
kill "$BARE_PID"; BARE_PID=""

# Direct once more: on a 2-core VM the direct figure moves a lot between runs (wrk and the upstream
# sharing a core or not), and a ratio is only as steady as its denominator. Both directs are shown.
echo "== throughput: direct to the upstream, again (the spread of the baseline)"
through direct-again "$DIRECT_URL" "" ""

# Interleaved, so that the machine's slow phases fall on all of them alike. LOADGEN_DUMP_DIR
# keeps every request's scheduled start and latency (µs), one file per run, for a closer look.
[ -n "${LOADGEN_DUMP_DIR:-}" ] && mkdir -p "$LOADGEN_DUMP_DIR"
echo "== fixed rate ${RATE}/s for ${DURATION}s, $RATE_PAIRS rounds: direct, through the dataplane${NGINX_PID:+, through nginx}"
for round in $(seq 1 "$RATE_PAIRS"); do
  dump() { [ -n "${LOADGEN_DUMP_DIR:-}" ] && echo "$LOADGEN_DUMP_DIR/$1-$round.txt" || true; }
  echo -n "direct    "; LOADGEN_DUMP="$(dump direct)" "$LOADGEN" rate "$DIRECT_URL" "$RATE" "$DURATION"
  echo -n "dataplane "; LOADGEN_DUMP="$(dump dataplane)" "$LOADGEN" rate "$DP_URL" "$RATE" "$DURATION" "$TOKEN"
  if [ -n "${NGINX_PID:-}" ]; then
    echo -n "nginx     "; LOADGEN_DUMP="$(dump nginx)" "$LOADGEN" rate "http://127.0.0.1:$NGINX_PORT/mcp" "$RATE" "$DURATION"
  fi
done
if [ -n "${NGINX_PID:-}" ]; then kill "$NGINX_PID"; NGINX_PID=""; fi

echo "== memory over $CALLS calls"
echo "RSS before: $(rss_kb "$DP_PID") kB"
"$LOADGEN" count "$DP_URL" "$CALLS" "$CONNS" "$TOKEN"
echo "RSS after $CALLS calls: $(rss_kb "$DP_PID") kB"
"$LOADGEN" count "$DP_URL" "$((CALLS / 4))" "$CONNS" "$TOKEN"
echo "RSS after $((CALLS + CALLS / 4)) calls: $(rss_kb "$DP_PID") kB"

echo "== 10,000 idle 2025-11-25 sessions"
rss0="$(rss_kb "$DP_PID")"
"$LOADGEN" sessions "$DP_URL" 10000 16 "$TOKEN"
sleep 2
echo "RSS before: $rss0 kB; with 10,000 sessions opened and idle: $(rss_kb "$DP_PID") kB"

echo "== JWT verification (distinct tokens, cache misses; then cache hits)"
"$BIN/bench_dataplane" --jwt-micro --listen 127.0.0.1:18093 --jwks-port 18094 2>/dev/null | grep "^jwt_"
