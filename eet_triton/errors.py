"""One error family. Every message says what was expected, what came, and what to do."""


class EETError(Exception):
    """Base of every error eet_triton raises on purpose."""


class ShapeError(EETError, ValueError):
    """A tensor has the wrong rank or size."""


class DTypeError(EETError, TypeError):
    """A tensor has a dtype the kernel or model does not take."""


class DeviceError(EETError, ValueError):
    """Tensors are on the wrong device, or on different devices."""


class SequenceTooLongError(ShapeError):
    """A sequence is longer than the model's position table."""


class UnsupportedModelError(EETError, ValueError):
    """No structure map covers this architecture, or a HF module cannot be lifted."""


class MappingError(EETError, ValueError):
    """A YAML structure map is malformed or does not fit the checkpoint."""


class CheckpointError(EETError, ValueError):
    """A checkpoint is missing, incomplete, corrupt, or holds keys nothing uses."""


class GraphCaptureError(EETError, RuntimeError):
    """A kernel met a new shape inside a caller's CUDA graph capture: tuning it would need the GPU
    synchronised and timed, which a capture forbids (and a failed capture can leave torch's CUDA
    state unusable for the rest of the process)."""
