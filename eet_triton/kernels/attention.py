"""Flash attention: out = softmax(q k^T * scale + bias) v in one pass over the keys,
never materialising the [Lq, Lk] score matrix.

One program computes BLOCK_M query rows of one (batch, head). It streams BLOCK_N-key
blocks of k and v, keeps a running row max and row sum in fp32 (online softmax) and
works in base 2: log2(e) is folded into the scale, so a score costs one FMA and one exp2
(fp32 keeps natural units and libdevice's expf, for the fp32 oracle: `_score_units`).
The key padding mask, causal mask, additive bias and T5 relative position bias are all
applied to the scores inside that loop.

The key blocks of a query block run in two phases: first the blocks that every row of the
block sees in full, with no element mask at all; then the ragged tail, masked: the last
partial block and, under causal masking, the blocks that straddle the diagonal. Blocks
wholly above the diagonal are never visited, which halves causal work.

T5 relative position bias: HuggingFace buckets relative positions with float32 torch.log
and truncation, and an in-kernel log may differ by one ulp and flip a bucket exactly at a
boundary (distance 16 with the defaults gives exactly 2.0). So the buckets come from
torch, with HF's formula, on the tensors' device (`relative_position_buckets`). Every
distance beyond max_distance shares the bucket of +-max_distance, so only the
2 * max_distance + 1 distances in [-max_distance, max_distance] are bucketed; that vector
depends on the configuration alone and is cached per device. Each call gathers the table
through it into a per-distance bias [H, 2 * max_distance + 1] (one small index_select),
and the kernel reads one value per score from it at the clamped distance j - i; key blocks
at distance >= max_distance from every row of the query block add one constant instead, so
that gather only runs in a band around the diagonal. No [Lq, Lk] tensor reaches memory, and
a call costs one small launch besides the kernel.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from eet_triton._backend import INTERPRET
from eet_triton.errors import ShapeError, UnsupportedModelError
from eet_triton.kernels._common import (
    COMPILED,
    FLOAT_DTYPES,
    autotune,
    bench_in_graph,
    check_same_device,
    check_same_dtype,
    check_tensor,
    pdl_launch_args,
    shape_bucket,
    wait_for_predecessor,
)

LOG2E = tl.constexpr(1.4426950408889634)
MAX_HEAD_DIM = 128
_GRID_Y_MAX = 65535


SMALL = 1 << 21
"""Scores (batch x heads x query x key lengths, bucketed) up to which a problem takes the first
fitting config untimed: a few tiles, where tuning buys nothing and costs compiles. Past it even
short sequences tune: CLIP's 77-token text tower at batch 128 is 1024 heads of 2 x 2 tiles."""


def prune_attention_configs(configs, named_args, **kwargs):
    """Keep the configs whose query block is no taller than the (bucketed) query length,
    and at least 32 rows once there are that many queries: 16-row blocks only re-read k and v
    more often (32 rows still pays under a causal mask at short length, where thinner blocks
    skip more keys: CLIP text at batch 128, 77 tokens, 30.9 -> 25.7 us). Decode (Lq <= 16)
    keeps the 16-row configs. Small problems keep the first of them."""
    rows = max(named_args["LQ_BUCKET"], 16)
    kept = [c for c in configs if min(rows, 32) <= c.kwargs["BLOCK_M"] <= rows]
    kept = kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"])]
    scores = named_args["BH_BUCKET"] * named_args["LQ_BUCKET"] * named_args["LK_BUCKET"]
    return kept[:1] if scores <= SMALL else kept


@triton.jit
def _score_units(x, DOT_PRECISION: tl.constexpr):
    """Natural-log units -> the kernel's score units: base 2 (times log2 e, so p = exp2(s), one
    FMA and one ex2 a score) for fp16/bf16; natural in fp32, where the roundings of the folded
    log2 e and ex2.approx's error took the fp32 decode oracle's worst draw from 0.69 to 0.95 of its
    bound (numpy emulation; 3 of 100 draws missed on the H100)."""
    if DOT_PRECISION == "ieee":
        return x
    else:
        return x * LOG2E


@triton.jit
def _exp(x, DOT_PRECISION: tl.constexpr):
    """exp of scores in _score_units: libdevice's expf in fp32 (tl.exp compiles to ex2.approx of a
    rounded x log2 e, the error _score_units avoids), exp2 otherwise."""
    if DOT_PRECISION == "ieee" and COMPILED:  # (the interpreter's tl.exp is numpy's)
        return libdevice.exp(x)
    elif DOT_PRECISION == "ieee":
        return tl.exp(x)
    else:
        return tl.exp2(x)


@triton.jit
def _interleaved_halves(x):
    """[R, C] -> its even and odd columns, two [R, C / 2]."""
    return tl.split(tl.reshape(x, (x.shape[0], x.shape[1] // 2, 2)))


@triton.jit
def _add_apart(a, b):
    """a + b, in a form Triton's combiner cannot turn into a dot accumulating onto another
    (it rewrites dot(x, y) + c as dot(x, y, c), which would chain the partial sums again)."""
    return tl.sum(tl.join(a, b), axis=2)


@triton.jit
def _scores(q, k, DOT_PRECISION: tl.constexpr):
    """q [M, D] k^T [D, N] -> [M, N] fp32. In fp32 ("ieee") tl.dot sums over D in one sequential
    FMA chain, looser than the tree-like sums of torch's fp32 baseline: with D = 64 the fp32 T5
    decode test missed the oracle on ~12 % of draws on the H100. Here fp32 sums four chains over
    D / 4 pairwise (NOTES attention run 7). fp16/bf16 take one dot."""
    if DOT_PRECISION == "ieee" and q.shape[1] >= 64:
        q0, q1 = _interleaved_halves(q)
        k0, k1 = _interleaved_halves(k)
        q00, q01 = _interleaved_halves(q0)
        q10, q11 = _interleaved_halves(q1)
        k00, k01 = _interleaved_halves(k0)
        k10, k11 = _interleaved_halves(k1)
        s0 = _add_apart(tl.dot(q00, tl.trans(k00), input_precision="ieee"),
                        tl.dot(q01, tl.trans(k01), input_precision="ieee"))
        s1 = _add_apart(tl.dot(q10, tl.trans(k10), input_precision="ieee"),
                        tl.dot(q11, tl.trans(k11), input_precision="ieee"))
        return _add_apart(s0, s1)
    else:
        return tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)


@triton.jit
def _attention_block(
    acc, l_i, m_i, q, k_rows_ptr, v_rows_ptr, mask_row_ptr, bias_rows_ptr, rel_head_ptr,
    diag, offs_d, d_ok, lo, hi, LK, max_distance, qk_scale, rel_const,
    stride_kn, stride_vn, stride_maskn, stride_biasn, stride_relr,
    CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, REL: tl.constexpr,
    UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, MASK_STEP: tl.constexpr,
):
    """Online-softmax update of (acc, l_i, m_i) over the key blocks [lo, hi). MASK_STEP
    blocks may hold keys past LK or (causal) above the diagonal and are masked per element;
    the others are known to be fully visible. T5 bias (REL): 0 none, 1 the same rel_const
    (already in score units) for every score, 2 gathered per score at the clamped distance."""
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < LK
        kv_ok = d_ok[None, :]
        if MASK_STEP:
            kv_ok = kv_ok & n_ok[:, None]
        k = tl.load(k_rows_ptr + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_ok, other=0.0)
        if UPCAST:
            k = k.to(tl.float32)
        s = _scores(q, k, DOT_PRECISION) * qk_scale
        if HAS_BIAS:
            bias = tl.load(bias_rows_ptr + offs_n[None, :] * stride_biasn, mask=n_ok[None, :], other=0.0)
            s += _score_units(bias.to(tl.float32), DOT_PRECISION)
        if REL == 1:
            s += rel_const
        if REL == 2:
            dist = tl.minimum(tl.maximum(offs_n[None, :] - diag, -max_distance), max_distance)
            s += _score_units(tl.load(rel_head_ptr + (dist + max_distance) * stride_relr).to(tl.float32), DOT_PRECISION)
        if HAS_MASK:
            keep = tl.load(mask_row_ptr + offs_n * stride_maskn, mask=n_ok, other=0) != 0
            s = tl.where(keep[None, :], s, float("-inf"))
        if MASK_STEP:
            visible = n_ok[None, :]
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= diag)
            s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = _exp(m_i - m_new, DOT_PRECISION)
        p = _exp(s - m_new[:, None], DOT_PRECISION)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_rows_ptr + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_ok, other=0.0)
        p = p.to(v_rows_ptr.dtype.element_ty)
        if UPCAST:
            v = v.to(tl.float32)
            p = p.to(tl.float32)
        acc = tl.dot(p, v, acc * alpha[:, None], input_precision=DOT_PRECISION)
        m_i = m_new
    return acc, l_i, m_i


@autotune(
    "attention",
    key=["BH_BUCKET", "LQ_BUCKET", "LK_BUCKET", "BLOCK_D", "CAUSAL", "HAS_MASK", "HAS_BIAS", "HAS_REL"],
    prune_configs_by={"early_config_prune": prune_attention_configs},
    do_bench=bench_in_graph,
)
@triton.jit
def _attention_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, mask_ptr, bias_ptr, rel_ptr,
    stride_qb, stride_qm, stride_qh, stride_kb, stride_kn, stride_kh, stride_vb, stride_vn, stride_vh,
    stride_ob, stride_om, stride_oh, stride_maskb, stride_maskn,
    stride_biasb, stride_biash, stride_biasm, stride_biasn, stride_relh, stride_relr,
    H, LQ, LK, qk_scale, max_distance,
    BH_BUCKET, LQ_BUCKET, LK_BUCKET,  # autotune key only
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_REL: tl.constexpr, UPCAST: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PDL: tl.constexpr,
):
    wait_for_predecessor(PDL)
    start_m = tl.program_id(0) * BLOCK_M
    b = (tl.program_id(1) // H).to(tl.int64)
    h = (tl.program_id(1) % H).to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    # rows past LQ repeat row LQ - 1, so every load stays in bounds without a row mask;
    # they are never stored
    rows = tl.minimum(offs_m, LQ - 1)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    q = tl.load(q_ptr + b * stride_qb + h * stride_qh + rows[:, None] * stride_qm + offs_d[None, :],
                mask=d_ok[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    # key index aligned with each query row (bottom-right): the causal limit, and T5's distance 0
    diag = rows[:, None] + (LK - LQ)

    k_rows_ptr = k_ptr + b * stride_kb + h * stride_kh
    v_rows_ptr = v_ptr + b * stride_vb + h * stride_vh
    mask_row_ptr = mask_ptr + b * stride_maskb
    bias_rows_ptr = bias_ptr + b * stride_biasb + h * stride_biash + rows[:, None] * stride_biasm
    rel_head_ptr = rel_ptr + h * stride_relh

    if CAUSAL:
        n_full = tl.maximum(tl.minimum(start_m + LK - LQ + 1, LK), 0) // BLOCK_N * BLOCK_N
        n_end = tl.maximum(tl.minimum(start_m + BLOCK_M + LK - LQ, LK), 0)
    else:
        n_full = LK // BLOCK_N * BLOCK_N
        n_end = LK

    # a finite start: a row whose scores are all -inf (masked) keeps exp2(-inf - m) = 0
    # instead of the NaN of -inf - -inf
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    if HAS_REL:
        # keys at distance <= -max_distance from every row of the block share one T5 bias, and
        # so do those at >= +max_distance: their blocks add it as a constant and skip the
        # per-score gather, left to a band ~2 * max_distance wide around the diagonal
        # (T5 bias at L=2048 on an H100: 587 us -> 354 us)
        far_left = _score_units(tl.load(rel_head_ptr).to(tl.float32), DOT_PRECISION)
        far_right = _score_units(tl.load(rel_head_ptr + 2 * max_distance * stride_relr).to(tl.float32), DOT_PRECISION)
        last_diag = tl.minimum(start_m + BLOCK_M, LQ) - 1 + LK - LQ
        n_left = tl.minimum(tl.maximum(start_m + LK - LQ - max_distance + 1, 0) // BLOCK_N * BLOCK_N, n_full)
        n_right = tl.maximum(tl.minimum(tl.cdiv(last_diag + max_distance, BLOCK_N) * BLOCK_N, n_full), n_left)
        acc, l_i, m_i = _attention_block(
            acc, l_i, m_i, q, k_rows_ptr, v_rows_ptr, mask_row_ptr, bias_rows_ptr, rel_head_ptr,
            diag, offs_d, d_ok, 0, n_left, LK, max_distance, qk_scale, far_left,
            stride_kn, stride_vn, stride_maskn, stride_biasn, stride_relr,
            CAUSAL, HAS_MASK, HAS_BIAS, 1, UPCAST, DOT_PRECISION, BLOCK_N, False,
        )
        acc, l_i, m_i = _attention_block(
            acc, l_i, m_i, q, k_rows_ptr, v_rows_ptr, mask_row_ptr, bias_rows_ptr, rel_head_ptr,
            diag, offs_d, d_ok, n_left, n_right, LK, max_distance, qk_scale, 0.0,
            stride_kn, stride_vn, stride_maskn, stride_biasn, stride_relr,
            CAUSAL, HAS_MASK, HAS_BIAS, 2, UPCAST, DOT_PRECISION, BLOCK_N, False,
        )
        acc, l_i, m_i = _attention_block(
            acc, l_i, m_i, q, k_rows_ptr, v_rows_ptr, mask_row_ptr, bias_rows_ptr, rel_head_ptr,
            diag, offs_d, d_ok, n_right, n_full, LK, max_distance, qk_scale, far_right,
            stride_kn, stride_vn, stride_maskn, stride_biasn, stride_relr,
            CAUSAL, HAS_MASK, HAS_BIAS, 1, UPCAST, DOT_PRECISION, BLOCK_N, False,
        )
    else:
        acc, l_i, m_i = _attention_block(
            acc, l_i, m_i, q, k_rows_ptr, v_rows_ptr, mask_row_ptr, bias_rows_ptr, rel_head_ptr,
            diag, offs_d, d_ok, 0, n_full, LK, max_distance, qk_scale, 0.0,
            stride_kn, stride_vn, stride_maskn, stride_biasn, stride_relr,
            CAUSAL, HAS_MASK, HAS_BIAS, 0, UPCAST, DOT_PRECISION, BLOCK_N, False,
        )
    acc, l_i, m_i = _attention_block(
        acc, l_i, m_i, q, k_rows_ptr, v_rows_ptr, mask_row_ptr, bias_rows_ptr, rel_head_ptr,
        diag, offs_d, d_ok, n_full, n_end, LK, max_distance, qk_scale, 0.0,
        stride_kn, stride_vn, stride_maskn, stride_biasn, stride_relr,
        CAUSAL, HAS_MASK, HAS_BIAS, 2 if HAS_REL else 0, UPCAST, DOT_PRECISION, BLOCK_N, True,
    )
    # a row that saw no key has acc = 0 and l_i = 0: its output is 0, not 0 / 0
    l_i = tl.where(l_i == 0.0, 1.0, l_i)
    out = acc / l_i[:, None]
    out_ptrs = out_ptr + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=(offs_m[:, None] < LQ) & d_ok[None, :])


def relative_position_buckets(q_len: int, k_len: int, num_buckets: int, bidirectional: bool,
                              max_distance: int, device) -> torch.Tensor:
    """T5's relative-position bucket for every distance a [q_len, k_len] attention has.

    Returns int32 [q_len + k_len - 1]: element t is the bucket of relative position
    r = t - (k_len - 1), i.e. of key j and query i with r = j - (i + k_len - q_len), so
    query i, key j read element j - i + q_len - 1. Computed with torch on `device`, with
    exactly the float32 arithmetic of HF's T5Attention._relative_position_bucket."""
    relative_position = torch.arange(-(k_len - 1), q_len, dtype=torch.long, device=device)
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    if_large = torch.min(if_large, torch.full_like(if_large, num_buckets - 1))
    buckets += torch.where(is_small, relative_position, if_large)
    return buckets.to(torch.int32)


_BUCKET_CACHE: dict[tuple, torch.Tensor] = {}


def _clamped_buckets(num_buckets: int, bidirectional: bool, max_distance: int, device: torch.device):
    """Buckets of the distances [-max_distance, max_distance], cached per configuration.
    Not cached while a CUDA graph is being captured: a tensor made then holds its values
    only once the graph replays."""
    key = (num_buckets, bidirectional, max_distance, device)
    buckets = _BUCKET_CACHE.get(key)
    if buckets is None:
        buckets = relative_position_buckets(
            max_distance + 1, max_distance + 1, num_buckets, bidirectional, max_distance, device
        )
        if not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            _BUCKET_CACHE[key] = buckets
    return buckets


def _check_last_dim_contiguous(**tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.stride(-1) != 1 and t.shape[-1] > 1:
            raise ShapeError(
                f"{name}: expected the last (head_dim) dimension contiguous, got strides {t.stride()}; "
                f"pass a view whose last stride is 1, or call .contiguous()"
            )


def attention(q, k, v, *, scale=None, causal=False, key_padding_mask=None, bias=None,
              t5_table=None, t5_bidirectional=True, t5_max_distance=128, out=None) -> torch.Tensor:
    """Scaled dot-product attention, flash style.

    q: [B, Lq, H, D]; k, v: [B, Lk, H, D]; fp16/bf16/fp32 (one dtype), any strides with the
    last dim contiguous (so q/k/v may be views of a fused QKV GEMM output viewed as
    [B, L, 3, H, D], or of a preallocated KV cache sliced to [:, :Lk]). 1 <= D <= 128.
    scale: softmax scale (a Python float); None means D ** -0.5 (T5 passes 1.0).
    causal: query i sees key j iff j <= i + (Lk - Lq): aligned bottom-right, so a block of new
        queries after a KV cache sees the whole cache.
    key_padding_mask: [B, Lk], HuggingFace's 2-D attention_mask: nonzero = attend, 0 = padding;
        any dtype (bool/int/float); any pattern (left, right, holes); any strides.
    bias: additive float tensor (fp16/bf16/fp32) broadcastable to [B, H, Lq, Lk] (broadcast
        through zero strides: no expand copy).
    t5_table: T5 relative_attention_bias weight [num_buckets, H] (float): the bias for (i, j) is
        t5_table[bucket(j - (i + Lk - Lq)), h], bucket() exactly HF's
        T5Attention._relative_position_bucket(bidirectional, num_buckets, max_distance).
        Needs t5_max_distance >= num_buckets (every T5 configuration has it).
    A row with no visible key gives zeros (never NaN); so does a row whose every score is
    below -1e30 (e.g. a bias of -inf or float32's min).
    out: optional [B, Lq, H, D] buffer of q.dtype with the last dim contiguous.
    Returns out [B, Lq, H, D], q.dtype: a new contiguous tensor, or `out` when given."""
    check_tensor("q", q, ndim=4)
    B, Lq, H, D = q.shape
    check_tensor("k", k, ndim=4, shape=(B, None, H, D))
    Lk = k.shape[1]
    check_tensor("v", v, ndim=4, shape=(B, Lk, H, D))
    check_same_dtype(q=q, k=k, v=v)
    if not 1 <= D <= MAX_HEAD_DIM:
        raise ShapeError(f"q: expected head_dim between 1 and {MAX_HEAD_DIM}, got {D}; "
                         f"larger heads are not supported by this kernel")
    if B * H > _GRID_Y_MAX:
        raise ShapeError(f"q: expected batch * heads <= {_GRID_Y_MAX}, got {B} * {H}; "
                         f"split the batch into several calls")
    if key_padding_mask is not None:
        check_tensor("key_padding_mask", key_padding_mask, ndim=2, shape=(B, Lk),
                     dtypes=(torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                             *FLOAT_DTYPES))
        if key_padding_mask.dtype == torch.bool:
            key_padding_mask = key_padding_mask.view(torch.uint8)
    if bias is not None:
        check_tensor("bias", bias, ndim=(1, 2, 3, 4))
        try:
            bias = bias.expand(B, H, Lq, Lk)
        except RuntimeError:
            raise ShapeError(f"bias: expected a shape broadcastable to [B, H, Lq, Lk] = "
                             f"{[B, H, Lq, Lk]}, got {list(bias.shape)}; use size 1 for broadcast dims") from None
    rel = None
    if t5_table is not None:
        check_tensor("t5_table", t5_table, ndim=2, shape=(None, H))
        num_buckets = t5_table.shape[0]
        if t5_max_distance < num_buckets:
            raise UnsupportedModelError(
                f"t5_max_distance: expected at least num_buckets ({num_buckets}), got {t5_max_distance}; "
                f"only then do all distances beyond max_distance share one bucket, which the kernel relies on"
            )
        buckets = _clamped_buckets(num_buckets, bool(t5_bidirectional), int(t5_max_distance), t5_table.device)
        rel = t5_table.t().index_select(1, buckets)
    if out is None:
        out = torch.empty((B, Lq, H, D), dtype=q.dtype, device=q.device)
    else:
        check_tensor("out", out, ndim=4, shape=(B, Lq, H, D), dtypes=(q.dtype,))
    check_same_device(q=q, k=k, v=v, key_padding_mask=key_padding_mask, bias=bias, t5_table=t5_table, out=out)
    _check_last_dim_contiguous(q=q, k=k, v=v, out=out)
    if out.numel() == 0:
        return out

    mask_arg = key_padding_mask if key_padding_mask is not None else q
    mask_strides = key_padding_mask.stride() if key_padding_mask is not None else (0, 0)
    bias_arg = bias if bias is not None else q
    bias_strides = bias.stride() if bias is not None else (0, 0, 0, 0)
    rel_arg = rel if rel is not None else q
    rel_strides = rel.stride() if rel is not None else (0, 0)
    # the interpreter computes bf16 dots wrongly; fp32 dots of bf16 values are exact
    upcast = INTERPRET and q.dtype == torch.bfloat16
    fp32_dot = q.dtype == torch.float32 or upcast
    qk_scale = (D ** -0.5 if scale is None else float(scale)) * (1.0 if fp32_dot else LOG2E.value)  # _score_units

    def grid(meta):
        return (triton.cdiv(Lq, meta["BLOCK_M"]), B * H)

    _attention_kernel[grid](
        q, k, v, out, mask_arg, bias_arg, rel_arg,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        *mask_strides, *bias_strides, *rel_strides,
        H, Lq, Lk, qk_scale, int(t5_max_distance),
        shape_bucket(B * H), shape_bucket(Lq), shape_bucket(Lk),
        HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), CAUSAL=bool(causal),
        HAS_MASK=key_padding_mask is not None, HAS_BIAS=bias is not None, HAS_REL=rel is not None,
        UPCAST=upcast, DOT_PRECISION="ieee" if fp32_dot else "tf32", **pdl_launch_args(q.device),
    )
    return out
