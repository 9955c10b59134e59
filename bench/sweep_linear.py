"""Time every candidate config of both GEMM kernels on given shapes: what tuning/*.yaml should hold.

    PYTHONPATH=. python3 bench/sweep_linear.py [--shapes issue|models|all|focus] [--tma-only]
        [--epilogue gelu|quick_gelu|none|residual] [--stores pointer,tma,tma_split] [--extra] [--only NAMES]
        [--n 768,3072]

For each shape (fp16; epilogue: bias + gelu (default), bias only, or bias + residual) and each
config of tuning/linear.yaml (pointer kernel) and tuning/linear_tma.yaml (TMA kernel; with --extra
also the candidates in EXTRA_TMA below, which the YAML does not hold), the config
is forced into linear()'s tuned-config table and timed by CUDA-graph replay (median), once per
STORE variant given (TMA kernel); cuBLAS (F.linear, then F.gelu or the residual add as separate
kernels, as eager torch runs them) is timed beside it. A config that fails to compile is
reported and skipped. Prints, per shape, the best config of each kernel and its ratio to cuBLAS.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
import triton
import triton.testing

from eet_triton.kernels import linear as lin
from eet_triton.kernels._common import shape_bucket, tuning_configs
from eet_triton.kernels.activations import kernel_activation
from bench._out import save

ISSUE = [(m, k, n) for m in (64, 6400, 9856) for k, n in [(768, 2304), (768, 3072), (3072, 768), (512, 1536), (512, 2048), (2048, 512)]]
# BERT-base at batch 1 and 32 (seq 128); CLIP ViT-B/32 at batch 32: vision 50 tokens x 768, text 77 x 512.
MODELS = (
    [(m, 768, n) for m in (128, 4096) for n in (2304, 768, 3072)] + [(128, 3072, 768), (4096, 3072, 768)]
    + [(1600, 768, n) for n in (2304, 768, 3072)] + [(1600, 3072, 768)]
    + [(2464, 512, n) for n in (1536, 512, 2048)] + [(2464, 2048, 512)]
)

# The model GEMMs with each epilogue (M, K, N): BERT-base b32, CLIP b32 and b128 (vision 50 and text 77 tokens).
FOCUS = {
    "residual": [(4096, 768, 768), (4096, 3072, 768), (2464, 512, 512), (2464, 2048, 512), (1600, 768, 768),
                 (1600, 3072, 768), (6400, 768, 768), (6400, 3072, 768), (9856, 512, 512), (9856, 2048, 512)],
    "gelu": [(4096, 768, 3072), (6400, 768, 3072), (9856, 512, 2048)],
    "quick_gelu": [(1600, 768, 3072), (2464, 512, 2048), (6400, 768, 3072), (9856, 512, 2048)],
    "none": [(4096, 768, 2304), (6400, 768, 2304), (9856, 512, 1536)],
}


def _tma_config(block_m, block_n, block_k, warps, stages, store="pointer", occupancy=1, tail=False, maxnreg=None):
    return triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n, "BLOCK_K": block_k, "GROUP_M": 8, "FLATTEN": False,
                          "OCCUPANCY": occupancy, "STORE": store, "TAIL": tail}, num_warps=warps, num_stages=stages,
                         maxnreg=maxnreg)


# Candidates the YAML lacks (two of the first sweep's are in it now: 128x128x64 w4 s2, 128x128x32 w4 s4),
# for the FFN1s on the one-program-per-tile grid: fewer stages, so that
# more programs share an SM and one's epilogue overlaps another's main loop (128x128x64: 32 KB of
# shared memory a stage; 128x64x64: 24 KB; an H100/H200 SM has 227 KB).
EXTRA_TMA = [
    _tma_config(128, 128, 64, 4, 2, "tma_split"),
    _tma_config(128, 128, 64, 8, 2, "tma_split"),
    _tma_config(128, 128, 64, 8, 2),
    _tma_config(128, 128, 32, 8, 4, "tma_split"),
    _tma_config(128, 128, 32, 4, 3),
    _tma_config(128, 64, 64, 4, 3),
    _tma_config(128, 64, 64, 4, 2),
    _tma_config(128, 256, 64, 8, 2, "tma_split"),
    _tma_config(256, 128, 64, 8, 2, "tma_split"),
    # the last round split into half-height tiles (TAIL), at the residency each config has
    _tma_config(128, 128, 64, 4, 4, tail=True),
    _tma_config(128, 128, 64, 8, 4, tail=True),
    _tma_config(128, 128, 64, 4, 3, occupancy=2, tail=True),
    _tma_config(128, 128, 64, 4, 2, occupancy=2, tail=True),
    _tma_config(128, 128, 64, 4, 2, occupancy=3, tail=True),
    _tma_config(128, 256, 64, 8, 3, tail=True),
    # register caps: scripts/compile_check.py finds the QKV GEMM (no epilogue) at 183-184 registers
    # with 4 warps, two programs per SM; capped at 168, three fit (24 bytes spilled). The 2-stage
    # one won the QKV GEMMs (linear run 10) and is in the YAML (as 3/SM); the 3-stage one lost.
    _tma_config(128, 128, 64, 4, 3, maxnreg=168),
    # three per SM for the residual epilogue (249 registers uncapped): residual by TMA, finished in
    # two halves, capped (8 / 24 bytes spilled); 128x64 tiles uncapped. Lost on every residual
    # GEMM but text b32 O (6.9 vs 7.1 us): linear run 10.
    _tma_config(128, 128, 32, 4, 3, "tma_split", occupancy=3, maxnreg=168),
    _tma_config(128, 128, 32, 4, 3, "tma_split", occupancy=3, tail=True, maxnreg=168),
    _tma_config(128, 64, 64, 4, 3, occupancy=3),
]


def graph_us(fn):
    return triton.testing.do_bench_cudagraph(fn, rep=10, return_mode="median") * 1e3


def describe(config):
    c = config.kwargs
    flat = " flat" if c.get("FLATTEN") else ""
    store = f" {c['STORE']}" if "STORE" in c else ""
    occupancy = f" {c['OCCUPANCY']}/SM" if c.get("OCCUPANCY", 1) > 1 else ""
    tail = " tail" if c.get("TAIL") else " stagger" if c.get("STAGGER") else ""
    cap = f" r{config.maxnreg}" if getattr(config, "maxnreg", None) else ""
    width = f"{c['BLOCK_N']}+{c['EXTRA_N']}" if c.get("EXTRA_N") else f"{c['BLOCK_N']}"
    return (f"{c['BLOCK_M']}x{width}x{c['BLOCK_K']} w{config.num_warps} s{config.num_stages}{flat}{occupancy}"
            f"{store}{tail}{cap}")


def candidates_from(configs, M, N, K):
    return lin._prune_configs(configs, {"M_BUCKET": shape_bucket(M), "N": N, "K": K}, HAS_GATE=False)


def candidates(family, M, N, K):
    return candidates_from(tuning_configs(family), M, N, K)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tma-only", action="store_true", help="skip the pointer kernel's configs")
    parser.add_argument("--shapes", choices=["issue", "models", "all", "focus"], default="all",
                        help="focus: the model GEMMs that take the chosen epilogue")
    parser.add_argument("--epilogue", choices=["gelu", "quick_gelu", "none", "residual"], default="gelu")
    parser.add_argument("--extra", action="store_true", help="also time EXTRA_TMA (TMA kernel)")
    parser.add_argument("--only", default="", help="comma-separated config names (as printed): time only those")
    parser.add_argument("--stores", default="", help="comma-separated STORE values to try on every TMA config")
    parser.add_argument("--n", default="", help="comma-separated N values: only the shapes with these")
    args = parser.parse_args()
    stores = [v for v in args.stores.split(",") if v]
    activation = args.epilogue if args.epilogue in ("gelu", "quick_gelu") else None
    shapes = {"issue": ISSUE, "models": MODELS, "all": ISSUE + MODELS, "focus": FOCUS[args.epilogue]}[args.shapes]
    if args.n:
        shapes = [s for s in shapes if str(s[2]) in args.n.split(",")]
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}, fp16, epilogue {args.epilogue}")
    summary = []
    failed = set()
    for M, K, N in shapes:
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        w = (torch.randn(N, K, device="cuda") / math.sqrt(K)).half()
        b = torch.randn(N, device="cuda", dtype=torch.float16)
        y = torch.empty(M, N, device="cuda", dtype=torch.float16)
        r = torch.randn(M, N, device="cuda", dtype=torch.float16) if args.epilogue == "residual" else None
        want = F.linear(x.float(), w.float(), b.float())
        if args.epilogue == "gelu":
            want = F.gelu(want)
            cublas = graph_us(lambda: F.gelu(F.linear(x, w, b)))
        elif args.epilogue == "quick_gelu":  # as transformers' QuickGELUActivation runs it
            want = want * torch.sigmoid(1.702 * want)
            cublas = graph_us(lambda: (lambda h: h * torch.sigmoid(1.702 * h))(F.linear(x, w, b)))
        elif args.epilogue == "residual":
            want = want + r.float()
            cublas = graph_us(lambda: F.linear(x, w, b) + r)
        else:
            cublas = graph_us(lambda: F.linear(x, w, b))
        best = {}
        for family, use_tma in (("linear_tma", True), ("linear", False))[: 1 if args.tma_only else 2]:
            lin.TMA_ENABLED = use_tma
            key = lin.TuneKey(shape_bucket(M), N, K, False, torch.float16, use_tma,
                              kernel_activation(activation, torch.float16), r is not None)
            configs = candidates(family, M, N, K)
            if use_tma and args.extra:
                configs += candidates_from(EXTRA_TMA, M, N, K)
            if args.only:
                configs = [c for c in configs if describe(c) in args.only.split(",")]
            if use_tma and stores:
                configs = [
                    triton.Config({**c.kwargs, "STORE": v}, num_warps=c.num_warps, num_stages=c.num_stages,
                                  maxnreg=c.maxnreg)
                    for c in configs for v in stores
                ]
            for config in configs:
                name = describe(config)
                if (family, name) in failed:
                    continue
                lin._TUNED[key] = config
                try:
                    y.fill_(float("nan"))
                    lin.linear(x, w, b, activation=activation, residual=r, out=y)
                    err = (y.float() - want).abs().max().item()
                    t = graph_us(lambda: lin.linear(x, w, b, activation=activation, residual=r, out=y))
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
    text = f"## linear sweep (fp16, epilogue {args.epilogue}, CUDA-graph us; ratio = cuBLAS / ours)\n```\n" + header + "\n" + "\n".join(summary) + "\n```\n"
    print("\n" + text)
    save(f"summary_sweep_linear_{args.epilogue}.md", text)


if __name__ == "__main__":
    main()
