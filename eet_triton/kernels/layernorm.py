"""LayerNorm and RMSNorm (T5LayerNorm) over the last dimension, with an optional fused
residual add (`s = x + residual`, then normalise `s`), so a post-LN block costs one pass.

Each program normalises BLOCK_M whole rows held in registers (BLOCK_N = next power of two
of N, masked): one read and one write per element, the floor for a memory-bound op.
Statistics are computed in fp32 whatever the storage dtype.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from eet_triton.errors import ShapeError
from eet_triton.kernels._common import (
    autotune, bench_in_graph, check_same_device, check_tensor, pdl_launch_args, shape_bucket, wait_for_predecessor,
)

MAX_N = 65536
"""Longest row one program holds in registers."""

_X_RANKS = tuple(range(1, 9))

SMALL = 1 << 20
"""Elements below which a launch is bound by latency, not bandwidth: tuning it would only cost compiles."""


def prune_row_configs(configs, named_args, **kwargs):
    """Keep the configs whose [BLOCK_M, BLOCK_N] tile gives each thread 4..16 elements (at least
    one 8-byte vector, no spills); a small problem gets the first of them untimed. When none fits
    (rows past 8192), the one with the fewest rows and the most warps."""
    args = {**named_args, **kwargs}
    block_n = args["BLOCK_N"]
    kept = [c for c in configs if 4 <= c.kwargs["BLOCK_M"] * block_n / (32 * c.num_warps) <= 16]
    if not kept:
        return [min(configs, key=lambda c: (c.kwargs["BLOCK_M"], -c.num_warps))]
    return kept[:1] if args["M_BUCKET"] * block_n < SMALL else kept


@triton.jit
def _normalize_rows(x, mask, cols, N, eps, w_ptr, b_ptr, RMS: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                    HAS_BIAS: tl.constexpr, UNIT: tl.constexpr):
    """Helper inlined into the kernels: normalise each row of the fp32 tile x [BLOCK_M, BLOCK_N]
    (masked lanes hold 0), then scale by w and shift by b; returns fp32. UNIT: divide by the root of
    the sum of squares (unit vectors; eps unused)."""
    if UNIT:
        # x / ||x|| as torch computes it, a correctly rounded root and division (x * rsqrt(.) missed
        # CLIP logits' fp32 oracle on ~1 seed in 8). Rows past M hold zeros: keep them finite (a
        # real zero row still gives 0/0 = NaN, as torch does).
        norm = tl.sqrt_rn(tl.sum(x * x, axis=1))
        xhat = tl.div_rn(x, tl.where(tl.sum(mask.to(tl.int32), axis=1) > 0, norm, 1.0)[:, None])
    elif RMS:
        var = tl.sum(x * x, axis=1) / N
        xhat = x * tl.rsqrt(var + eps)[:, None]
    else:
        mean = tl.sum(x, axis=1) / N
        # masked lanes must not add (0 - mean)^2 to the variance
        xc = tl.where(mask, x - mean[:, None], 0.0)
        var = tl.sum(xc * xc, axis=1) / N
        xhat = xc * tl.rsqrt(var + eps)[:, None]
    if HAS_WEIGHT:
        xhat = xhat * tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        xhat = xhat + tl.load(b_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    return xhat


@autotune(
    "layernorm",
    key=["BLOCK_N", "M_BUCKET", "HAS_RESIDUAL"],
    prune_configs_by={"early_config_prune": prune_row_configs},
    # by CUDA graph: plain do_bench timed the host launch at model sizes (3 us kernels), and picked a
    # config 1.5x slower on a fresh H200 (CLIP b32, NOTES models run 4)
    do_bench=bench_in_graph,
)
@triton.jit
def _layer_norm_kernel(
    x_ptr, r_ptr, w_ptr, b_ptr, y_ptr, s_ptr,
    M, L, N, eps,
    M_BUCKET,  # autotune key only
    stride_xb, stride_xl, stride_rb, stride_rl, stride_yb, stride_yl, stride_sb, stride_sl,
    RMS: tl.constexpr, HAS_WEIGHT: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
    UNIT: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, PDL: tl.constexpr,
):
    """Rows are addressed as [B, L] through two strides per tensor, so sliced views need no copy."""
    wait_for_predecessor(PDL)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    # int64: row offsets pass 2**31 elements at large batch x hidden
    rb = (rows // L).to(tl.int64)
    rl = (rows % L).to(tl.int64)

    x = tl.load(x_ptr + (rb * stride_xb + rl * stride_xl)[:, None] + cols[None, :], mask=mask, other=0.0)
    x = x.to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(r_ptr + (rb * stride_rb + rl * stride_rl)[:, None] + cols[None, :], mask=mask, other=0.0)
        # the caller gets s rounded to its dtype; normalising that same rounded s keeps y
        # consistent with it (and with torch's add-then-norm in that dtype)
        s = (x + r.to(tl.float32)).to(s_ptr.dtype.element_ty)
        tl.store(s_ptr + (rb * stride_sb + rl * stride_sl)[:, None] + cols[None, :], s, mask=mask)
        x = s.to(tl.float32)
    y = _normalize_rows(x, mask, cols, N, eps, w_ptr, b_ptr, RMS, HAS_WEIGHT, HAS_BIAS, UNIT)
    tl.store(y_ptr + (rb * stride_yb + rl * stride_yl)[:, None] + cols[None, :], y.to(y_ptr.dtype.element_ty),
             mask=mask)


_TUNED: dict = {}


def is_tuned(kernel, key) -> bool:
    """Whether launch_tuned(kernel, key, ...) has picked a config (in this process)."""
    return (kernel, key) in _TUNED


def pow2(n: int) -> int:
    """triton.next_power_of_2 without its constexpr-function wrapper (~3 us a call on the host)."""
    return 1 << (n - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    """triton.cdiv without its constexpr-function wrapper."""
    return -(-a // b)


def launch_tuned(kernel, key, grid, *args, **kwargs):
    """`kernel[grid](*args, **kwargs)` for a kernel wrapped by `autotune`; `grid(meta)` gives the grid.
    Once the autotuner has picked a config for `key` (a tuple separating at least what the autotune
    key and its argument dtypes separate), later calls launch the JIT function with that config
    directly: triton's per-call autotuner bookkeeping was 11 of the 37 us of host time of a launch
    on the H100 machine."""
    config = _TUNED.get((kernel, key))
    if config is None:
        kernel[grid](*args, **kwargs)
        _TUNED[(kernel, key)] = kernel.best_config
    else:
        kernel.fn[grid(config.kwargs)](*args, **kwargs, **config.all_kwargs())


def row_strides(name: str, t: torch.Tensor) -> tuple[int, int]:
    """Strides of `t` [..., N] seen as [B, L, N] rows (L = t.shape[-2]); raises when the last dim is
    not contiguous or the leading dims cannot be addressed with two strides. No view is made for
    1-3 dims (a view costs host time on every call)."""
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ShapeError(f"{name}: expected a contiguous last dim (stride 1), got strides {t.stride()}; "
                         "pass t.contiguous()")
    if t.dim() == 1:
        return 0, 0
    if t.dim() == 2:
        return 0, t.stride(0)
    if t.dim() == 3:
        return t.stride(0), t.stride(1)
    try:
        v = t.view(-1, t.shape[-2], t.shape[-1])
    except RuntimeError:
        raise ShapeError(f"{name}: its leading dims {list(t.shape[:-1])} with strides {t.stride()[:-1]} cannot be "
                         "addressed as [B, L] rows with two strides; pass t.contiguous()") from None
    return v.stride(0), v.stride(1)


def l2_normalize(x, *, out=None):
    """x / ||x||_2 along the last dim (CLIP's unit embeddings), the norm in fp32, in one launch.

    x: [..., N] fp16/bf16/fp32, as for layer_norm; out: [..., N] x.dtype or None.
    Returns [..., N] x.dtype. A zero row gives NaN, as x / x.norm() does.
    """
    return layer_norm(x, out=out, _unit=True)


def layer_norm(x, weight=None, bias=None, *, eps=1e-5, rms=False, residual=None,
               out=None, residual_out=None, _unit=False):
    """LayerNorm (rms=False) or RMSNorm = T5LayerNorm (rms=True: no mean subtraction) over the last dim.

    x: [..., N] fp16/bf16/fp32; rows may be strided, the last dim must be contiguous; N <= 65536.
    weight, bias: [N] float or None (either may be absent; with rms=True a bias, if given, is added
    after scaling). Statistics are computed in fp32.
    residual: like x (same shape and dtype) or None. When given, s = x + residual (rounded to x.dtype)
    is normalised and returned too; s goes to residual_out [..., N] x.dtype when given (it may be
    `residual` itself for an in-place update).
    out: [..., N] x.dtype or None; may be x itself.
    Returns y [..., N] x.dtype, or (y, s) when residual is given.
    """
    check_tensor("x", x, ndim=_X_RANKS)
    n = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            check_tensor(name, p, ndim=1, shape=(n,))
            if n > 1 and p.stride(0) != 1:
                raise ShapeError(f"{name}: expected a contiguous [{n}] vector, got stride {p.stride(0)}; "
                                 "pass it .contiguous()")
    if residual is None and residual_out is not None:
        raise ShapeError("residual_out: given without residual; pass residual= too, or drop residual_out")
    for name, t in (("residual", residual), ("out", out), ("residual_out", residual_out)):
        if t is not None:
            check_tensor(name, t, dtypes=(x.dtype,), shape=x.shape)
    check_same_device(x=x, weight=weight, bias=bias, residual=residual, out=out, residual_out=residual_out)
    if n > MAX_N:
        raise ShapeError(f"x: rows of at most {MAX_N} elements are supported, got N={n}; "
                         "normalise with torch.nn.functional.layer_norm instead")

    y = torch.empty_like(x, memory_format=torch.contiguous_format) if out is None else out
    s = None
    if residual is not None:
        s = torch.empty_like(x, memory_format=torch.contiguous_format) if residual_out is None else residual_out
    m = x.numel() // n if n else 0
    if m == 0:
        return y if s is None else (y, s)

    s_strides = row_strides("residual_out", s) if s is not None else (0, 0)
    block_n = pow2(n)
    m_bucket = shape_bucket(m)
    key = (block_n, m_bucket, residual is not None, x.dtype, None if weight is None else weight.dtype,
           None if bias is None else bias.dtype)

    def launch(y_buf, s_buf):
        launch_tuned(
            _layer_norm_kernel, key, lambda meta: (cdiv(m, meta["BLOCK_M"]),),
            x, residual, weight, bias, y_buf, s_buf,
            m, x.shape[-2] if x.dim() >= 2 else 1, n, float(eps), m_bucket,
            *row_strides("x", x), *(row_strides("residual", residual) if residual is not None else (0, 0)),
            *row_strides("out", y), *s_strides,
            RMS=bool(rms), HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None,
            HAS_RESIDUAL=residual is not None, UNIT=_unit, BLOCK_N=block_n, **pdl_launch_args(x.device),
        )

    if not is_tuned(_layer_norm_kernel, key):
        # Tuning runs the kernel many times: an in-place call (out=x, residual_out=residual) would
        # normalise its own output again, so tuning writes scratch buffers of the same layout.
        scratch = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device) for t in (y, s)
                   if t is not None]
        launch(scratch[0], scratch[-1])
    launch(y, y if s is None else s)  # without a residual, s_ptr is unused: y stands in
    return y if s is None else (y, s)
