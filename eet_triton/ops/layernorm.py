"""EETLayerNorm: LayerNorm or RMSNorm (T5LayerNorm), bias optional, optional fused residual add."""

from __future__ import annotations

import torch
from torch import nn

from eet_triton.kernels.layernorm import layer_norm
from eet_triton.ops._base import EETOp, as_param, class_name, copy_of, empty, module_placement, unsupported

# RMSNorms that scale by (1 + weight) instead of weight: lifting them as plain RMSNorm would be wrong.
_OFFSET_RMSNORMS = ("Gemma",)


class EETLayerNorm(EETOp):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, or with rms=True (T5, Llama):
    y = x / sqrt(mean(x^2) + eps) * weight.

    Parameters (the checkpoint-mapping contract): `weight` [N]; `bias` [N] or None.

    Construction:
      - `EETLayerNorm(weight, bias=None, eps=1e-5, rms=False)` takes the tensors as they are (no copy);
      - `EETLayerNorm.empty(N, bias=True, eps=1e-5, rms=False, dtype=..., device=...)` allocates
        uninitialised parameters for a loader to fill;
      - `EETLayerNorm.from_torch(module, dtype=None, device=None)` copies nn.LayerNorm, nn.RMSNorm,
        T5LayerNorm, or any *RMSNorm with `weight` and `eps`/`variance_epsilon`.

    forward(x [..., N], residual=None) -> y [..., N] in the weights' dtype (fp16, bf16, fp32).
    With residual [..., N]: normalises s = x + residual and returns (y, s).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5, rms: bool = False):
        super().__init__()
        self.weight = as_param(weight)
        self.bias = as_param(bias)
        self.eps = float(eps)
        self.rms = bool(rms)
        self.hidden_size = weight.shape[-1]

    @classmethod
    def empty(cls, hidden_size: int, *, bias: bool = True, eps: float = 1e-5, rms: bool = False,
              dtype: torch.dtype = torch.float16, device="cuda") -> EETLayerNorm:
        weight = empty(hidden_size, dtype=dtype, device=device)
        return cls(weight, empty(hidden_size, dtype=dtype, device=device) if bias else None, eps, rms)

    @classmethod
    def from_torch(cls, module: nn.Module, dtype: torch.dtype | None = None, device=None) -> EETLayerNorm:
        dtype, device = module_placement(module, dtype, device)
        name = class_name(module)
        if isinstance(module, nn.LayerNorm) and module.weight is not None:
            return cls(copy_of(module.weight, dtype, device), copy_of(module.bias, dtype, device), module.eps)
        is_rms = isinstance(module, getattr(nn, "RMSNorm", ())) or name == "T5LayerNorm" or name.endswith("RMSNorm")
        if is_rms and not name.startswith(_OFFSET_RMSNORMS) and getattr(module, "weight", None) is not None:
            eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
            if eps is None:  # nn.RMSNorm(eps=None) means the dtype's machine epsilon
                eps = torch.finfo(dtype).eps
            return cls(copy_of(module.weight, dtype, device), None, eps, rms=True)
        raise unsupported("EETLayerNorm", module, "nn.LayerNorm (with elementwise_affine), nn.RMSNorm, "
                          "T5LayerNorm, *RMSNorm scaling by `weight` (not Gemma's 1 + weight)")

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        self._check_hidden("x", x, self.hidden_size, ndim=tuple(range(1, 9)))
        if residual is not None:
            self._check_hidden("residual", residual, self.hidden_size, ndim=x.dim())
        return layer_norm(x, self.weight, self.bias, eps=self.eps, rms=self.rms, residual=residual)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, eps={self.eps}, rms={self.rms}, bias={self.bias is not None}"
