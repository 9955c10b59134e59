"""eet_triton: HuggingFace transformer inference with every GPU kernel written in Triton."""

from eet_triton._backend import INTERPRET  # first: picks the interpreter before triton loads
from eet_triton.errors import (
    CheckpointError,
    DeviceError,
    DTypeError,
    EETError,
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
    "MappingError",
    "SequenceTooLongError",
    "ShapeError",
    "UnsupportedModelError",
]

from eet_triton.api import load  # noqa: E402  (after INTERPRET: it imports triton)
from eet_triton.models.spec import ModelSpec  # noqa: E402

__all__ += ["ModelSpec", "load"]
