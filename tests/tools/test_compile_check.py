"""scripts/compile_check.py compiles kernels for Hopper without a GPU. It leans on Triton internals
(the driver hook, JITFunction.run), so this runs it on one small family to catch a Triton release
that moves them; and checks the programs-per-SM arithmetic it reports."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "compile_check.py"


def _has_nvidia_backend() -> bool:
    import triton

    return (Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump").exists()


@pytest.mark.skipif(not _has_nvidia_backend(), reason="this Triton build has no NVIDIA backend tools")
def test_compiles_layer_norm_for_sm90_without_a_gpu():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--families", "layernorm"], capture_output=True,
                         text=True, timeout=600, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = [line for line in run.stdout.splitlines() if line.startswith("_layer_norm_kernel")]
    assert lines and all(" regs " in line and "/SM" in line for line in lines)
    assert run.stdout.rstrip().endswith("0 failed")


def test_programs_per_sm():
    spec = importlib.util.spec_from_file_location("compile_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no Triton: that waits for main()
    fit = module.programs_per_sm
    assert fit(168, 4, 65552) == 3  # 128x128x64 w4 s2 GEMM, quick_gelu epilogue: three per SM
    assert fit(249, 4, 65552) == 2  # the same tile with a residual epilogue: registers allow two
    assert fit(180, 2, 24576) == 5 and fit(128, 2, 24576) == 8  # attention 32x64 w2 s2 as compiled, capped at 128
    assert fit(40, 4, 200_000) == 1 and fit(16, 1, 0) == 32  # shared memory bound; the 32-program cap
