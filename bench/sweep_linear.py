"""Time every candidate config of both GEMM kernels on given shapes: what tuning/*.yaml should hold.

    PYTHONPATH=. python3 bench/sweep_linear.py [--shapes issue|models|all] [--tma-only]

For each shape (fp16, gelu epilogue, no residual) and each config of tuning/linear.yaml (pointer
kernel) and tuning/linear_tma.yaml (TMA kernel), the config is forced into linear()'s tuned-config table and timed by CUDA-graph
replay (median); cuBLAS F.gelu(F.linear) is timed beside it. A config that fails to compile is
reported and skipped. Prints, per shape, the best config of each kernel and its ratio to cuBLAS.
"""

from __future__ import annotations

import argparse
import math
import os

import torch
import torch.nn.functional as F

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
import triton
import triton.testing

from eet_triton.kernels import linear as lin
from eet_triton.kernels._common import shape_bucket, tuning_configs

ISSUE = [(m, k, n) for m in (64, 6400, 9856) for k, n in [(768, 2304), (768, 3072), (3072, 768), (512, 1536), (512, 2048), (2048, 512)]]
# BERT-base at batch 1 and 32 (seq 128); CLIP ViT-B/32 at batch 32: vision 50 tokens x 768, text 77 x 512.
MODELS = (
    [(m, 768, n) for m in (128, 4096) for n in (2304, 768, 3072)] + [(128, 3072, 768), (4096, 3072, 768)]
    + [(1600, 768, n) for n in (2304, 768, 3072)] + [(1600, 3072, 768)]
    + [(2464, 512, n) for n in (1536, 512, 2048)] + [(2464, 2048, 512)]
)


def graph_us(fn):
    return triton.testing.do_bench_cudagraph(fn, rep=10, return_mode="median") * 1e3


def describe(config):
    c = config.kwargs
    flat = " flat" if c.get("FLATTEN") else ""
    occupancy = f" {c['OCCUPANCY']}/SM" if c.get("OCCUPANCY", 1) > 1 else ""
    return f"{c['BLOCK_M']}x{c['BLOCK_N']}x{c['BLOCK_K']} w{config.num_warps} s{config.num_stages}{flat}{occupancy}"


def candidates(family, M, N, K):
    return lin._prune_configs(tuning_configs(family), {"M_BUCKET": shape_bucket(M), "N": N, "K": K}, HAS_GATE=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tma-only", action="store_true", help="skip the pointer kernel's configs")
    parser.add_argument("--shapes", choices=["issue", "models", "all"], default="all")
    args = parser.parse_args()
    shapes = {"issue": ISSUE, "models": MODELS, "all": ISSUE + MODELS}[args.shapes]
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, fp16, gelu")
    summary = []
    failed = set()
    for M, K, N in shapes:
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        w = (torch.randn(N, K, device="cuda") / math.sqrt(K)).half()
        b = torch.randn(N, device="cuda", dtype=torch.float16)
        y = torch.empty(M, N, device="cuda", dtype=torch.float16)
        want = F.gelu(F.linear(x.float(), w.float(), b.float()))
        cublas = graph_us(lambda: F.gelu(F.linear(x, w, b)))
        best = {}
        for family, use_tma in (("linear_tma", True), ("linear", False))[: 1 if args.tma_only else 2]:
            lin.TMA_ENABLED = use_tma
            key = (shape_bucket(M), N, K, False, torch.float16, use_tma)
            for config in candidates(family, M, N, K):
                name = describe(config)
                if (family, name) in failed:
                    continue
                lin._TUNED[key] = config
                try:
                    y.fill_(float("nan"))
                    lin.linear(x, w, b, activation="gelu", out=y)
                    err = (y.float() - want).abs().max().item()
                    t = graph_us(lambda: lin.linear(x, w, b, activation="gelu", out=y))
                except Exception as e:  # noqa: BLE001  (report and go on: a sweep, not a test)
                    failed.add((family, name))
                    print(f"  {family} {name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
                    continue
                status = "" if err < 0.05 else f"  WRONG (err {err:.3g})"
                print(f"{M:>5} {K:>5} {N:>5} {family:>10} {name:<28} {t:8.1f} us  {cublas / t:5.2f}x{status}", flush=True)
                if not status and (family not in best or t < best[family][0]):
                    best[family] = (t, name)
            lin._TUNED.pop(key, None)
        lin.TMA_ENABLED = True
        flop = 2 * M * N * K
        t_tma, n_tma = best.get("linear_tma", (float("nan"), "-"))
        t_ptr, n_ptr = best.get("linear", (float("nan"), "-"))
        summary.append(
            f"{M:>5} {K:>5} {N:>5} | {cublas:7.1f} | {t_tma:7.1f} {cublas / t_tma:5.2f} {flop / t_tma / 1e6:6.0f} {n_tma:<30}"
            f"| {t_ptr:7.1f} {cublas / t_ptr:5.2f} {n_ptr}"
        )
    header = f"{'M':>5} {'K':>5} {'N':>5} | {'cuBLAS':>7} | {'TMA':>7} {'ratio':>5} {'TFLOPs':>6} {'best TMA config':<30}| {'pointer':>7} {'ratio':>5} best pointer config"
    text = "## linear sweep (fp16 + gelu, CUDA-graph us; ratio = cuBLAS lin+gelu / ours)\n```\n" + header + "\n" + "\n".join(summary) + "\n```\n"
    print("\n" + text)
    if os.environ.get("EET_BENCH_OUT"):
        with open(os.path.join(os.environ["EET_BENCH_OUT"], "summary_sweep_linear.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
