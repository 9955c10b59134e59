"""Elementwise activations for kernel epilogues, and the HuggingFace names that map to them.

`apply_activation` works on fp32 values (a GEMM accumulator) so the activation
is computed once at full precision and the result is rounded once on store.
"""

from __future__ import annotations

import triton
import triton.language as tl

from eet_triton.errors import UnsupportedModelError

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


@triton.jit
def apply_activation(y, ACTIVATION: tl.constexpr):
    """ACTIVATION (a canonical name, or None) applied to fp32 `y`, with torch's formulas."""
    if ACTIVATION == "gelu":
        y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))
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
