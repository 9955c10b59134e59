"""GEMM with a fused epilogue: y = act(x W^T + b) [* (x Wg^T + bg)] [+ residual].

One kernel covers every linear layer of the supported models: the QKV and
output projections (bias, residual), the FFN up projection (bias + activation),
the FFN down projection (bias + residual) and the gated FFN of T5 v1.1
(two GEMMs sharing the x tiles, activation on one, product with the other).
Accumulation is fp32; the epilogue runs on the fp32 accumulator and the result
is rounded once, on store.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from eet_triton._backend import INTERPRET
from eet_triton.errors import ShapeError
from eet_triton.kernels._common import (
    autotune, bench_in_graph, check_same_device, check_same_dtype, check_tensor, pdl_launch_args, shape_bucket,
    wait_for_predecessor,
)
from eet_triton.kernels.activations import ACTIVATIONS, apply_activation, canonical_activation, kernel_activation

__all__ = ["ACTIVATIONS", "canonical_activation", "linear"]

# Past this many fp32 accumulator registers per thread the compiler spills, which costs more than
# the larger tile saves (128x256 with 8 warps sits exactly at the limit).
_ACC_REGS_PER_THREAD = 128
_MAX_OFFSET = 2**31 - 1
# On a persistent grid the interpreter runs this many programs (the CPU tests of the tile loop).
_INTERPRETER_PROGRAMS = 4


def _prune_configs(configs, named_args, **kwargs):
    """Drop tiles larger than the problem (they only add padding and compile time), tiles whose
    accumulators would spill, and two-programs-per-SM configs where the tiles (at the bucket's M)
    do not outnumber the SMs (there the grid is one program per tile anyway, and the extra
    candidates only gave the warm-L2 tuner more ways to pick a config that is slower inside a
    model: CLIP b32 text FFN2 14.5 -> 18 us, H200), and TAIL configs where no last round can be
    split (one round at most, or a persistent grid). The first (smallest) config always survives."""
    m_bucket, n, k = named_args["M_BUCKET"], named_args["N"], named_args["K"]
    accumulators = 2 if kwargs["HAS_GATE"] else 1
    sms = _num_programs(torch.device("cuda"))

    def fits(c):
        block_m, block_n, extra_n = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs.get("EXTRA_N", 0)
        tiles = triton.cdiv(m_bucket, block_m) * triton.cdiv(n, block_n + extra_n)
        return (
            block_m <= max(m_bucket, 16)
            and block_n + extra_n <= max(triton.next_power_of_2(n), 16)
            and c.kwargs["BLOCK_K"] <= max(triton.next_power_of_2(k), 16)
            and accumulators * block_m * (block_n + extra_n) <= _ACC_REGS_PER_THREAD * 32 * c.num_warps
            # wide tiles never beside a gate (four accumulators), and only where they save a round
            and (not extra_n or (accumulators == 1 and _wide_tiles_pay(m_bucket, n, c, sms)))
            and (c.kwargs.get("OCCUPANCY", 1) == 1 or tiles > sms)
            # TAIL splits only past one round (here judged at the bucket's M, which is at least M)
            and (not c.kwargs.get("TAIL") or (not PERSISTENT and tiles > sms * c.kwargs.get("OCCUPANCY", 1)))
            # STAGGER only on the per-tile grid, for two programs per SM, and where it splits tiles
            and (not c.kwargs.get("STAGGER") or (not PERSISTENT and not c.kwargs.get("TAIL")
                                                 and c.kwargs.get("OCCUPANCY", 1) == 2 and _stagger(tiles, sms) > 0))
        )

    kept = [c for c in configs if fits(c)]
    return kept or configs[:1]


def _wide_tiles_pay(m_bucket: int, n: int, config: triton.Config, sms: int) -> bool:
    """Whether an EXTRA_N config is worth timing: where its wide tiles divide N (no padded last
    column of tiles) and fit one round on the SMs, and BLOCK_N-wide tiles would not (BERT b32's
    N = 768 GEMMs: 128 tiles of 128 x 192 against 192 of 128 x 128 on 132 SMs). Elsewhere they lost
    every sweep: H200, QKV 4096x2304x768 30.1 us against 26.0, FFN1 + gelu 4096x3072x768 57.9
    against 48.1 (bench/NOTES.md, linear run 11)."""
    block_n, wide = config.kwargs["BLOCK_N"], config.kwargs["BLOCK_N"] + config.kwargs["EXTRA_N"]
    row_blocks = triton.cdiv(m_bucket, config.kwargs["BLOCK_M"])
    return n % wide == 0 and row_blocks * (n // wide) <= sms < row_blocks * triton.cdiv(n, block_n)


@triton.jit
def _tile_coords(tile, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    # Grouped order: GROUP_M row blocks walk the N tiles together, so each weight tile is
    # fetched from HBM once and served from L2 to the other row blocks of the group.
    tiles_per_group = GROUP_M * num_pid_n
    first_pid_m = (tile // tiles_per_group) * GROUP_M
    group_rows = min(num_pid_m - first_pid_m, GROUP_M)
    return first_pid_m + (tile % tiles_per_group) % group_rows, (tile % tiles_per_group) // group_rows


@triton.jit
def _split_work(pid, num_tiles, num_programs, TAIL: tl.constexpr):
    """(tile, half) that program `pid` computes when num_programs - num_tiles = S tiles run as two
    half-height tiles each: half is -1 for the whole tile, 0 / 1 for its top / bottom half.
    TAIL: the last S tiles, as pairs of programs at the end of the grid. Otherwise (STAGGER): programs
    [0, S) take whole tiles, [S, 2S) the top halves of tiles S..2S-1, [2S, T) whole tiles, and [T, T + S)
    the bottom halves. With S the SM count and two programs per SM, each SM's second program of the
    first round ends at half time and the two stay half a tile apart, so one's epilogue (ALU work)
    runs under the other's main loop (tensor cores), as in a ping-pong GEMM; unstaggered they reach
    their epilogues together."""
    split = num_programs - num_tiles
    if TAIL:
        num_whole = num_tiles - split
        tile = tl.where(pid < num_whole, pid, num_whole + (pid - num_whole) // 2)
        half = tl.where(pid < num_whole, -1, (pid - num_whole) % 2)
    else:
        bottom = pid >= num_tiles
        tile = tl.where(bottom, pid - num_tiles + split, pid)
        half = tl.where(bottom, 1, tl.where((pid >= split) & (pid < 2 * split), 0, -1))
    return tile, half


@triton.jit
def _finish(
    acc, gate, cols, bias_ptr, gate_bias_ptr, stride_biasn, stride_gate_biasn,
    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr, HAS_GATE_BIAS: tl.constexpr,
):  # fmt: skip
    """Bias, activation and gate on fp32 accumulator columns `cols` (the epilogue minus residual and store)."""
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols * stride_biasn).to(tl.float32)[None, :]
    y = apply_activation(acc, ACTIVATION)
    if HAS_GATE:
        if HAS_GATE_BIAS:
            gate += tl.load(gate_bias_ptr + cols * stride_gate_biasn).to(tl.float32)[None, :]
        y = y * gate
    return y


@triton.jit
def _store_tile(
    acc, gate, off_m, off_n, M, N,
    bias_ptr, gate_bias_ptr, residual_ptr, y_ptr,
    stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr, HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """The epilogue both kernels share: bias, activation, gate, residual on the fp32 [BLOCK_M,
    BLOCK_N] accumulator of the block at (off_m, off_n), rounded once on the masked store."""
    offs_m = off_m + tl.arange(0, BLOCK_M)
    offs_n = off_n + tl.arange(0, BLOCK_N)
    y = _finish(
        acc, gate, offs_n % N, bias_ptr, gate_bias_ptr, stride_biasn, stride_gate_biasn,
        ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS,
    )  # fmt: skip
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if HAS_RESIDUAL:
        residual_ptrs = residual_ptr + offs_m[:, None] * stride_residualm + offs_n[None, :] * stride_residualn
        y += tl.load(residual_ptrs, mask=mask, other=0.0).to(tl.float32)
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :] * stride_yn
    tl.store(y_ptrs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _store_part_tma(
    acc, gate, off_m, off_n, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc, stride_biasn, stride_gate_biasn,
    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr, HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, PART_N: tl.constexpr,
):  # fmt: skip
    y = _finish(
        acc, gate, (off_n + tl.arange(0, PART_N)) % N, bias_ptr, gate_bias_ptr, stride_biasn, stride_gate_biasn,
        ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS,
    )  # fmt: skip
    if HAS_RESIDUAL:
        y += residual_desc.load([off_m, off_n]).to(tl.float32)
    y_desc.store([off_m, off_n], y.to(y_desc.dtype))


@triton.jit
def _store_tile_tma(
    acc, gate, off_m, off_n, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc,
    stride_biasn, stride_gate_biasn,
    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr, HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_STORE: tl.constexpr,
):  # fmt: skip
    """_store_tile for the TMA kernel: the residual tile arrives and the result leaves by TMA (the copy
    engine clips the edges: no masks, no per-element addresses, fewer registers). SPLIT_STORE: in two
    [BLOCK_M, BLOCK_N / 2] halves, halving the shared-memory staging buffer. It pays where registers
    are short (H200, BERT FFN1 4096x3072x768 + gelu at 128x128 w8, two programs per SM: 61.8 us with
    the pointer epilogue, 56.6 with one TMA store, 48.1 split); with 4-warp programs it does not."""
    if SPLIT_STORE:
        HALF: tl.constexpr = BLOCK_N // 2
        acc0, acc1 = acc.reshape(BLOCK_M, 2, HALF).permute(0, 2, 1).split()
        if HAS_GATE:
            gate0, gate1 = gate.reshape(BLOCK_M, 2, HALF).permute(0, 2, 1).split()
        else:
            gate0 = acc0
            gate1 = acc1
        _store_part_tma(
            acc0, gate0, off_m, off_n, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc, stride_biasn,
            stride_gate_biasn, ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, HALF,
        )  # fmt: skip
        _store_part_tma(
            acc1, gate1, off_m, off_n + HALF, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc, stride_biasn,
            stride_gate_biasn, ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, HALF,
        )  # fmt: skip
    else:
        _store_part_tma(
            acc, gate, off_m, off_n, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc, stride_biasn,
            stride_gate_biasn, ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, BLOCK_N,
        )  # fmt: skip


@triton.jit
def _store_block(
    acc, gate, extra, off_m, off_n, M, N, bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc,
    stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr, HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, STORE: tl.constexpr,
    EXTRA_N: tl.constexpr,
):  # fmt: skip
    """The TMA kernel's epilogue for one [BLOCK_M, BLOCK_N] block, written the STORE way, and with
    EXTRA_N for the [BLOCK_M, EXTRA_N] block `extra` right of it (by pointer, or by TMA through the
    descriptors of tma_split, whose halves are EXTRA_N wide)."""
    if STORE == "pointer":
        _store_tile(
            acc, gate, off_m, off_n, M, N, bias_ptr, gate_bias_ptr, residual_ptr, y_ptr,
            stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
            ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, BLOCK_M, BLOCK_N,
        )  # fmt: skip
    else:
        _store_tile_tma(
            acc, gate, off_m, off_n, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc,
            stride_biasn, stride_gate_biasn, ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL,
            BLOCK_M, BLOCK_N, STORE == "tma_split",
        )  # fmt: skip
    if EXTRA_N > 0:
        tl.static_assert(not HAS_GATE, "EXTRA_N: no gate (the prune drops such configs)")
        if STORE == "pointer":
            _store_tile(
                extra, extra, off_m, off_n + BLOCK_N, M, N, bias_ptr, gate_bias_ptr, residual_ptr, y_ptr,
                stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
                ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, BLOCK_M, EXTRA_N,
            )  # fmt: skip
        else:
            tl.static_assert(STORE == "tma_split" and 2 * EXTRA_N == BLOCK_N, "EXTRA_N by TMA: tma_split halves")
            _store_part_tma(
                extra, extra, off_m, off_n + BLOCK_N, N, bias_ptr, gate_bias_ptr, residual_desc, y_desc,
                stride_biasn, stride_gate_biasn, ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, EXTRA_N,
            )  # fmt: skip


@autotune(
    "linear",
    key=["M_BUCKET", "N", "K", "HAS_GATE", "ACTIVATION", "HAS_RESIDUAL"],
    prune_configs_by={"early_config_prune": _prune_configs},
    do_bench=bench_in_graph,
)
@triton.jit
def _linear_kernel(
    x_ptr, w_ptr, gate_w_ptr, bias_ptr, gate_bias_ptr, residual_ptr, y_ptr,
    M, N, K, M_BUCKET,
    stride_biasn, stride_gate_biasn,
    stride_residualm, stride_residualn,
    stride_ym, stride_yn,
    stride_xm, stride_xk,
    stride_wn, stride_wk,
    stride_gate_wn, stride_gate_wk,
    ACTIVATION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_GATE: tl.constexpr,
    HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST_OPERANDS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    FLATTEN: tl.constexpr,
    PDL: tl.constexpr,
):  # fmt: skip
    wait_for_predecessor(PDL)
    # Each program walks the tiles pid, pid + programs, ...: one tile each on the default grid, several
    # on a persistent one (PERSISTENT). There FLATTEN lets the compiler pipeline the next tile's
    # first loads under this tile's epilogue (H100, 6400x768x3072 with gelu, TMA variant: 97 -> 84 us
    # for 128x128x64 w8 s4; it slows other configs, hence a tuning choice).
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_tiles = num_pid_m * num_pid_n
    offs_k = tl.arange(0, BLOCK_K)
    # The epilogue recomputes the tile's coordinates from its own counter: sharing values across
    # the K loop, as Triton's persistent-matmul tutorial does, keeps the flattened loop pipelinable.
    tile_c = tl.program_id(0) - tl.num_programs(0)
    for tile in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0), flatten=FLATTEN):
        pid_m, pid_n = _tile_coords(tile, num_pid_m, num_pid_n, GROUP_M)
        # Edge rows and columns wrap onto valid ones, so the K loop masks only K; the store drops them.
        rows = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
        cols = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
        x_ptrs = x_ptr + rows[:, None] * stride_xm + offs_k[None, :] * stride_xk
        w_ptrs = w_ptr + offs_k[:, None] * stride_wk + cols[None, :] * stride_wn
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        if HAS_GATE:
            gate_w_ptrs = gate_w_ptr + offs_k[:, None] * stride_gate_wk + cols[None, :] * stride_gate_wn
            gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        else:
            gate = acc  # unused: keeps the epilogue's signature one for both kernels
        for k in range(0, tl.cdiv(K, BLOCK_K)):
            k_valid = offs_k < K - k * BLOCK_K
            x = tl.load(x_ptrs, mask=k_valid[None, :], other=0.0)
            w = tl.load(w_ptrs, mask=k_valid[:, None], other=0.0)
            if UPCAST_OPERANDS:
                # The CPU interpreter's dot multiplies bf16 tiles as their raw uint16 bits; fp32
                # operands give the same exact products the tensor cores form.
                x = x.to(tl.float32)
                w = w.to(tl.float32)
            acc = tl.dot(x, w, acc, input_precision=DOT_PRECISION)
            if HAS_GATE:
                gate_w = tl.load(gate_w_ptrs, mask=k_valid[:, None], other=0.0)
                if UPCAST_OPERANDS:
                    gate_w = gate_w.to(tl.float32)
                gate = tl.dot(x, gate_w, gate, input_precision=DOT_PRECISION)
                gate_w_ptrs += BLOCK_K * stride_gate_wk
            x_ptrs += BLOCK_K * stride_xk
            w_ptrs += BLOCK_K * stride_wk

        tile_c += tl.num_programs(0)
        pid_m, pid_n = _tile_coords(tile_c, num_pid_m, num_pid_n, GROUP_M)
        _store_tile(
            acc, gate, pid_m * BLOCK_M, pid_n * BLOCK_N, M, N,
            bias_ptr, gate_bias_ptr, residual_ptr, y_ptr,
            stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
            ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, BLOCK_M, BLOCK_N,
        )  # fmt: skip


@triton.jit
def _tma_main_loop(
    x_desc, w_desc, gate_w_desc, w_extra_desc, off_m, off_n, k_tiles,
    HAS_GATE: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST_OPERANDS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, EXTRA_N: tl.constexpr,
):  # fmt: skip
    """fp32 accumulators [BLOCK_M, BLOCK_N] of x W^T (and x Wg^T when HAS_GATE) for the block at
    (off_m, off_n), and with EXTRA_N the [BLOCK_M, EXTRA_N] block right of it (columns off_n +
    BLOCK_N ...); x_desc's block is [BLOCK_M, BLOCK_K]. Unused accumulators come back as `acc`."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    gate = acc
    extra = acc
    if HAS_GATE:
        gate = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if EXTRA_N > 0:
        extra = tl.zeros((BLOCK_M, EXTRA_N), dtype=tl.float32)
    for k in range(k_tiles):
        x = x_desc.load([off_m, k * BLOCK_K])
        w = w_desc.load([off_n, k * BLOCK_K])
        if UPCAST_OPERANDS:  # see _linear_kernel
            x = x.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(x, w.T, acc, input_precision=DOT_PRECISION)
        if HAS_GATE:
            gate_w = gate_w_desc.load([off_n, k * BLOCK_K])
            if UPCAST_OPERANDS:
                gate_w = gate_w.to(tl.float32)
            gate = tl.dot(x, gate_w.T, gate, input_precision=DOT_PRECISION)
        if EXTRA_N > 0:
            w_extra = w_extra_desc.load([off_n + BLOCK_N, k * BLOCK_K])
            if UPCAST_OPERANDS:
                w_extra = w_extra.to(tl.float32)
            extra = tl.dot(x, w_extra.T, extra, input_precision=DOT_PRECISION)
    return acc, gate, extra


@triton.jit
def _tma_tile(
    x_desc, w_desc, gate_w_desc, w_extra_desc, off_m, off_n, k_tiles, M, N,
    bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc,
    stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
    ACTIVATION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_GATE: tl.constexpr, HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST_OPERANDS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STORE: tl.constexpr,
    EXTRA_N: tl.constexpr,
):  # fmt: skip
    """One [BLOCK_M, BLOCK_N + EXTRA_N] output block of the TMA kernel, main loop and epilogue."""
    acc, gate, extra = _tma_main_loop(
        x_desc, w_desc, gate_w_desc, w_extra_desc, off_m, off_n, k_tiles,
        HAS_GATE, DOT_PRECISION, UPCAST_OPERANDS, BLOCK_M, BLOCK_N, BLOCK_K, EXTRA_N,
    )  # fmt: skip
    _store_block(
        acc, gate, extra, off_m, off_n, M, N,
        bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc,
        stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
        ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, BLOCK_M, BLOCK_N, STORE, EXTRA_N,
    )  # fmt: skip


def _out_block(meta) -> list[int]:
    """Block shape of the TMA epilogue's y and residual descriptors for a config's constexprs."""
    return [meta["BLOCK_M"], meta["BLOCK_N"] // (2 if meta["STORE"] == "tma_split" else 1)]


def _set_block_shapes(nargs):
    """Autotune pre-hook: the host tensor descriptors take the block shape of the config being run."""
    nargs["x_desc"].block_shape = [nargs["BLOCK_M"], nargs["BLOCK_K"]]
    nargs["x_half_desc"].block_shape = [nargs["BLOCK_M"] // 2, nargs["BLOCK_K"]]
    nargs["w_desc"].block_shape = [nargs["BLOCK_N"], nargs["BLOCK_K"]]
    nargs["gate_w_desc"].block_shape = [nargs["BLOCK_N"], nargs["BLOCK_K"]]
    nargs["w_extra_desc"].block_shape = [nargs.get("EXTRA_N") or nargs["BLOCK_N"], nargs["BLOCK_K"]]
    nargs["residual_desc"].block_shape = _out_block(nargs)
    nargs["y_desc"].block_shape = _out_block(nargs)


@autotune(
    "linear_tma",
    key=["M_BUCKET", "N", "K", "HAS_GATE", "ACTIVATION", "HAS_RESIDUAL"],
    prune_configs_by={"early_config_prune": _prune_configs},
    do_bench=bench_in_graph,
    pre_hook=_set_block_shapes,
)
@triton.jit
def _linear_tma_kernel(
    x_desc, w_desc, gate_w_desc, w_extra_desc,
    bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc, x_half_desc,
    M, N, K, M_BUCKET,
    stride_biasn, stride_gate_biasn,
    stride_residualm, stride_residualn,
    stride_ym, stride_yn,
    ACTIVATION: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_GATE: tl.constexpr,
    HAS_GATE_BIAS: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    UPCAST_OPERANDS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    FLATTEN: tl.constexpr,
    OCCUPANCY: tl.constexpr,
    STORE: tl.constexpr,
    PDL: tl.constexpr,
    TAIL: tl.constexpr = False,
    EXTRA_N: tl.constexpr = 0,
    STAGGER: tl.constexpr = False,
):  # fmt: skip
    wait_for_predecessor(PDL)
    # The Hopper path: x and W tiles arrive by the bulk tensor copy engine (TMA), which zero-fills
    # outside the tensors, so the K loop needs no masks and no address arithmetic. Same persistent
    # walk and epilogue as _linear_kernel. (0-14 % faster than the pointer kernel on the same
    # config, up to 27 % at M=64 with K >= 2048: H200, linear run 5 in bench/NOTES.md.)
    # EXTRA_N: tiles BLOCK_N + EXTRA_N wide, as two dots sharing each x tile (Triton's blocks are
    # powers of two; a 192-wide tile is 128 + 64). See the YAML for what it bought.
    TILE_N: tl.constexpr = BLOCK_N + EXTRA_N
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, TILE_N)
    num_tiles = num_pid_m * num_pid_n
    k_tiles = tl.cdiv(K, BLOCK_K)
    if TAIL or STAGGER:
        # One program per tile, but some tiles run as two half-height tiles on two programs (the grid
        # holds one extra program per split tile): under TAIL the last round's (when it would run at
        # most half full, see _split_tail: the round takes half as long); under STAGGER the first
        # round's second programs' (see _split_work).
        tile, half = _split_work(tl.program_id(0), num_tiles, tl.num_programs(0), TAIL)
        pid_m, pid_n = _tile_coords(tile, num_pid_m, num_pid_n, GROUP_M)
        # (each branch computes and stores its own block: Triton merges values that leave an if,
        # and the two blocks differ in shape)
        if half < 0:
            _tma_tile(
                x_desc, w_desc, gate_w_desc, w_extra_desc, pid_m * BLOCK_M, pid_n * TILE_N, k_tiles, M, N,
                bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc,
                stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
                ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, DOT_PRECISION, UPCAST_OPERANDS,
                BLOCK_M, BLOCK_N, BLOCK_K, STORE, EXTRA_N,
            )  # fmt: skip
        else:
            # masked pointer stores: the TMA store descriptors are shaped for whole tiles
            _tma_tile(
                x_half_desc, w_desc, gate_w_desc, w_extra_desc, pid_m * BLOCK_M + half * (BLOCK_M // 2),
                pid_n * TILE_N,
                k_tiles, M, N, bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc,
                stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
                ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, DOT_PRECISION, UPCAST_OPERANDS,
                BLOCK_M // 2, BLOCK_N, BLOCK_K, "pointer", EXTRA_N,
            )  # fmt: skip
    else:
        tile_c = tl.program_id(0) - tl.num_programs(0)
        for tile in tl.range(tl.program_id(0), num_tiles, tl.num_programs(0), flatten=FLATTEN):
            pid_m, pid_n = _tile_coords(tile, num_pid_m, num_pid_n, GROUP_M)
            acc, gate, extra = _tma_main_loop(
                x_desc, w_desc, gate_w_desc, w_extra_desc, pid_m * BLOCK_M, pid_n * TILE_N, k_tiles,
                HAS_GATE, DOT_PRECISION, UPCAST_OPERANDS, BLOCK_M, BLOCK_N, BLOCK_K, EXTRA_N,
            )  # fmt: skip

            tile_c += tl.num_programs(0)
            pid_m, pid_n = _tile_coords(tile_c, num_pid_m, num_pid_n, GROUP_M)
            _store_block(
                acc, gate, extra, pid_m * BLOCK_M, pid_n * TILE_N, M, N,
                bias_ptr, gate_bias_ptr, residual_ptr, y_ptr, residual_desc, y_desc,
                stride_biasn, stride_gate_biasn, stride_residualm, stride_residualn, stride_ym, stride_yn,
                ACTIVATION, HAS_BIAS, HAS_GATE, HAS_GATE_BIAS, HAS_RESIDUAL, BLOCK_M, BLOCK_N, STORE, EXTRA_N,
            )  # fmt: skip


@functools.cache
def _num_programs(device: torch.device) -> int:
    if INTERPRET:
        return _INTERPRETER_PROGRAMS
    return torch.cuda.get_device_properties(device).multi_processor_count


def _span(t: torch.Tensor) -> int:
    """Largest element offset a 1-D or 2-D tensor's indexing reaches."""
    return sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))


# The TMA kernel runs where the bulk tensor copy engine exists (compute capability 9+) and its
# rules hold: unit stride along K, 16-byte aligned base and row stride. Anything else (a strided
# view, an odd K in fp16) takes the pointer kernel. A switch, so benchmarks can time both paths.
TMA_ENABLED = True
_TMA_ALIGN = 16


@functools.cache
def _has_tma(device_index: int) -> bool:
    return not INTERPRET and torch.cuda.get_device_capability(device_index)[0] >= 9


def _tma_ready(*operands: torch.Tensor | None) -> bool:
    present = [t for t in operands if t is not None]
    return (
        TMA_ENABLED
        and _has_tma(present[0].device.index or 0)
        and all(
            t.stride(-1) == 1
            and t.data_ptr() % _TMA_ALIGN == 0
            and (t.stride(0) * t.element_size()) % _TMA_ALIGN == 0
            for t in present
        )
    )


# Persistent grid (OCCUPANCY programs per SM, each walking a fixed share of the tiles) or one program
# per tile (the default). Alone on the GPU the persistent grid was 3-14 % faster (linear run 4), but
# inside the models one program per tile wins: H200, same tuned configs, CLIP b128 5.05 -> 4.90 ms,
# b32 1.51 -> 1.47, BERT b32 1.96 -> 1.91 (models run 6: a persistent program that starts late, its SM
# busy with another kernel, still owns its whole share). A switch, so bench_switch.py can time both.
PERSISTENT = False
_MAX_GRID = 2**31 - 1

# TAIL configs split their last round (on) or run it as whole tiles (off: then they are their
# whole-tile twins). A switch, so bench_switch.py can time both with the same tuned configs.
SPLIT_TAIL = True


def _split_tail(tiles: int, slots: int) -> int:
    """How many of the last tiles a TAIL config runs as two half-height tiles each: those of the
    last round, when `tiles` on `slots` resident programs leave it at most half full (a fuller
    round would need two rounds of halves). 6400x768 in 128x128 tiles on 132 single-program
    SMs: 300 tiles, a last round of 36: 72 half tiles, half as long."""
    tail = tiles % slots
    return tail if tiles > slots and 2 * tail <= slots else 0


def _stagger(tiles: int, sms: int) -> int:
    """How many tiles a STAGGER config splits into halves (_split_work): one per SM, where the tiles
    fill the first round's two programs per SM (fewer, and no SM has a second program to stagger)."""
    return sms if tiles >= 2 * sms else 0


class TuneKey(NamedTuple):
    """What a tuned config is picked for. The epilogue is part of it: gelu by libdevice's erff and a
    residual load cost registers, enough to change which configs spill (compile_check)."""

    m_bucket: int
    n: int
    k: int
    gated: bool
    dtype: torch.dtype
    tma: bool
    activation: str | None  # as the kernel computes it (kernel_activation)
    residual: bool


# Tuned config per key, so that steady-state calls launch the compiled kernel directly:
# triton's Autotuner.run rebuilds its key from all 29 arguments on every call, about a quarter of
# this launcher's host time under cProfile on the H100 host (where the kernel at M=64 takes 4-8 us).
_TUNED: dict[TuneKey, triton.Config] = {}


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
    gate_weight: torch.Tensor | None = None,
    gate_bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = act(x @ weight.T + bias) [* (x @ gate_weight.T + gate_bias)] [+ residual]

    x: [..., K] fp16/bf16/fp32, any leading dims; rows may be strided (leading dims that
        cannot be flattened into one row stride are copied first).
    weight, gate_weight: [N, K] (nn.Linear layout; any strides, so a transposed [K, N] view works).
    bias, gate_bias: [N] or None; gate_bias only with gate_weight.
    residual: [..., N], same shape as the output, or None.
    activation: a name in ACTIVATIONS (HuggingFace spellings welcome) or None.
    out: [..., N] buffer to write into (may be `residual` itself, for an in-place residual add;
        must not overlap x or the weights).
    All tensors share x's dtype and device (the current CUDA device).

    The first call for a (rows rounded up to a power of two, N, K, gated, dtype, epilogue)
    combination (TuneKey) tunes the kernel (and syncs); later calls launch the tuned kernel only,
    so make one call per shape before capturing a CUDA graph.

    fp16/bf16 multiply on tensor cores with fp32 accumulation; fp32 uses a full-precision
    dot (no tf32). The epilogue runs in fp32 and rounds once. On Hopper, operands with unit
    stride along K and 16-byte aligned rows run the TMA kernel; others the pointer kernel.
    Returns [..., N] in x.dtype (`out` when given).
    """
    act = canonical_activation(activation)
    check_tensor("x", x)
    if x.dim() == 0:
        raise ShapeError("x: expected [..., K] with at least one dim, got a scalar; pass x[None]")
    K = x.shape[-1]
    check_tensor("weight", weight, ndim=2)
    if weight.shape[1] != K:
        raise ShapeError(
            f"weight: expected [N, {K}] (nn.Linear layout, K = x.shape[-1] = {K}), got {list(weight.shape)}; "
            "pass an [out_features, in_features] weight, or .t() of a [K, N] one"
        )
    N = weight.shape[0]
    lead = x.shape[:-1]
    if bias is not None:
        check_tensor("bias", bias, ndim=1, shape=(N,))
    if gate_weight is not None:
        check_tensor("gate_weight", gate_weight, ndim=2, shape=(N, K))
    if gate_bias is not None:
        if gate_weight is None:
            raise ShapeError("gate_bias given without gate_weight; pass gate_weight too, or drop gate_bias")
        check_tensor("gate_bias", gate_bias, ndim=1, shape=(N,))
    if residual is not None:
        check_tensor("residual", residual, shape=(*lead, N))
    if out is not None:
        check_tensor("out", out, shape=(*lead, N))
    check_same_dtype(
        x=x, weight=weight, bias=bias, gate_weight=gate_weight, gate_bias=gate_bias, residual=residual, out=out
    )
    check_same_device(
        x=x, weight=weight, bias=bias, gate_weight=gate_weight, gate_bias=gate_bias, residual=residual, out=out
    )

    if out is None:
        out = torch.empty((*lead, N), dtype=x.dtype, device=x.device)
    act = kernel_activation(act, x.dtype)  # the form the kernel computes
    try:
        y = out.view(-1, N)
    except RuntimeError:
        raise ShapeError(
            f"out: its leading dims (shape {list(out.shape)}, strides {list(out.stride())}) cannot be flattened "
            "into one row stride, so the kernel cannot write it; pass a contiguous buffer"
        ) from None
    x2 = x.reshape(-1, K)
    M = x2.shape[0]
    if M == 0 or N == 0:
        return out
    r2 = residual.reshape(-1, N) if residual is not None else None
    for name, t in (("x", x2), ("weight", weight), ("gate_weight", gate_weight), ("residual", r2), ("out", y)):
        if t is not None and _span(t) > _MAX_OFFSET:
            raise ShapeError(
                f"{name}: spans {_span(t) + 1} elements, but the kernel indexes with int32 "
                f"(at most {_MAX_OFFSET + 1}); split the rows into smaller calls"
            )

    use_tma = _tma_ready(x2, weight, gate_weight, r2, y)
    tuner = _linear_tma_kernel if use_tma else _linear_kernel

    def launch(kernel, y, **config):
        programs = _num_programs(x.device)

        def grid(meta):
            # One program per tile (plus one per split tile under TAIL), or on a persistent grid
            # OCCUPANCY (TMA configs) programs per SM.
            tiles = triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"] + meta.get("EXTRA_N", 0))
            slots = programs * meta.get("OCCUPANCY", 1)
            if PERSISTENT:
                return (min(tiles, slots),)
            if meta.get("STAGGER"):
                split = _stagger(tiles, programs)
            else:
                split = _split_tail(tiles, slots) if meta.get("TAIL") and SPLIT_TAIL else 0
            return (min(tiles + split, _MAX_GRID),)

        constexprs = dict(
            ACTIVATION=act,
            HAS_BIAS=bias is not None,
            HAS_GATE=gate_weight is not None,
            HAS_GATE_BIAS=gate_bias is not None,
            HAS_RESIDUAL=residual is not None,
            DOT_PRECISION="ieee" if x.dtype == torch.float32 else "tf32",
            UPCAST_OPERANDS=INTERPRET,
            **pdl_launch_args(x.device),
        )
        # Both kernels take the operands, then these, then (the pointer kernel only) the operand strides.
        shared = (
            bias if bias is not None else x2,
            gate_bias if gate_bias is not None else x2,
            r2 if r2 is not None else y,
            y,
            M, N, K, shape_bucket(M),
            bias.stride(0) if bias is not None else 0,
            gate_bias.stride(0) if gate_bias is not None else 0,
            r2.stride(0) if r2 is not None else 0,
            r2.stride(1) if r2 is not None else 0,
            y.stride(0), y.stride(1),
        )  # fmt: skip
        gate_w = gate_weight if gate_weight is not None else weight
        if use_tma:
            # Block shapes from the config when launching a tuned one; while tuning, the pre-hook sets them.
            x_block = [config.get("BLOCK_M", 32), config.get("BLOCK_K", 16)]
            w_block = [config.get("BLOCK_N", 16), config.get("BLOCK_K", 16)]
            out_block = _out_block({"BLOCK_M": x_block[0], "BLOCK_N": w_block[0], "STORE": config.get("STORE")})
            y_desc = TensorDescriptor.from_tensor(y, out_block)
            residual_desc = TensorDescriptor.from_tensor(r2, out_block) if r2 is not None else y_desc
            w_extra_block = [config.get("EXTRA_N") or w_block[0], w_block[1]]
            operands = [
                TensorDescriptor.from_tensor(t, b)
                for t, b in ((x2, x_block), (weight, w_block), (gate_w, w_block), (weight, w_extra_block))
            ]
            x_half_desc = TensorDescriptor.from_tensor(x2, [x_block[0] // 2, x_block[1]])  # TAIL's half tiles
            strides = ()
            shared = (*shared[:4], residual_desc, y_desc, x_half_desc, *shared[4:])  # after the pointers, the descriptors
        else:
            operands = [x2, weight, gate_w]
            strides = (*x2.stride(), *weight.stride(), *gate_w.stride())
        kernel[grid](*operands, *shared, *strides, **constexprs, **config)

    key = TuneKey(shape_bucket(M), N, K, gate_weight is not None, x.dtype, use_tma, act, r2 is not None)
    config = _TUNED.get(key)
    if config is None:
        # Tuning runs the kernel many times; when out is residual (an in-place residual add) each run
        # would add the product again, so those runs write a scratch buffer instead.
        in_place = r2 is not None and r2.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
        tuning_out = torch.empty_like(y) if in_place else y
        launch(tuner, tuning_out)
        config = _TUNED[key] = tuner.best_config
        if not in_place:
            return out
    launch(tuner.fn, y, **config.all_kwargs())
    return out
