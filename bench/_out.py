"""Where the bench scripts leave their results: $EET_BENCH_OUT when set (scripts/gpu_suite.sh sets
it to the device call's $OUT and prints every summary_*.md there last)."""

from __future__ import annotations

import os
from pathlib import Path


def save(name: str, text: str) -> None:
    """Write `text` to $EET_BENCH_OUT/`name`; nothing when EET_BENCH_OUT is unset."""
    out = os.environ.get("EET_BENCH_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, name).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
