#!/usr/bin/env bash
# The main job: installs into .venv, then runs `eet-triton demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/eet-triton demo "$@"
