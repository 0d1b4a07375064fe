#!/usr/bin/env bash
# Fuzzes the dataplane's request parser and header/body validator (fuzz_targets/mcp_request.rs).
#   fuzz/run.sh --install-only   install cargo-fuzz and build the target
#   fuzz/run.sh SECONDS          fuzz for SECONDS (CI: 60); fails on any crash
set -euo pipefail
cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
rustup toolchain list | grep -q '^nightly' || { echo "the nightly toolchain is needed: rustup toolchain install nightly" >&2; exit 1; }
# The fuzz build has its own profile and toolchain: keep it apart from the workspace's target dir.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
cargo +nightly fuzz build mcp_request
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi
seconds="${1:-60}"
mkdir -p corpus/mcp_request
# A few valid requests to start from.
seed() { printf '%s' "$2" > "corpus/mcp_request/$1"; }
seed call "$(printf '\x2a')mcp-method:tools/call
mcp-name:echo
host:x{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"r\":\"eu\"}}}"
seed list "$(printf '\x10')mcp-method:tools/list{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/list\",\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}"
seed b64 "$(printf '\x2c')mcp-method:prompts/get
mcp-name:=?base64?w6k=?={\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"prompts/get\",\"params\":{\"name\":\"é\"}}"
seed batch "$(printf '\x01')x[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"},{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}]"
cargo +nightly fuzz run mcp_request corpus/mcp_request -- -max_total_time="$seconds" -rss_limit_mb=2048
echo "fuzzing: ${seconds}s, no crashes"
