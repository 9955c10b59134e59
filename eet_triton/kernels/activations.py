"""Elementwise activations for kernel epilogues, and the HuggingFace names that map to them.

`apply_activation` works on fp32 values (a GEMM accumulator) so the activation
is computed once at full precision and the result is rounded once on store.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from eet_triton.errors import UnsupportedModelError
from eet_triton.kernels._common import COMPILED

# HuggingFace `hidden_act` / `activation_function` spellings -> our canonical names. Only names whose
# function is exactly one of ours are listed: gelu_fast's 0.7978845608 equals sqrt(2/pi) to 3.6e-12
# relative, far below fp32 resolution, so it is tanh-gelu; gelu_10, relu6, mish... are left out.
_ALIASES = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "quick_gelu": "quick_gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
}

ACTIVATIONS: tuple[str, ...] = tuple(_ALIASES)
"""Every activation name the kernels accept (ours and the HuggingFace spellings of the same functions)."""


def canonical_activation(name: str | None) -> str | None:
    """Map a HuggingFace hidden_act / activation_function name to ours: 'gelu' (erf),
    'gelu_tanh', 'quick_gelu', 'relu', 'silu', 'tanh' (poolers), or None for no activation.

    Raises UnsupportedModelError for any other name (and for non-string values)."""
    if name is None:
        return None
    canonical = _ALIASES.get(name) if isinstance(name, str) else None
    if canonical is None:
        raise UnsupportedModelError(
            f"activation {name!r} is not supported; expected one of {', '.join(ACTIVATIONS)} (or None). "
            "Use a model whose activation is one of these, or add the function to eet_triton/kernels/activations.py."
        )
    return canonical


# The erf gelu of fp16/bf16 outputs by gelu_lean (below) rather than libdevice's erff. A switch so that
# bench_switch.py can time both in one process; fp32 outputs always take erff.
LEAN_GELU = True


def kernel_activation(name: str | None, out_dtype: torch.dtype) -> str | None:
    """The ACTIVATION constexpr a kernel computes the canonical activation `name` by, for outputs
    of `out_dtype`: "gelu_lean" for the erf gelu of fp16/bf16 outputs, else `name`."""
    if name == "gelu" and LEAN_GELU and out_dtype in (torch.float16, torch.bfloat16):
        return "gelu_lean"
    return name


_TWO_TO_MINUS_64 = tl.constexpr(2.0**-64)


@triton.jit
def _rcp_approx(x):
    """1 / x by the SFU's rcp.approx (1 ulp), without the IEEE division's range fix-ups."""
    if COMPILED:
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return 1.0 / x


@triton.jit
def _exp2_approx(x):
    """2^x by ex2.approx (2 ulp), flushing subnormal results to zero (tl.exp2 adds a range fix-up)."""
    if COMPILED:
        return tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.exp2(x)


@triton.jit
def _gelu_lean(y):
    """y Phi(y) for fp16/bf16 outputs, in ~12 FP32 instructions and 2 SFU ones a value against ~27 and
    1 for libdevice's erff (whose two branches run in every warp). In a GEMM epilogue the erff was half
    again the GEMM's time (H100, 4096x768x3072: 33.6 us with bias only, 51.3 with gelu); this takes 46.4
    (NOTES linear run 13).
    Phi(y) = 1 - h(|y|) for y >= 0 and h(|y|) below, h(a) = phi(a) R(a), R = (1 - Phi) / phi the Mills
    ratio, fitted as t P(t), t = 1 / (1 + 0.36 a), P of degree 6 (our minimax fit of R's relative
    error over a in [0, 14]: 8.7e-7). No cancellation in either tail; evaluated in fp32 the result is
    within 1 ulp of the correctly rounded fp16/bf16 gelu (7e-6 relative at y = -13, from the exponent's
    rounding), where torch's 0.5 y (1 + erf(y / sqrt 2)) cancels for y < -3."""
    a = tl.abs(y)
    t = _rcp_approx(1.0 + 0.36000001430511475 * a)
    # exp(-y^2 / 2) times 2^64, so that it stays a normal float down to y = -16 (ex2.approx flushes
    # subnormal results, which took bf16 outputs below y = -13.2 to zero); P's coefficients carry 2^-64
    # and 1 / sqrt(2 pi), and h itself may be subnormal
    phi = _exp2_approx((y * -0.7213475204444817) * y + 64.0)
    p = 0.04705607518553734 * _TWO_TO_MINUS_64
    p = p * t - 0.17976397275924683 * _TWO_TO_MINUS_64
    p = p * t + 0.18095307052135468 * _TWO_TO_MINUS_64
    p = p * t + 0.026549935340881348 * _TWO_TO_MINUS_64
    p = p * t + 0.13971905410289764 * _TWO_TO_MINUS_64
    p = p * t + 0.14177249372005463 * _TWO_TO_MINUS_64
    p = p * t + 0.14371304214000702 * _TWO_TO_MINUS_64
    h = phi * (p * t)
    return y * tl.where(y >= 0, 1.0 - h, h)


@triton.jit
def apply_activation(y, ACTIVATION: tl.constexpr):
    """ACTIVATION (a name kernel_activation returns, or None) applied to fp32 `y`, with torch's formulas."""
    if ACTIVATION == "gelu":
        y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))
    elif ACTIVATION == "gelu_lean":
        y = _gelu_lean(y)
    elif ACTIVATION == "gelu_tanh":
        # 0.5 * (1 + tanh(u)) == sigmoid(2u): no tanh needed, and no cancellation in 1 + tanh(u) for
        # large negative inputs. 1.5957691216057308 = 2 * sqrt(2 / pi).
        y = y * tl.sigmoid(1.5957691216057308 * (y + 0.044715 * y * y * y))
    elif ACTIVATION == "quick_gelu":
        y = y * tl.sigmoid(1.702 * y)
    elif ACTIVATION == "relu":
        y = tl.maximum(y, 0.0)
    elif ACTIVATION == "silu":
        y = y * tl.sigmoid(y)
    elif ACTIVATION == "tanh":
        # tanh(y) = 2 sigmoid(2y) - 1: tl has no tanh in every Triton we support
        y = 2.0 * tl.sigmoid(2.0 * y) - 1.0
    return y
