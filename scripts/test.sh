#!/usr/bin/env bash
# README test command: set up (idempotent), lint, then the default test suite (warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
python -m pytest -n 2 "$@"
