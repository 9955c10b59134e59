"""linear() with a fused gelu epilogue against cuBLAS linear-then-gelu, fp16, on one GPU.

    PYTHONPATH=. python3 bench/bench_linear.py [--quick]

Contenders, all in the same run on the same random data:
  ours     linear(x, w, b, activation="gelu", out=y)  (one kernel)
  cublas   F.gelu(F.linear(x, w, b))                   (cuBLAS GEMM + bias, then an elementwise kernel)
  ours-    linear(x, w, b, out=y2)                     (our GEMM without the activation)
  F.lin    F.linear(x, w, b)                           (cuBLAS alone: what the fusion has to hide the gelu in)
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

from bench.sweep_linear import describe
from eet_triton.kernels import linear as linear_module
from eet_triton.kernels.linear import linear
from bench._out import save

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
    fn()  # tunes ours on first use
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
        f"{'M':>5} {'K':>5} {'N':>5} | {'ours':>6} {'cublas':>6} {'ratio':>5} | {'ours':>6} {'cublas':>6} {'ratio':>5} "
        f"{'ours-':>6} {'F.lin':>6} | {'TFLOP/s':>7} {'floor':>5} {'TFLOP/s':>7} {'floor':>5} | {'ours':>5} {'cublas':>6} | config"
    )
    for M, K, N in shapes:
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        w = (torch.randn(N, K, device="cuda") / math.sqrt(K)).half()
        b = torch.randn(N, device="cuda", dtype=torch.float16)
        y = torch.empty(M, N, device="cuda", dtype=torch.float16)
        y_plain = torch.empty(M, N, device="cuda", dtype=torch.float16)

        contenders = {
            "ours": lambda: linear(x, w, b, activation="gelu", out=y),
            "cublas": lambda: F.gelu(F.linear(x, w, b)),
            "ours_noact": lambda: linear(x, w, b, out=y_plain),
            "linear": lambda: F.linear(x, w, b),
        }
        t = {name: measure(fn) for name, fn in contenders.items()}
        err = (y.float() - F.gelu(F.linear(x.float(), w.float(), b.float()))).abs().max().item()
        assert err < 0.05, f"M={M} K={K} N={N}: ours is off torch fp32 by {err}"
        key, config = next((k, c) for k, c in linear_module._TUNED.items()  # the "ours" contender's pick
                           if (k.m_bucket, k.n, k.k, k.gated, k.dtype, k.activation, k.residual)
                           == (triton.next_power_of_2(M), N, K, False, torch.float16, "gelu", False))
        flop = 2 * M * N * K
        (o, og, oh), (c, cg, ch) = t["ours"], t["cublas"]
        tf_plain, tf_graph = flop / (o * 1e-6) / 1e12, flop / (og * 1e-6) / 1e12
        rows.append(
            f"{M:>5} {K:>5} {N:>5} | {o:6.1f} {c:6.1f} {c / o:5.2f} | {og:6.1f} {cg:6.1f} {cg / og:5.2f} "
            f"{t['ours_noact'][1]:6.1f} {t['linear'][1]:6.1f} | {tf_plain:7.1f} {tf_plain / PEAK_TFLOPS:5.1%} "
            f"{tf_graph:7.1f} {tf_graph / PEAK_TFLOPS:5.1%} | {oh:5.0f} {ch:6.0f} | "
            f"{describe(config)}{' tma' if key.tma else ''}"
        )
        print(rows[-1], flush=True)

    print(
        "\ntimes in us (median). First block: do_bench (L2 flushed before each call, host launch cost shows"
        "\nwhen it exceeds the flush). Second block: CUDA-graph replay (GPU time only); ours- = ours without"
        "\nactivation, F.lin = cuBLAS F.linear alone. TFLOP/s = 2MNK/time (do_bench, then graph); floor = share"
        f"\nof {PEAK_TFLOPS:.0f} TFLOP/s. Last block: host us per call, back to back. ratio = cublas/ours (>= 0.85 target)."
    )
    print(f"{'':17}| {'do_bench':^20} | {'CUDA graph':^34} | {'':^29} | {'host us':^12} |")
    print(header)
    print("\n".join(rows))
    save("summary_linear.md", "## linear (fp16, us; ratio = cublas/ours, target >= 0.85)\n```\n" + header + "\n"
         + "\n".join(rows) + "\n```")


if __name__ == "__main__":
    main()
