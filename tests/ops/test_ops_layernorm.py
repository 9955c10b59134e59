"""EETLayerNorm against nn.LayerNorm, T5LayerNorm, nn.RMSNorm and LlamaRMSNorm, with the fused residual."""

from __future__ import annotations

import pytest
import torch
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from transformers.models.t5.modeling_t5 import T5LayerNorm

from _ops_helpers import check, hf_runs, randomize, same_twice
from eet_triton.errors import DTypeError, ShapeError, UnsupportedModelError
from eet_triton.ops import EETLayerNorm, from_torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
NORMS = {
    "LayerNorm": (lambda: torch.nn.LayerNorm(40, eps=1e-5), False, True),
    "LayerNorm-no-bias": (lambda: torch.nn.LayerNorm(40, eps=1e-6, bias=False), False, False),
    "T5LayerNorm": (lambda: T5LayerNorm(40, eps=1e-6), True, False),
    "RMSNorm": (lambda: torch.nn.RMSNorm(40, eps=1e-6), True, False),
    "LlamaRMSNorm": (lambda: LlamaRMSNorm(40, eps=1e-5), True, False),
}


@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NORMS))
def test_norm_matches_torch(device, name, dtype, with_residual):
    make, rms, has_bias = NORMS[name]
    hf = randomize(make()).to(device)
    op = EETLayerNorm.from_torch(hf, dtype=dtype)
    assert op.rms == rms and (op.bias is not None) == has_bias
    x = (3 * torch.randn(3, 7, 40, device=device) + 1).to(dtype)
    r = torch.randn(3, 7, 40, device=device).to(dtype)
    if with_residual:
        out, s = op(x, residual=r)
        same_twice(out, op(x, residual=r)[0])
        # s: the sum rounded to the dtype, as torch's x + r (the interpreter rounds bf16 towards zero,
        # so an exact comparison would only hold on the GPU)
        check(s, x.double() + r.double(), x + r, what="residual sum")
        ref, base = hf_runs(hf, lambda m, dt: m((x.to(dt) + r.to(dt))), dtype)
    else:
        out = op(x)
        same_twice(out, op(x))
        ref, base = hf_runs(hf, lambda m, dt: m(x.to(dt)), dtype)
    check(out, ref, base)


def test_contract_and_errors(device):
    op = from_torch(torch.nn.LayerNorm(40))
    assert isinstance(op, EETLayerNorm) and set(op.state_dict()) == {"weight", "bias"}
    assert EETLayerNorm.from_torch(T5LayerNorm(40)).bias is None
    empty = EETLayerNorm.empty(40, bias=False, rms=True, dtype=torch.float32, device=device)
    assert set(empty.state_dict()) == {"weight"} and empty.bias is None
    with pytest.raises(UnsupportedModelError, match="Gemma"):
        EETLayerNorm.from_torch(GemmaRMSNorm(40))
    with pytest.raises(UnsupportedModelError, match="elementwise_affine"):
        EETLayerNorm.from_torch(torch.nn.LayerNorm(40, elementwise_affine=False))
    ln = EETLayerNorm.from_torch(torch.nn.LayerNorm(40).to(device))
    with pytest.raises(ShapeError, match="hidden size 40"):
        ln(torch.randn(2, 39, device=device))
    with pytest.raises(DTypeError, match="float16"):
        ln(torch.randn(2, 40, device=device).half())
