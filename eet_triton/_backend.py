"""Chooses how Triton kernels run, before anything imports `triton`.

On a machine without CUDA the kernels run in Triton's interpreter
(`TRITON_INTERPRET=1`): numerically the same programs, executed with numpy on
CPU tensors. That keeps `device="cpu"` working for tests and demos; it is slow,
so it is for tiny shapes only.
"""

import os
import warnings

import torch


class InterpreterWarning(UserWarning):
    """Kernels run in Triton's CPU interpreter: correct but slow."""


def _choose() -> bool:
    if os.environ.get("EET_TRITON_COMPILE_ONLY") == "1":
        # scripts/compile_check.py: compiled mode without CUDA, to compile kernels, never to run them
        os.environ["TRITON_INTERPRET"] = "0"
        return False
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True
    if torch.cuda.is_available():
        return False
    os.environ["TRITON_INTERPRET"] = "1"
    warnings.warn(
        "eet_triton: no CUDA device found, so Triton kernels run in the CPU interpreter "
        "(TRITON_INTERPRET=1). Results are exact but slow; use tiny shapes, device='cpu'.",
        InterpreterWarning,
        stacklevel=3,
    )
    return True


INTERPRET: bool = _choose()
