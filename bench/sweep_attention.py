"""Time every attention config on the models' own attention shapes: what tuning/attention.yaml should hold.

    PYTHONPATH=. python3 bench/sweep_attention.py [--ablate]

Shapes (fp16, head_dim 64, q/k/v strided views of one fused [B, L, 3, H, D] QKV output as inside
the models): CLIP ViT-B/32 text (77 tokens, 8 heads, causal, padding mask with one padded row)
and vision (50 tokens, 12 heads) at batch 32 and 128, BERT-base (128 tokens, 12 heads, padding
mask) at batch 32; masks are bool, as the encoders pass them. Each config of
tuning/attention.yaml, plus the extra candidates below, is
forced (pruning off) and timed by CUDA-graph replay (median); SDPA on contiguous [B, H, L, D]
(its best case, mask as a boolean [B, 1, Lq, Lk]) beside it. The floor is the bytes q, k, v and
out move once, at ~3 TB/s. With EET_BENCH_OUT set the table also goes to summary_sweep_attention.md.

--ablate: CLIP text b128 only, with each of its features changed in turn (the padding mask's dtype,
or an additive bias instead, or none; no causal mask; 77 -> 64 tokens), for the leading configs, with each compiled kernel's
registers, spills and shared memory: what makes it cost twice vision's time for the same bytes.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
import triton

from bench.sweep_linear import graph_us
from eet_triton.kernels._common import tuning_configs
from eet_triton.kernels.attention import _attention_kernel, attention
from bench._out import save

COPY_TBS = 3.0
D = 64
# name, batch, tokens, heads, causal, padded (one row of the batch padded to half length)
SHAPES = [
    ("CLIP text b32", 32, 77, 8, True, True),
    ("CLIP text b128", 128, 77, 8, True, True),
    ("CLIP vision b32", 32, 50, 12, False, False),
    ("CLIP vision b128", 128, 50, 12, False, False),
    ("BERT b32", 32, 128, 12, False, True),
]
# Candidates beyond tuning/attention.yaml (the sweep that filled it also tried the first three;
# they lost). The capped ones (maxnreg): at these lengths a program is short and latency-bound,
# and registers allow only 3-5 per SM (scripts/compile_check.py: 64x32 w4 s3 128 registers, 4/SM;
# capped at 96, no spill, 5/SM; 32x64 w2 s2 180 -> 128 with 144 spilled bytes, 5 -> 8/SM). Timed in
# attention run 6 (bench/NOTES.md): within 0.3 us of the uncapped twins; the one that won
# (64x64 w4 s1 capped at 128) is in the YAML.
EXTRA = [
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=4, num_stages=1),
    triton.Config({"BLOCK_M": 128, "BLOCK_N": 128}, num_warps=8, num_stages=1),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 128}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=3, maxnreg=96),
    triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=3, maxnreg=80),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=2, num_stages=2, maxnreg=128),
]
ABLATE_EXTRA = [
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 32}, num_warps=2, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=2, num_stages=1),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=2, num_stages=3),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 64}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 128}, num_warps=4, num_stages=2),
    triton.Config({"BLOCK_M": 32, "BLOCK_N": 128}, num_warps=2, num_stages=1),
]


def describe(c):
    cap = f" r{c.maxnreg}" if getattr(c, "maxnreg", None) else ""
    return f"M{c.kwargs['BLOCK_M']} N{c.kwargs['BLOCK_N']} w{c.num_warps} s{c.num_stages}{cap}"


def _time_forced(config, run, label: str) -> float | None:
    """Graph us of `run` with the attention kernel forced to `config` (pruning off), or None (and a
    report) when the config does not compile for this shape. `run` has run once on return."""
    _attention_kernel.configs, _attention_kernel.early_config_prune = [config], None
    _attention_kernel.cache.clear()
    try:
        run()
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001  (a config that does not compile for this shape)
        print(f"{label}: {describe(config)} failed: {type(exc).__name__}: {str(exc)[:120]}")
        return None
    return graph_us(run)


def _kernel_resources():
    """Registers, spills and shared memory of the attention kernel compiled last (best effort:
    Triton's cache layout is not an API)."""
    try:
        for cache in _attention_kernel.fn.device_caches.values():
            kernel = list(cache[0].values())[-1]
            return f"regs {kernel.n_regs} spills {kernel.n_spills} smem {kernel.metadata.shared}"
    except Exception as exc:  # noqa: BLE001
        return f"(resources unknown: {type(exc).__name__})"
    return ""


def ablate():
    """CLIP text b128 with its features removed or changed one at a time (see the module docstring)."""
    B, H = 128, 8
    keep = {"M32 N64 w2 s2", "M32 N32 w2 s2", "M64 N32 w4 s3", "M64 N64 w4 s1", "M64 N64 w2 s2",
            "M64 N32 w4 s3 r96", "M32 N64 w2 s2 r128"}
    configs = [c for c in tuning_configs("attention") + EXTRA + ABLATE_EXTRA if describe(c) in keep]
    saved = (_attention_kernel.configs, _attention_kernel.early_config_prune)
    # label, tokens, causal, padding mask: None, a dtype, or "bias" (an additive fp16 [B, 1, 1, L])
    variants = [("int64 mask", 77, True, torch.int64), ("int32 mask", 77, True, torch.int32),
                ("bool mask", 77, True, torch.bool), ("additive bias", 77, True, "bias"),
                ("no padding mask", 77, True, None), ("not causal", 77, False, torch.int64),
                ("64 tokens", 64, True, torch.int64)]
    for label, L, causal, mask_kind in variants:
        torch.manual_seed(0)
        q, k, v = torch.randn(B, L, 3, H, D, device="cuda", dtype=torch.float16).unbind(2)
        mask = bias = None
        if mask_kind == "bias":
            bias = torch.zeros(B, 1, 1, L, device="cuda", dtype=torch.float16)
        elif mask_kind is not None:
            mask = torch.ones(B, L, device="cuda", dtype=mask_kind)
        out = torch.empty(B, L, H, D, device="cuda", dtype=torch.float16)
        for config in configs:
            run = lambda: attention(q, k, v, causal=causal, key_padding_mask=mask, bias=bias, out=out)  # noqa: E731
            us = _time_forced(config, run, label)
            if us is not None:
                print(f"text b128 {label:<16} {describe(config):<16} {us:6.1f} us  {_kernel_resources()}", flush=True)
    _attention_kernel.configs, _attention_kernel.early_config_prune = saved
    _attention_kernel.cache.clear()


def main():
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, fp16")
    if "--ablate" in sys.argv[1:]:
        ablate()
        return
    configs = [c for c in tuning_configs("attention") if c.kwargs["BLOCK_M"] >= 32] + EXTRA
    saved = (_attention_kernel.configs, _attention_kernel.early_config_prune)
    rows = []
    for name, B, L, H, causal, padded in SHAPES:
        torch.manual_seed(0)
        qkv = torch.randn(B, L, 3, H, D, device="cuda", dtype=torch.float16)
        q, k, v = qkv.unbind(2)
        mask = None
        if padded:
            mask = torch.ones(B, L, device="cuda", dtype=torch.bool)  # as the encoders pass it
            mask[-1, L // 2:] = False
        out = torch.empty(B, L, H, D, device="cuda", dtype=torch.float16)
        floor = 4 * B * L * H * D * 2 / (COPY_TBS * 1e12) * 1e6
        qc, kc, vc = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        sdpa_mask = None
        if mask is not None:
            sdpa_mask = mask.bool()[:, None, None, :].expand(B, 1, L, L)
            if causal:
                sdpa_mask = sdpa_mask & torch.ones(L, L, device="cuda", dtype=torch.bool).tril()
        sdpa = graph_us(lambda: F.scaled_dot_product_attention(qc, kc, vc, attn_mask=sdpa_mask,
                                                               is_causal=causal and sdpa_mask is None))
        ref = F.scaled_dot_product_attention(qc.float(), kc.float(), vc.float(), attn_mask=sdpa_mask,
                                             is_causal=causal and sdpa_mask is None).transpose(1, 2)
        timings = []
        for config in configs:
            run = lambda: attention(q, k, v, causal=causal, key_padding_mask=mask, out=out)  # noqa: E731
            us = _time_forced(config, run, name)
            if us is not None:  # out holds the config's result (every replay writes the same)
                timings.append((us, describe(config), (out.float() - ref).abs().max().item()))
        _attention_kernel.configs, _attention_kernel.early_config_prune = saved
        _attention_kernel.cache.clear()
        timings.sort()
        print(f"{name}: " + ", ".join(f"{d}={t:.1f}" for t, d, _ in timings))
        best_t, best_d, best_err = timings[0]
        rows.append(f"| {name} | {floor:.1f} | {sdpa:.1f} | {best_t:.1f} | {best_d} | {floor / best_t:.2f} | "
                    f"{best_err:.1e} |")
    table = "\n".join([
        "## attention sweep (fp16, CUDA-graph us)",
        "| shape | floor (bytes) | SDPA | best ours | config | fraction of floor | max err vs fp32 |",
        "|---|---|---|---|---|---|---|", *rows])
    print(table)
    save("summary_sweep_attention.md", table)


if __name__ == "__main__":
    main()
