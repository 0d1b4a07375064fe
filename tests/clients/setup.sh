#!/usr/bin/env bash
# Installs the independent clients and servers the Rust tests drive (idempotent). Run once after
# cloning and whenever package.json or requirements.txt change; CI runs it before the tests.
set -euo pipefail
cd "$(dirname "$0")"
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
if [ -f requirements.txt ]; then
  [ -d .venv ] || python3 -m venv .venv
  .venv/bin/pip install --quiet -r requirements.txt
fi
# The MCP conformance suite and Node 22 (their own package; see conformance/package.json).
conformance/setup.sh
