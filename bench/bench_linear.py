"""linear() with a fused gelu epilogue against cuBLAS linear-then-gelu, fp16, on one GPU.

    PYTHONPATH=. python3 bench/bench_linear.py [--quick]

Contenders, all in the same run on the same random data:
  ours     linear(x, w, b, activation="gelu", out=y)  (one kernel)
  cublas   F.gelu(F.linear(x, w, b))                   (cuBLAS GEMM + bias, then an elementwise kernel)
  linear   F.linear(x, w, b)                           (cuBLAS alone: what the fusion has to hide the gelu in)
Each is timed two ways, both as the median of many runs after warm-up (and, for ours, after autotuning):
  do_bench   triton.testing.do_bench: one launch per timed call, L2 flushed before each
  graph      triton.testing.do_bench_cudagraph: calls replayed from a CUDA graph, no host launch cost, warm L2
and the host cost of one call is measured as the wall time of many back-to-back calls.
TFLOP/s counts 2*M*N*K; the floor is the H100's ~760 dense fp16 TFLOP/s. ratio = cublas time / ours time
(>= 0.85 is the target; > 1 means ours is faster).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
import triton
import triton.testing

from eet_triton.kernels import linear as linear_module
from eet_triton.kernels.linear import linear

PEAK_TFLOPS = 760.0
M_VALUES = [64, 6400, 9856]
KN_VALUES = [(768, 2304), (768, 3072), (3072, 768), (512, 1536), (512, 2048), (2048, 512)]


def host_us_per_call(fn, calls=200):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def measure(fn):
    fn()
    torch.cuda.synchronize()
    plain = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3
    graph = triton.testing.do_bench_cudagraph(fn, rep=50, return_mode="median") * 1e3
    return plain, graph, host_us_per_call(fn)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="M=6400 with (768, 3072) only")
    args = parser.parse_args()
    shapes = [(6400, 768, 3072)] if args.quick else [(m, k, n) for m in M_VALUES for k, n in KN_VALUES]

    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, fp16")
    rows = []
    header = (
        f"{'M':>5} {'K':>5} {'N':>5} | {'ours':>7} {'cublas':>7} {'linear':>7} {'ratio':>5} | "
        f"{'ours_g':>7} {'cubl_g':>7} {'lin_g':>7} {'ratio':>5} | {'TFLOP/s':>7} {'%peak':>5} | "
        f"{'host_us':>7} {'cubl_h':>7} | config"
    )
    for M, K, N in shapes:
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        w = (torch.randn(N, K, device="cuda") / math.sqrt(K)).half()
        b = torch.randn(N, device="cuda", dtype=torch.float16)
        y = torch.empty(M, N, device="cuda", dtype=torch.float16)

        def ours():
            linear(x, w, b, activation="gelu", out=y)

        def cublas():
            F.gelu(F.linear(x, w, b))

        def plain_linear():
            F.linear(x, w, b)

        timings = {name: measure(fn) for name, fn in (("ours", ours), ("cublas", cublas), ("linear", plain_linear))}
        err = (y.float() - F.gelu(F.linear(x.float(), w.float(), b.float()))).abs().max().item()
        assert err < 0.05, f"M={M} K={K} N={N}: ours is off torch fp32 by {err}"
        config = linear_module._linear_kernel.best_config
        (o, og, oh), (c, cg, ch), (lin, ling, _) = timings["ours"], timings["cublas"], timings["linear"]
        tflops = 2 * M * N * K / (o * 1e-6) / 1e12
        rows.append(
            f"{M:>5} {K:>5} {N:>5} | {o:7.1f} {c:7.1f} {lin:7.1f} {c / o:5.2f} | "
            f"{og:7.1f} {cg:7.1f} {ling:7.1f} {cg / og:5.2f} | {tflops:7.1f} {tflops / PEAK_TFLOPS:5.1%} | "
            f"{oh:7.1f} {ch:7.1f} | {config.kwargs['BLOCK_M']}x{config.kwargs['BLOCK_N']}x"
            f"{config.kwargs['BLOCK_K']} w{config.num_warps} s{config.num_stages}"
        )
        print(rows[-1], flush=True)

    print("\ntimes in microseconds (median); _g: CUDA graph replay; host_us: wall time per call, back to back")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
