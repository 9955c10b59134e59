"""Where a model's GPU time goes: eet_triton's kernels per forward, by kernel, from torch.profiler.

    PYTHONPATH=. python3 bench/profile_models.py

Random-initialised BERT-base (batch 1 and 32, 128 tokens) and CLIP ViT-B/32 (batch 32), fp16,
run eagerly (no CUDA graph, so each kernel is its own record; kernel times are the graph's) after
warm-up; prints per model the GPU microseconds per forward of each kernel family and their sum,
beside the CUDA-graph forward time (the difference is the gaps between kernels in the graph).

Run it after the benchmarks, with the kernel cache warm (`scripts/gpu_suite.sh bench` does): on
a cold machine the first forwards tune and compile every kernel, which took more than 170 s
before the first case finished on an H200.
"""

from __future__ import annotations

import collections
import os
import tempfile
from pathlib import Path

import torch

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
from bench.bench_models import save_random
from eet_triton.tools.bench import median_ms
from eet_triton.tools.hf import cast_inputs, load_hf, make_inputs

CASES = [("bert", 1, 128), ("bert", 32, 128), ("clip", 32, 77)]
STEPS = 5


def family(kernel_name: str) -> str:
    for key in ("linear_tma", "linear", "attention", "layernorm", "layer_norm", "embedding", "patch"):
        if key in kernel_name:
            return key
    return kernel_name[:40]


def profile(path: Path, batch: int, seq: int) -> str:
    hf = load_hf(path, torch.float16, torch.device("cuda"), attn_implementation="sdpa")
    inputs = cast_inputs(make_inputs(hf, batch, seq, torch.device("cuda"), seed=batch), torch.float16)
    del hf
    eager = eet_triton.load(path, device=0, dtype="fp16", use_cuda_graph=False)
    graphed = eet_triton.load(path, device=0, dtype="fp16", use_cuda_graph=True)
    with torch.inference_mode():
        graph_ms = median_ms(lambda: graphed(**inputs))
        for _ in range(3):
            eager(**inputs)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(STEPS):
                eager(**inputs)
            torch.cuda.synchronize()
    per_family = collections.Counter()
    counts = collections.Counter()
    for event in prof.key_averages():
        if event.device_type == torch.autograd.DeviceType.CUDA and event.device_time_total > 0:
            per_family[family(event.key)] += event.device_time_total / STEPS
            counts[family(event.key)] += event.count // STEPS
    total = sum(per_family.values())
    lines = [f"| {name} | {counts[name]} | {us:.1f} | {us / total:.0%} |" for name, us in per_family.most_common(12)]
    return (f"graph forward {graph_ms * 1e3:.1f} us; kernels sum {total:.1f} us per forward "
            f"(gaps in the graph ~{graph_ms * 1e3 - total:.1f} us)\n\n| kernel | launches | us | share |\n| --- | ---: | ---: | ---: |\n"
            + "\n".join(lines))


def main():
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {kind: save_random(kind, Path(tmp) / kind) for kind in {c[0] for c in CASES}}
        for kind, batch, seq in CASES:
            print(f"profiling {kind} batch {batch} ...", flush=True)
            text = profile(paths[kind], batch, seq)
            out.append(f"### {kind} batch {batch} ({torch.cuda.get_device_name()}, fp16)\n\n{text}\n")
            print(out[-1], flush=True)
    if os.environ.get("EET_BENCH_OUT"):
        Path(os.environ["EET_BENCH_OUT"], "summary_profile.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
