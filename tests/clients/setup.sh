#!/usr/bin/env bash
# Installs the official MCP SDK clients the end-to-end tests drive: npm packages into
# tests/clients/node_modules and a Python venv in tests/clients/.venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/@modelcontextprotocol/sdk ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import mcp' 2>/dev/null || [ requirements.txt -nt .venv/.installed ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi
echo "test clients ready: $(node --version), $(.venv/bin/python --version)"
