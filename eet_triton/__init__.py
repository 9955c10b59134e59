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

__all__ += ["ModelSpec", "load"]


def __getattr__(name: str):
    # load and ModelSpec bring in triton, the kernels, the ops and the maps: imported on first use,
    # so `import eet_triton` stays light and a half-written kernel elsewhere does not break it
    if name == "load":
        from eet_triton.api import load

        return load
    if name == "ModelSpec":
        from eet_triton.models.spec import ModelSpec

        return ModelSpec
    raise AttributeError(f"module 'eet_triton' has no attribute {name!r}")


# layer-by-layer precision comparison against transformers; light to import (transformers loads on call)
from eet_triton.tools.compare import compare  # noqa: E402

__all__ += ["compare"]
