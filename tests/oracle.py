"""The test oracle from DESIGN.md, in one place.

A result in fp16/bf16 may be off the high-precision reference by at most twice
what the reference computation itself loses in that dtype (the `baseline`: the
same torch or transformers computation run in the low dtype), plus a floor of a
couple of units in the last place of the output's scale. fp32 results are held
to the same rule with fp32 baselines, which makes them tight.
"""

from __future__ import annotations

import math

import torch

# About two units in the last place of each dtype: the floor under the 2x rule.
_FLOOR = {torch.float32: 2.5e-7, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def max_abs_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x.double().cpu() - ref.double().cpu()).abs().max().item() if x.numel() else 0.0


def nan_like(t: torch.Tensor) -> torch.Tensor:
    """An output buffer poisoned with NaN, so an element the kernel never writes shows."""
    return torch.full_like(t, float("nan"))


def assert_oracle(out: torch.Tensor, ref: torch.Tensor, baseline: torch.Tensor | None = None, *, what: str = "output"):
    """out: our result; ref: float64 (kernels) or float32 (HF modules) reference;
    baseline: the reference computation in out's dtype (None: held to the floor alone)."""
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    assert torch.isfinite(out).all(), f"{what}: has NaN/inf (an unwritten or overflowed element)"
    scale = max(ref.double().abs().max().item(), 1.0) if ref.numel() else 1.0
    allowed = _FLOOR[out.dtype] * scale
    if baseline is not None:
        allowed += 2 * max_abs_err(baseline, ref)
    err = max_abs_err(out, ref)
    assert err <= allowed, f"{what}: max abs error {err:.3g} > allowed {allowed:.3g} (dtype {out.dtype})"


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Fresh random weights of unit-ish gain, in place; returns the module in eval mode. HF's init
    (std 0.02) makes attention nearly uniform and outputs nearly zero, which would let wrong
    masks or scales pass."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.2)
    return module.eval()
