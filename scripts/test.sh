#!/usr/bin/env bash
# Installs everything into .venv and runs the test suite (CPU: Triton interpreter; GPU: compiled).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
