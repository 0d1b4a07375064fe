#!/usr/bin/env bash
# Installs the clients the Rust tests drive (run by CI before the tests). Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
conformance/setup.sh
