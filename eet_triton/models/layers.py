"""Building blocks of the generic architectures: a dense layer over the linear kernel, and one
transformer layer (attention op + feed-forward op)."""

from __future__ import annotations

import torch
from torch import nn

from eet_triton.kernels.linear import canonical_activation, linear
from eet_triton.models.spec import ModelSpec
from eet_triton.ops import EETFeedforward, EETLayerNorm, EETSelfAttention, EETSelfMaskedAttention
from eet_triton.ops._base import empty


class Dense(nn.Module):
    """y = act(x @ weight.T + bias): poolers, classifiers, projections.

    weight [out, in], bias [out] or None; activation a HF name the linear kernel fuses in its
    epilogue ('tanh' for the poolers).
    forward(x [..., in]) -> [..., out] in the weights' dtype.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, activation: str | None = None,
                 dtype: torch.dtype, device):
        super().__init__()
        self.weight = nn.Parameter(empty(out_features, in_features, dtype=dtype, device=device), requires_grad=False)
        self.bias = (nn.Parameter(empty(out_features, dtype=dtype, device=device), requires_grad=False)
                     if bias else None)
        self.activation = canonical_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias, activation=self.activation)

    def extra_repr(self) -> str:
        out, inp = self.weight.shape
        return f"{inp} -> {out}, bias={self.bias is not None}, activation={self.activation}"


def layer_norm(spec: ModelSpec, size: int, *, dtype: torch.dtype, device) -> EETLayerNorm:
    return EETLayerNorm.empty(size, bias=spec.norm_kind == "layernorm", eps=spec.norm_eps,
                              rms=spec.norm_kind == "rmsnorm", dtype=dtype, device=device)


class EncoderLayer(nn.Module):
    """One transformer layer: `attention` (residual inside, norm pre or post) then `ffn` (same).

    forward(h [B, L, hidden], attention_mask [B, L] 1/0 or None) -> [B, L, hidden].
    """

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device):
        super().__init__()
        alloc = dict(dtype=dtype, device=device)
        op = EETSelfMaskedAttention if spec.causal else EETSelfAttention
        self.attention = op.empty(spec.hidden_size, spec.num_heads, spec.head_dim, qkv_bias=spec.qkv_bias,
                                  out_bias=spec.out_bias, scale=spec.attention_scale,
                                  norm=layer_norm(spec, spec.hidden_size, **alloc), norm_position=spec.norm_position,
                                  residual=True, **alloc)
        self.ffn = EETFeedforward.empty(spec.hidden_size, spec.ffn_size, spec.activation, up_bias=spec.ffn_bias,
                                        down_bias=spec.ffn_bias, gated=spec.gated_ffn, gate_bias=spec.ffn_bias,
                                        norm=layer_norm(spec, spec.hidden_size, **alloc),
                                        norm_position=spec.norm_position, residual=True, **alloc)
        self.causal = spec.causal

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.causal:
            h, _ = self.attention(h, attention_mask)
        else:
            h = self.attention(h, attention_mask)
        return self.ffn(h)
