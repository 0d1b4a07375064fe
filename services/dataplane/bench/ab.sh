#!/usr/bin/env bash
# A/B of two dataplane builds or settings in the same minutes (docs/benchmarks.md, "Dataplane").
# Both run side by side in front of one echo upstream; each round runs wrk direct, then through A,
# then through B, so a slow phase of the machine falls on all three alike.
#   A_BIN=/tmp/bench_before B_BIN=/tmp/bench_after services/dataplane/bench/ab.sh
#   A_ENV=RUST_LOG=warn B_ENV=RUST_LOG=info services/dataplane/bench/ab.sh   (one build, two settings)
#   B_ARGS="--tenants 10000 --tools-per-tenant 10" RATE=1000 ROUNDS=2 services/dataplane/bench/ab.sh
#   B_ARGS="--redis redis://127.0.0.1:6379" ALSO_PID="$(pgrep -x redis-server)" RATE=1000 services/dataplane/bench/ab.sh
# A_BIN/B_BIN: bench_dataplane binaries (default: this tree's release build); A_ENV/B_ENV: one
# VAR=value each; A_ARGS/B_ARGS: more bench_dataplane arguments; RATE: also a fixed-rate run of
# DURATION at RATE req/s per round, direct and through each (0: none); ALSO_PID: another process
# whose CPU per call is shown too (Redis); DURATION (8 s), ROUNDS (3), CONNS (32), DP_WORKERS (1).
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN="${CARGO_TARGET_DIR:-target}/release/examples"
A_BIN="${A_BIN:-$BIN/bench_dataplane}"
B_BIN="${B_BIN:-$BIN/bench_dataplane}"
DURATION="${DURATION:-8}" ROUNDS="${ROUNDS:-3}" CONNS="${CONNS:-32}" DP_WORKERS="${DP_WORKERS:-1}"
RATE="${RATE:-0}" ALSO_PID="${ALSO_PID:-}"
ECHO_PORT=18190 A_PORT=18191 A_JWKS=18192 B_PORT=18193 B_JWKS=18194
LUA="services/dataplane/bench/tools_call.lua"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN/echo_upstream" ] || cargo build --release -p gatehouse-dataplane --examples >&2

cleanup() { kill "${ECHO_PID:-}" "${A_PID:-}" "${B_PID:-}" 2>/dev/null || true; }
trap cleanup EXIT
# shellcheck source=services/dataplane/bench/machine.sh
. services/dataplane/bench/machine.sh

"$BIN/echo_upstream" "127.0.0.1:$ECHO_PORT" 1 2>/dev/null &
ECHO_PID=$!
A_OUT="$(mktemp)" B_OUT="$(mktemp)"
# shellcheck disable=SC2086 # A_ARGS/B_ARGS are lists of arguments
env ${A_ENV:-} "$A_BIN" --upstream "http://127.0.0.1:$ECHO_PORT/mcp" --listen "127.0.0.1:$A_PORT" \
  --jwks-port "$A_JWKS" --workers "$DP_WORKERS" ${A_ARGS:-} >"$A_OUT" 2>/dev/null &
A_PID=$!
# shellcheck disable=SC2086
env ${B_ENV:-} "$B_BIN" --upstream "http://127.0.0.1:$ECHO_PORT/mcp" --listen "127.0.0.1:$B_PORT" \
  --jwks-port "$B_JWKS" --workers "$DP_WORKERS" ${B_ARGS:-} >"$B_OUT" 2>/dev/null &
B_PID=$!
# Loading many tenants (B_ARGS="--tenants ...") takes a while before the URL is printed.
for _ in $(seq 1 1200); do grep -q '^pid=' "$A_OUT" && grep -q '^pid=' "$B_OUT" && break; sleep 0.1; done
grep -h '^scale_' "$A_OUT" "$B_OUT" || true

# name, URL, pid whose CPU is counted, token
measure() {
  TOKEN="$4" wrk -t1 -c4 -d1s -s "$LUA" "$2" >/dev/null
  local before after also machine_before out requests
  before="$(cpu_ticks "$3")"
  also="$([ -n "$ALSO_PID" ] && cpu_ticks "$ALSO_PID" || echo 0)"
  machine_before="$(machine_ticks)"
  out="$(TOKEN="$4" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$LUA" "$2")"
  after="$(cpu_ticks "$3")"
  requests="$(awk '/requests in/ {print $1}' <<<"$out")"
  printf '%-7s %10s req/s  %6s us CPU per call' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
    "$(per_call "$((after - before))" "$requests")"
  if [ -n "$ALSO_PID" ]; then
    printf '  (+ %s us in pid %s)' "$(per_call "$(($(cpu_ticks "$ALSO_PID") - also))" "$requests")" "$ALSO_PID"
  fi
  printf '  [%s]' "$(machine_shares "$machine_before" "$(machine_ticks)")"
  if grep -q 'Non-2xx' <<<"$out"; then printf '  NON-2XX ANSWERS'; fi
  echo
}
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  measure direct "http://127.0.0.1:$ECHO_PORT/mcp" "$ECHO_PID" ""
  measure A "$(sed -n 's/^url=//p' "$A_OUT")" "$A_PID" "$(sed -n 's/^token=//p' "$A_OUT")"
  measure B "$(sed -n 's/^url=//p' "$B_OUT")" "$B_PID" "$(sed -n 's/^token=//p' "$B_OUT")"
  if [ "$RATE" != 0 ]; then
    # Direct at the same rate first: the added p50/p99 of A and B are their figures minus these.
    echo -n "direct at $RATE/s: "
    "$BIN/loadgen" rate "http://127.0.0.1:$ECHO_PORT/mcp" "$RATE" "$DURATION"
    for side in A B; do
      out_file="${side}_OUT"
      echo -n "$side at $RATE/s: "
      "$BIN/loadgen" rate "$(sed -n 's/^url=//p' "${!out_file}")" "$RATE" "$DURATION" \
        "$(sed -n 's/^token=//p' "${!out_file}")"
    done
  fi
done
