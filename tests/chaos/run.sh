#!/usr/bin/env bash
# Chaos run (docs/reliability.md): a private PostgreSQL and Redis, a control API, two dataplanes
# and a usage-worker as separate processes; tool calls at a fixed rate through both dataplanes
# while the usage-worker is killed 10 times, Redis 3 times and PostgreSQL restarted twice; then
# the events, usage totals, audit chains and refusals are checked. About 12 minutes.
#   tests/chaos/run.sh                       debug build, full run
#   tests/chaos/run.sh --release             release build
#   tests/chaos/run.sh --quick               a smoke run of about 2 minutes
#   tests/chaos/run.sh --keep --report r.json   keep the logs and data, write the figures as JSON
# Needs: PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin), redis-server, redis-cli,
# psql, python3. Uses free ports only; never touches the PostgreSQL or Redis on standard ports.
# Exits 0 only when every target is met.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=debug
args=()
for arg in "$@"; do
  case "$arg" in
    --release) profile=release ;;
    *) args+=("$arg") ;;
  esac
done
flags=()
[ "$profile" = release ] && flags+=(--release)
cargo build "${flags[@]}" -p gatehouse -p gatehouse-mcp-fixture --bins >&2
bin="${CARGO_TARGET_DIR:-target}/$profile"
exec python3 tests/chaos/chaos.py --gatehouse "$bin/gatehouse" --fixture "$bin/mcp-fixture" "${args[@]}"
