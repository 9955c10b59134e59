"""What every op shares: copying HF weights in, allocating empty skeletons, and
checking forward inputs with errors that say what to do."""

from __future__ import annotations

import torch
from torch import nn

from eet_triton.errors import DeviceError, DTypeError, ShapeError, UnsupportedModelError


def module_placement(module: nn.Module, dtype=None, device=None) -> tuple[torch.dtype, torch.device]:
    """The dtype/device to copy `module`'s weights to: the given ones, else the module's own."""
    first = next(module.parameters(), None)
    if first is None:
        first = next(module.buffers(), None)
    dtype = dtype if dtype is not None else (first.dtype if first is not None else torch.float32)
    device = torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
    return dtype, device


def as_param(t: torch.Tensor | None) -> nn.Parameter | None:
    """`t` (not copied) as a contiguous parameter that never asks for gradients."""
    if t is None:
        return None
    return nn.Parameter(t.detach().contiguous(), requires_grad=False)


def copy_of(t: torch.Tensor | None, dtype: torch.dtype, device) -> torch.Tensor | None:
    """A private copy of a HF weight in the op's dtype and device."""
    if t is None:
        return None
    return t.detach().to(device=device, dtype=dtype, copy=True)


def empty(*shape: int, dtype: torch.dtype, device) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device=device)


def unsupported(op: str, module: nn.Module, supported: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{op}.from_torch: cannot lift a {type(module).__name__}; supported: {supported}. "
        f"Build the op from tensors with {op}(...) or {op}.empty(...) for other modules"
    )


def class_name(module: nn.Module) -> str:
    return type(module).__name__


class EETOp(nn.Module):
    """Base of the ops: the dtype and device its weights live on, and input checks."""

    def _anchor(self) -> torch.Tensor:
        return next(self.parameters())

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor().dtype

    @property
    def device(self) -> torch.device:
        return self._anchor().device

    def _check_hidden(self, name: str, x: torch.Tensor, size: int, *, ndim: int | tuple[int, ...] = 3) -> None:
        """x: [..., size] in the op's dtype, on the op's device."""
        op = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.dim() not in allowed:
            raise ShapeError(
                f"{op}: {name} must have {' or '.join(map(str, allowed))} dims "
                f"([batch, seq_len, {size}]), got shape {list(x.shape)}"
            )
        if x.shape[-1] != size:
            raise ShapeError(f"{op}: {name} must end in the hidden size {size}, got shape {list(x.shape)}")
        if x.dtype != self.dtype:
            raise DTypeError(f"{op}: {name} has dtype {x.dtype} but the op's weights are {self.dtype}; cast with .to({self.dtype})")
        if x.device != self.device:
            raise DeviceError(f"{op}: {name} is on {x.device} but the op's weights are on {self.device}; move it with .to('{self.device}')")

    def _check_mask(self, name: str, mask: torch.Tensor | None, batch: int, length: int) -> None:
        """mask: None or [batch, length], HF's 2-D 1 = attend / 0 = padding."""
        if mask is None:
            return
        op = type(self).__name__
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor or None, got {type(mask).__name__}")
        if mask.dim() != 2 or tuple(mask.shape) != (batch, length):
            raise ShapeError(
                f"{op}: {name} must be HF's 2-D 1/0 mask of shape [{batch}, {length}], got {list(mask.shape)}; "
                "pass the tokenizer's attention_mask, not an expanded 4-D additive mask"
            )
        if mask.device != self.device:
            raise DeviceError(f"{op}: {name} is on {mask.device} but the op is on {self.device}; move it with .to('{self.device}')")
