#!/usr/bin/env bash
# What bridging revisions costs the dataplane per `tools/call` (docs/benchmarks.md, "Bridging
# revisions"). One dataplane in front of two MCP fixtures (tests/mcp-fixture), one serving
# 2026-07-28 only and one serving the 2025 session revisions only; every round measures the
# dataplane's CPU per call on three paths, one after the other:
#   stateless  a 2026-07-28 client of the 2026-07-28 upstream (matching revisions)
#   session    a 2025-11-25 session client of the 2025 upstream (matching revisions)
#   bridged    a 2026-07-28 client of the 2025 upstream: the dataplane holds an upstream session
#              for the caller and relays the call in it
#   services/dataplane/bench/bridging.sh
#   OLD_BIN=/tmp/bench_before services/dataplane/bench/bridging.sh      (also an earlier build)
#   CALLGRIND=1 services/dataplane/bench/bridging.sh                     (instructions per call)
# OLD_BIN: a bench_dataplane built from another commit, started beside this tree's in front of
# the same fixtures and measured in the same rounds on the paths it serves (OLD_PATHS, default
# "stateless session"). CALLGRIND=1: both dataplanes run under valgrind's callgrind and each
# figure is the instructions per call (counters zeroed once the client's sessions are open and
# dumped after its last call), which neither the hypervisor's steal nor other work on the machine
# moves; the dumps stay in OUT_DIR for callgrind_annotate. CALLS (20000; 2000 under callgrind)
# calls per path and round, CONNS (16) concurrent clients, ROUNDS (3), DP_WORKERS (1); BUILD=0
# uses the binaries already built.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN="${CARGO_TARGET_DIR:-target}/release"
CALLGRIND="${CALLGRIND:-0}"
CALLS="${CALLS:-$([ "$CALLGRIND" = 1 ] && echo 2000 || echo 20000)}"
CONNS="${CONNS:-16}" ROUNDS="${ROUNDS:-3}" DP_WORKERS="${DP_WORKERS:-1}"
OLD_BIN="${OLD_BIN:-}" OLD_PATHS="${OLD_PATHS:-stateless session}"
OUT_DIR="${OUT_DIR:-$(mktemp -d)}"
mkdir -p "$OUT_DIR"
NEW_PORT=18292 NEW_JWKS=18293 OLD_PORT=18294 OLD_JWKS=18295
TOOL=test_simple_text

if [ "${BUILD:-1}" = 1 ]; then
  cargo build --release -p gatehouse-dataplane --example bench_dataplane --example loadgen \
    -p gatehouse-mcp-fixture --bin mcp-fixture >&2
fi

cleanup() {
  kill "${STATELESS_PID:-}" "${SESSION_PID:-}" "${NEW_PID:-}" "${OLD_PID:-}" 2>/dev/null || true
}
trap cleanup EXIT
# shellcheck source=services/dataplane/bench/machine.sh
. services/dataplane/bench/machine.sh

# Starts a fixture; sets $2 to its pid and $3 to its URL. $1: its --protocol.
fixture() {
  local out
  out="$(mktemp)"
  RUST_LOG=warn "$BIN/mcp-fixture" --protocol "$1" --response-format json >"$out" 2>/dev/null &
  printf -v "$2" '%s' "$!"
  for _ in $(seq 1 100); do grep -q '^http' "$out" && break; sleep 0.1; done
  printf -v "$3" '%s' "$(grep -m1 '^http' "$out")"
}
fixture 2026-only STATELESS_PID STATELESS_URL
fixture 2025-only SESSION_PID SESSION_URL

# Starts a dataplane in front of both fixtures; $1: its binary, $2: its port, $3: its JWKS port,
# $4: the file it prints its URLs and tokens to. Prints its pid.
dataplane() {
  local wrap=()
  if [ "$CALLGRIND" = 1 ]; then
    wrap=(valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$OUT_DIR/callgrind.%p.out")
  fi
  "${wrap[@]}" "$1" --listen "127.0.0.1:$2" --jwks-port "$3" --workers "$DP_WORKERS" \
    --upstream "$STATELESS_URL" \
    --endpoint "stateless=$STATELESS_URL" --endpoint "session=$SESSION_URL" >"$4" 2>/dev/null &
  echo "$!"
}
NEW_OUT="$OUT_DIR/new.out" OLD_OUT="$OUT_DIR/old.out"
NEW_PID="$(dataplane "$BIN/examples/bench_dataplane" "$NEW_PORT" "$NEW_JWKS" "$NEW_OUT")"
[ -z "$OLD_BIN" ] || OLD_PID="$(dataplane "$OLD_BIN" "$OLD_PORT" "$OLD_JWKS" "$OLD_OUT")"
for _ in $(seq 1 1200); do
  grep -q '^pid=' "$NEW_OUT" && { [ -z "$OLD_BIN" ] || grep -q '^pid=' "$OLD_OUT"; } && break
  sleep 0.1
done
grep -q '^pid=' "$NEW_OUT" || { echo "the dataplane did not start: $NEW_OUT" >&2; exit 1; }
value() { sed -n "s/^$1=//p" "$2"; }

# One path through one dataplane. $1: label, $2: the dataplane's pid, $3: its output file,
# $4: the path (stateless, session, bridged).
measure() {
  local endpoint mode url token machine_before before after out
  case "$4" in
    stateless) endpoint=stateless mode=count ;;
    session) endpoint=session mode=session-count ;;
    bridged) endpoint=session mode=count ;;
  esac
  url="$(value "url_$endpoint" "$3")" token="$(value "token_$endpoint" "$3")"
  # Warm: the JWKS, the pin check, the connection pools, the bridged caller's upstream session.
  "$BIN/examples/loadgen" "$mode" "$url" 200 "$CONNS" "$token" "$TOOL" >/dev/null
  machine_before="$(machine_ticks)"
  if [ "$CALLGRIND" = 1 ]; then
    out="$(LOADGEN_BEFORE_CALLS="callgrind_control -z $2 >/dev/null 2>&1" \
      "$BIN/examples/loadgen" "$mode" "$url" "$CALLS" "$CONNS" "$token" "$TOOL")"
    callgrind_control -d "$1-$4" "$2" >/dev/null 2>&1
    local dump
    dump="$(ls -t "$OUT_DIR"/callgrind."$2".out.* | head -1)"
    after="$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")"
    printf '%-4s %-9s %12.0f instructions per call' "$1" "$4" "$(awk -v i="$after" -v n="$CALLS" 'BEGIN {print i / n}')"
    printf '  (%s)' "$(basename "$dump")"
  else
    out="$(LOADGEN_BEFORE_CALLS="awk '{print \$14 + \$15}' /proc/$2/stat >$OUT_DIR/before" \
      "$BIN/examples/loadgen" "$mode" "$url" "$CALLS" "$CONNS" "$token" "$TOOL")"
    after="$(cpu_ticks "$2")"
    before="$(cat "$OUT_DIR/before")"
    printf '%-4s %-9s %6s us CPU per call (%s ticks)' "$1" "$4" \
      "$(per_call "$((after - before))" "$CALLS")" "$((after - before))"
  fi
  printf '  %s  [%s]\n' "$(sed 's/^[a-z-]*: //' <<<"$out")" "$(machine_shares "$machine_before" "$(machine_ticks)")"
}

echo "dumps and outputs in $OUT_DIR"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for path in stateless session bridged; do
    measure new "$NEW_PID" "$NEW_OUT" "$path"
    if [ -n "$OLD_BIN" ] && [[ " $OLD_PATHS " == *" $path "* ]]; then
      measure old "$OLD_PID" "$OLD_OUT" "$path"
    fi
  done
done
