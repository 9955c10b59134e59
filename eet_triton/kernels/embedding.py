"""Embeddings: token + position (+ type) gather with optional scale and LayerNorm in one kernel,
and the vision patch embedding (a stride == kernel-size conv) as one implicit GEMM.

Ids are not validated: that would need a host sync (or a device assert that breaks CUDA-graph
capture), so, as with torch's embedding on CUDA, every id must be in range of its table; an
out-of-range id reads out of bounds.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from eet_triton._backend import INTERPRET
from eet_triton.errors import ShapeError
from eet_triton.kernels._common import (
    autotune, bench_in_graph, check_same_device, check_tensor, pdl_launch_args, shape_bucket, wait_for_predecessor,
)
from eet_triton.kernels.layernorm import MAX_N, SMALL, _normalize_rows, cdiv, launch_tuned, pow2, prune_row_configs

ID_DTYPES = (torch.int32, torch.int64)
MAX_PATCH = 64
"""Largest patch side: one K step of the patch GEMM holds at least one whole pixel row of a patch."""


@autotune("embedding", key=["BLOCK_N", "M_BUCKET"], prune_configs_by={"early_config_prune": prune_row_configs},
          do_bench=bench_in_graph)
@triton.jit
def _embedding_kernel(
    ids_ptr, word_ptr, pos_ids_ptr, pos_ptr, type_ids_ptr, type_ptr, w_ptr, b_ptr, out_ptr,
    M, L, E, scale, eps,
    M_BUCKET,  # autotune key only
    stride_ib, stride_il, stride_wv, stride_pib, stride_pil, stride_pv, stride_tib, stride_til, stride_tv,
    stride_ob, stride_ol,
    HAS_POS: tl.constexpr, HAS_TYPE: tl.constexpr, HAS_TYPE_IDS: tl.constexpr, HAS_NORM: tl.constexpr,
    HAS_NORM_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, PDL: tl.constexpr,
):
    """BLOCK_M tokens of the [B, L] batch per program; each token's row is gathered, summed in
    fp32, normalised in registers and written once."""
    wait_for_predecessor(PDL)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    row_mask = rows < M
    mask = row_mask[:, None] & (cols < E)[None, :]
    rb = (rows // L).to(tl.int64)
    rl = (rows % L).to(tl.int64)

    # int64: id * stride passes 2**31 for large vocabularies x hidden sizes
    ids = tl.load(ids_ptr + rb * stride_ib + rl * stride_il, mask=row_mask, other=0).to(tl.int64)
    h = tl.load(word_ptr + (ids * stride_wv)[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32) * scale
    if HAS_POS:
        pos = tl.load(pos_ids_ptr + rb * stride_pib + rl * stride_pil, mask=row_mask, other=0).to(tl.int64)
        h += tl.load(pos_ptr + (pos * stride_pv)[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_TYPE:
        if HAS_TYPE_IDS:
            tid = tl.load(type_ids_ptr + rb * stride_tib + rl * stride_til, mask=row_mask, other=0).to(tl.int64)
            h += tl.load(type_ptr + (tid * stride_tv)[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        else:
            # BERT without token_type_ids: every token is of type 0
            h += tl.load(type_ptr + cols, mask=cols < E, other=0.0).to(tl.float32)[None, :]
    if HAS_NORM:
        h = _normalize_rows(h, mask, cols, E, eps, w_ptr, b_ptr, False, True, HAS_NORM_BIAS, False)
    tl.store(out_ptr + (rb * stride_ob + rl * stride_ol)[:, None] + cols[None, :], h.to(out_ptr.dtype.element_ty),
             mask=mask)


def _check_table(name: str, t: torch.Tensor, e: int) -> None:
    check_tensor(name, t, ndim=2, shape=(None, e))
    if e > 1 and t.stride(1) != 1:
        raise ShapeError(f"{name}: expected contiguous rows (last stride 1), got strides {t.stride()}; "
                         "pass it .contiguous()")


def _check_vector(name: str, t: torch.Tensor, e: int) -> None:
    check_tensor(name, t, ndim=1, shape=(e,))
    if e > 1 and t.stride(0) != 1:
        raise ShapeError(f"{name}: expected a contiguous [{e}] vector, got stride {t.stride(0)}; pass it .contiguous()")


def _check_out(out: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    check_tensor("out", out, dtypes=(dtype,), shape=shape)
    if shape[-1] > 1 and out.stride(-1) != 1:
        raise ShapeError(f"out: expected a contiguous last dim (stride 1), got strides {out.stride()}; "
                         "pass a contiguous buffer")


def _both_or_neither(a_name: str, a, b_name: str, b) -> None:
    if (a is None) != (b is None):
        given, missing = (a_name, b_name) if b is None else (b_name, a_name)
        raise ShapeError(f"{given} was given without {missing}; pass both or neither")


def embedding(input_ids, word_weight, *, position_ids=None, position_weight=None,
              token_type_ids=None, type_weight=None, scale=1.0,
              norm_weight=None, norm_bias=None, eps=1e-12, out=None):
    """h = scale * word_weight[input_ids] + position_weight[position_ids] + type_weight[token_type_ids],
    then LayerNorm(norm_weight, norm_bias, eps) when norm_weight is given — one kernel.

    input_ids: [B, L] int32/int64, every id in [0, V) (not checked, see the module docstring).
    word_weight: [V, E] fp16/bf16/fp32, rows contiguous.
    position_ids: [B, L] or [L] (broadcast over the batch) int32/int64, with position_weight [P, E] float;
    both None for no position term.
    token_type_ids: [B, L] int32/int64 or None; type_weight: [T, E] float or None. With type_weight
    and no token_type_ids every token takes type row 0, as BERT does.
    scale: float multiplying the word term only (BART's embed_scale).
    norm_weight, norm_bias: [E] float; norm_bias needs norm_weight. Sums and statistics are fp32.
    out: [B, L, E] word_weight.dtype or None.
    Returns [B, L, E] in word_weight.dtype.
    """
    check_tensor("input_ids", input_ids, ndim=2, dtypes=ID_DTYPES)
    check_tensor("word_weight", word_weight, ndim=2)
    bsz, seq = input_ids.shape
    e = word_weight.shape[1]
    _check_table("word_weight", word_weight, e)
    _both_or_neither("position_ids", position_ids, "position_weight", position_weight)
    if position_ids is not None:
        check_tensor("position_ids", position_ids, ndim=(1, 2), dtypes=ID_DTYPES,
                     shape=(seq,) if position_ids.dim() == 1 else (bsz, seq))
        _check_table("position_weight", position_weight, e)
    if token_type_ids is not None:
        if type_weight is None:
            raise ShapeError("token_type_ids was given without type_weight; pass type_weight too")
        check_tensor("token_type_ids", token_type_ids, dtypes=ID_DTYPES, shape=(bsz, seq))
    if type_weight is not None:
        _check_table("type_weight", type_weight, e)
    if norm_bias is not None and norm_weight is None:
        raise ShapeError("norm_bias was given without norm_weight; pass norm_weight too")
    for name, t in (("norm_weight", norm_weight), ("norm_bias", norm_bias)):
        if t is not None:
            _check_vector(name, t, e)
    if out is not None:
        _check_out(out, (bsz, seq, e), word_weight.dtype)
    check_same_device(input_ids=input_ids, word_weight=word_weight, position_ids=position_ids,
                      position_weight=position_weight, token_type_ids=token_type_ids, type_weight=type_weight,
                      norm_weight=norm_weight, norm_bias=norm_bias, out=out)
    if e > MAX_N:
        raise ShapeError(f"word_weight: rows of at most {MAX_N} elements are supported, got E={e}")

    if out is None:
        out = torch.empty((bsz, seq, e), dtype=word_weight.dtype, device=word_weight.device)
    m = bsz * seq
    if m == 0 or e == 0:
        return out
    pos_b, pos_l = (0, 0) if position_ids is None else (
        (0, position_ids.stride(0)) if position_ids.dim() == 1 else position_ids.stride())
    type_b, type_l = (0, 0) if token_type_ids is None else token_type_ids.stride()
    tensors = (input_ids, word_weight, position_ids, position_weight, token_type_ids, type_weight, norm_weight,
               norm_bias, out)
    block_n, m_bucket = pow2(e), shape_bucket(m)
    key = (block_n, m_bucket, *(None if t is None else t.dtype for t in tensors))
    launch_tuned(
        _embedding_kernel, key, lambda meta: (cdiv(m, meta["BLOCK_M"]),),
        *tensors,
        m, seq, e, float(scale), float(eps), m_bucket,
        input_ids.stride(0), input_ids.stride(1), word_weight.stride(0),
        pos_b, pos_l, position_weight.stride(0) if position_weight is not None else 0,
        type_b, type_l, type_weight.stride(0) if type_weight is not None else 0,
        out.stride(0), out.stride(1),
        HAS_POS=position_ids is not None, HAS_TYPE=type_weight is not None,
        HAS_TYPE_IDS=token_type_ids is not None, HAS_NORM=norm_weight is not None,
        HAS_NORM_BIAS=norm_bias is not None, BLOCK_N=block_n, **pdl_launch_args(out.device),
    )
    return out


def _prune_patch_configs(configs, named_args, **kwargs):
    """A K step must hold whole pixel rows of a patch: keep configs with BLOCK_K >= PATCH_POW2;
    a small problem gets the first of them untimed."""
    args = {**named_args, **kwargs}
    kept = [c for c in configs if c.kwargs["BLOCK_K"] >= args["PATCH_POW2"]]
    return kept[:1] if args["M_BUCKET"] * args["E"] < SMALL else kept


@autotune("patch_embedding", key=["E", "C", "PATCH", "M_BUCKET"],
          prune_configs_by={"early_config_prune": _prune_patch_configs}, do_bench=bench_in_graph)
@triton.jit
def _patch_embedding_kernel(
    px_ptr, w_ptr, bias_ptr, cls_ptr, pos_ptr, out_ptr,
    M, E, C, NP, NP_W,
    M_BUCKET,  # autotune key only
    stride_pxb, stride_pxc, stride_pxh, stride_pxw,
    stride_we, stride_wc, stride_wh, stride_ww,
    stride_posn, stride_ob, stride_ot,
    PATCH: tl.constexpr, PATCH_POW2: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_CLS: tl.constexpr,
    HAS_POS: tl.constexpr, IEEE_FP32: tl.constexpr, UPCAST_OPERANDS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PDL: tl.constexpr,
):
    """out[b, HAS_CLS + p, :] = patch p of image b . W^T (+ bias) (+ pos): a GEMM over
    M = B * NP patches, N = E, K = C * PATCH * PATCH, whose A tile is gathered from pixel strides."""
    wait_for_predecessor(PDL)
    pid = tl.program_id(0)
    # the N tiles of one M tile run side by side, so the pixels they all read are in L2 once
    num_n = tl.cdiv(E, BLOCK_N)
    offs_m = (pid // num_n) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = (pid % num_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = offs_m < M
    n_mask = offs_n < E
    img = (offs_m // NP).to(tl.int64)
    p = offs_m % NP
    a_row = img * stride_pxb + (p // NP_W) * PATCH * stride_pxh + (p % NP_W) * PATCH * stride_pxw

    # K is walked as pixel rows q = c * PATCH + i of the patch, ROWS rows of PATCH_POW2 columns
    # per step, so that consecutive k are consecutive pixels (vector loads, no im2col)
    ROWS: tl.constexpr = BLOCK_K // PATCH_POW2
    kk = tl.arange(0, BLOCK_K)
    kj = kk % PATCH_POW2
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    comp = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for q0 in range(0, C * PATCH, ROWS):
        q = q0 + kk // PATCH_POW2
        c = q // PATCH
        i = q % PATCH
        k_mask = (q < C * PATCH) & (kj < PATCH)
        a = tl.load(px_ptr + a_row[:, None] + (c * stride_pxc + i * stride_pxh + kj * stride_pxw)[None, :],
                    mask=m_mask[:, None] & k_mask[None, :], other=0.0).to(w_ptr.dtype.element_ty)
        wt = tl.load(w_ptr + (offs_n * stride_we)[None, :] + (c * stride_wc + i * stride_wh + kj * stride_ww)[:, None],
                     mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        if IEEE_FP32:
            # fp32 without TF32: one sequential fp32 sum over K = 768 was off by up to 5.7e-6 on the
            # H100, where the oracle allows 3.6e-6 (twice cuDNN's error plus a floor); Kahan-summing
            # the BLOCK_K-term partial dots leaves only the partials' own rounding and passes
            # (a plain acc += dot would be folded back into one sequential dot)
            part = tl.dot(a, wt, input_precision="ieee") - comp
            total = acc + part
            comp = (total - acc) - part
            acc = total
        elif UPCAST_OPERANDS:
            # the CPU interpreter's dot reads bf16 tiles as raw integer bits
            acc = tl.dot(a.to(tl.float32), wt.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, wt, acc)

    tok = p
    if HAS_CLS:
        tok += 1
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)[None, :]
    if HAS_POS:
        acc += tl.load(pos_ptr + (tok * stride_posn)[:, None] + offs_n[None, :],
                       mask=m_mask[:, None] & n_mask[None, :], other=0.0).to(tl.float32)
    out_dtype = out_ptr.dtype.element_ty
    tl.store(out_ptr + (img * stride_ob + tok * stride_ot)[:, None] + offs_n[None, :], acc.to(out_dtype),
             mask=m_mask[:, None] & n_mask[None, :])
    if HAS_CLS:
        cls = tl.load(cls_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        if HAS_POS:
            cls += tl.load(pos_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        # the program holding patch 0 of an image also writes that image's class-token row
        cls_rows = tl.broadcast_to(cls[None, :], (BLOCK_M, BLOCK_N))
        tl.store(out_ptr + (img * stride_ob)[:, None] + offs_n[None, :], cls_rows.to(out_dtype),
                 mask=(m_mask & (p == 0))[:, None] & n_mask[None, :])


def patch_embedding(pixel_values, patch_weight, patch_bias=None, *, class_embedding=None,
                    position_weight=None, out=None):
    """Vision patch embedding (CLIP, ViT): Conv2d(C, E, kernel=stride=P) over the image as a GEMM
    whose A tiles are gathered from pixel_values' strides (no im2col copy), the class token
    prepended and absolute positions added in the epilogue.

    pixel_values: [B, C, H, W] fp16/bf16/fp32, any strides; cast to patch_weight.dtype on load (as
    HF casts before its conv). H and W must be multiples of P.
    patch_weight: [E, C, P, P] fp16/bf16/fp32 (the Conv2d weight), P <= 64; patch_bias: [E] or None.
    class_embedding: [E] or None.
    position_weight: [1 + nP, E] (or [nP, E] without a class token) or None, nP = (H/P)*(W/P).
    out: [B, (1 +) nP, E] patch_weight.dtype or None.
    Returns [B, (1 +) nP, E] in patch_weight.dtype; fp32 runs with IEEE fp32 products (no TF32).
    """
    check_tensor("pixel_values", pixel_values, ndim=4)
    check_tensor("patch_weight", patch_weight, ndim=4)
    e, c, p, p_w = patch_weight.shape
    bsz, c_in, h, w = pixel_values.shape
    if p != p_w:
        raise ShapeError(f"patch_weight: expected square patches [E, C, P, P], got {list(patch_weight.shape)}")
    if p > MAX_PATCH:
        raise ShapeError(f"patch_weight: patches up to {MAX_PATCH}x{MAX_PATCH} are supported, got {p}x{p}")
    if c_in != c:
        raise ShapeError(f"pixel_values: expected {c} channels to match patch_weight {list(patch_weight.shape)}, "
                         f"got {list(pixel_values.shape)}")
    if h % p or w % p:
        raise ShapeError(f"pixel_values: expected H and W multiples of the patch size {p}, got {h}x{w}; "
                         "resize or crop the image")
    n_patches, has_cls = (h // p) * (w // p), class_embedding is not None
    n_tok = n_patches + has_cls
    if patch_bias is not None:
        _check_vector("patch_bias", patch_bias, e)
    if has_cls:
        _check_vector("class_embedding", class_embedding, e)
    if position_weight is not None:
        check_tensor("position_weight", position_weight, ndim=2)
        if tuple(position_weight.shape) != (n_tok, e):
            raise ShapeError(f"position_weight: expected [{n_tok}, {e}] for {n_patches} patches of a {h}x{w} image"
                             f"{' plus the class token' if has_cls else ''}, got {list(position_weight.shape)}; "
                             "use the image size the model was trained on")
        _check_table("position_weight", position_weight, e)
    if out is not None:
        _check_out(out, (bsz, n_tok, e), patch_weight.dtype)
    check_same_device(pixel_values=pixel_values, patch_weight=patch_weight, patch_bias=patch_bias,
                      class_embedding=class_embedding, position_weight=position_weight, out=out)

    if out is None:
        out = torch.empty((bsz, n_tok, e), dtype=patch_weight.dtype, device=patch_weight.device)
    m = bsz * n_patches
    if m == 0 or e == 0:
        return out
    tensors = (pixel_values, patch_weight, patch_bias, class_embedding, position_weight, out)
    m_bucket = shape_bucket(m)
    key = (e, c, p, m_bucket, *(None if t is None else t.dtype for t in tensors))
    launch_tuned(
        _patch_embedding_kernel, key, lambda meta: (cdiv(m, meta["BLOCK_M"]) * cdiv(e, meta["BLOCK_N"]),),
        *tensors,
        m, e, c, n_patches, w // p, m_bucket,
        *pixel_values.stride(), *patch_weight.stride(),
        position_weight.stride(0) if position_weight is not None else 0, out.stride(0), out.stride(1),
        PATCH=p, PATCH_POW2=pow2(p), HAS_BIAS=patch_bias is not None, HAS_CLS=has_cls,
        HAS_POS=position_weight is not None,
        IEEE_FP32=patch_weight.dtype == torch.float32,
        UPCAST_OPERANDS=INTERPRET, **pdl_launch_args(out.device),
    )
    return out
