"""Shared by the op tests: tiny HF modules with weights large enough to matter, HF-style masks,
and the oracle against the HF module (float64 reference, HF in the op's dtype as baseline)."""

from __future__ import annotations

import copy

import torch

from oracle import assert_oracle, randomize  # noqa: F401  (re-exported to the op tests)


def padding_mask(batch: int, length: int, side: str, device) -> torch.Tensor | None:
    """HF's 2-D 1/0 attention_mask [batch, length]: None, or 'left'/'right' padding with random
    lengths in 1..length (row 0 always full)."""
    if side == "none":
        return None
    lengths = torch.randint(1, length + 1, (batch,))
    lengths[0] = length
    pos = torch.arange(length)[None, :]
    keep = pos < lengths[:, None] if side == "right" else pos >= (length - lengths)[:, None]
    return keep.to(device=device, dtype=torch.int64)


def visible(key_mask: torch.Tensor | None, batch: int, q_len: int, k_len: int, causal: bool, device) -> torch.Tensor:
    """[batch, q_len, k_len] bool: which key each query sees (causal aligned bottom-right)."""
    vis = torch.ones(batch, q_len, k_len, dtype=torch.bool, device=device)
    if key_mask is not None:
        vis &= key_mask[:, None, :].bool()
    if causal:
        i = torch.arange(q_len, device=device)[:, None]
        j = torch.arange(k_len, device=device)[None, :]
        vis &= j <= i + (k_len - q_len)
    return vis


def additive_mask(vis: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D additive mask [batch, 1, q_len, k_len] a HF model hands its attention layers."""
    zero = torch.zeros((), dtype=dtype, device=vis.device)
    return torch.where(vis, zero, torch.finfo(dtype).min)[:, None]


def hf_runs(module: torch.nn.Module, run, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, baseline): run(copy of module, dtype) in float64 and in `dtype`. `run` casts
    its own float inputs to the dtype it is given."""
    with torch.no_grad():
        ref = run(copy.deepcopy(module).double(), torch.float64)
        base = run(copy.deepcopy(module).to(dtype), dtype)
    return ref, base


def check(out: torch.Tensor, ref: torch.Tensor, base: torch.Tensor, rows: torch.Tensor | None = None, what="output"):
    """The oracle on the rows that are defined (rows: bool [batch, seq]; None = all)."""
    if rows is not None:
        out, ref, base = out[rows], ref[rows], base[rows]
    assert_oracle(out, ref, base, what=what)


def same_twice(first: torch.Tensor, second: torch.Tensor) -> None:
    """A second run gives bit-identical results (no race, no state carried between calls)."""
    assert torch.equal(first, second), "a second run of the op differs from the first"
