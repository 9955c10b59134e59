"""eet_triton: HuggingFace transformer inference with every GPU kernel written in Triton."""

from eet_triton._backend import INTERPRET  # first: picks the interpreter before triton loads
from eet_triton.errors import (
    CheckpointError,
    DeviceError,
    DTypeError,
    EETError,
    GraphCaptureError,
    MappingError,
    SequenceTooLongError,
    ShapeError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

__all__ = [
    "INTERPRET",
    "CheckpointError",
    "DeviceError",
    "DTypeError",
    "EETError",
    "GraphCaptureError",
    "MappingError",
    "SequenceTooLongError",
    "ShapeError",
    "UnsupportedModelError",
]

# The model API loads triton, the kernels and transformers: imported on first use, so that
# `import eet_triton` (and its interpreter switch) stays cheap.
_LAZY = {
    "load": "eet_triton.api",
    "ModelSpec": "eet_triton.models.spec",
    "compare": "eet_triton.tools.compare",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eet_triton' has no attribute {name!r}")
