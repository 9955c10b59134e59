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
