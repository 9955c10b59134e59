"""Where a model's GPU time goes, kernel by kernel: eet_triton beside torch.compile, from torch.profiler.

    PYTHONPATH=. python3 bench/profile_models.py [--no-compile]

Random-initialised BERT-base (batch 1 and 32, 128 tokens) and CLIP ViT-B/32 (batch 32 and 128),
fp16. Each contender runs eagerly (no CUDA graph, so every kernel is its own record; the kernels
are the graph's) after warm-up: eet_triton with use_cuda_graph=False, and torch.compile(default
mode, the same Inductor kernels as "reduce-overhead" without its graphs). Prints per model and
contender the GPU microseconds per forward of each kernel family, and writes every kernel of one
forward in launch order (name, microseconds, averaged over the profiled forwards) to
$EET_BENCH_OUT/profile_<model>_b<batch>.json, so that the same GEMM can be compared across
contenders by position (nothing is written when EET_BENCH_OUT is unset: bench/_out.py).

Run it with the kernel cache warm (after the benchmarks, as `scripts/gpu_suite.sh bench` does):
on a cold machine the first forwards tune and compile every kernel (170 s on an H200).
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
from bench._out import save
from bench.bench_models import save_random
from eet_triton.tools.hf import cast_inputs, load_hf, make_inputs

CASES = [("bert", 1, 128), ("bert", 32, 128), ("clip", 32, 77), ("clip", 128, 77)]
STEPS = 5


def family(kernel_name: str) -> str:
    """A coarse kernel family from a kernel's name, for either contender."""
    name = kernel_name.lower()
    for key, families in (
        ("gemm", ("linear", "gemm", "cutlass", "xmma", "sm90_", "cublas")),
        ("attention", ("attention", "flash", "fmha", "attn")),
        ("norm", ("layernorm", "layer_norm", "native_layer_norm", "rms")),
        ("embedding", ("embedding", "patch")),
    ):
        if any(f in name for f in families):
            return key
    return "other: " + kernel_name[:48]


def kernel_sequence(forward, steps: int = STEPS) -> list[tuple[str, float, list]]:
    """[(kernel name, GPU us, grid)] of one forward in launch order, each averaged over `steps` forwards."""
    for _ in range(3):
        forward()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            forward()
        torch.cuda.synchronize()
    with tempfile.NamedTemporaryFile(suffix=".json") as trace:  # the trace's kernel records are the reliable ones
        prof.export_chrome_trace(trace.name)
        events = json.loads(Path(trace.name).read_text())["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    per_step = len(kernels) // steps
    if per_step * steps != len(kernels):
        print(f"  note: {len(kernels)} kernels over {steps} forwards; positions approximate")
    sequence = []
    for i in range(per_step):
        same = [kernels[s * per_step + i] for s in range(steps)]
        grid = same[0].get("args", {}).get("grid")
        sequence.append((same[0]["name"], sum(e["dur"] for e in same) / steps, grid))
    return sequence


def summary(sequence: list[tuple[str, float, list]]) -> str:
    per_family, counts = collections.Counter(), collections.Counter()
    for name, us, _ in sequence:
        per_family[family(name)] += us
        counts[family(name)] += 1
    total = sum(per_family.values())
    lines = [f"| {name} | {counts[name]} | {us:.1f} | {us / total:.0%} |" for name, us in per_family.most_common(10)]
    return (f"kernels sum {total:.1f} us per forward\n\n| family | launches | us | share |\n| --- | ---: | ---: | ---: |\n"
            + "\n".join(lines))


def main() -> int:
    with_compile = "--no-compile" not in sys.argv
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {kind: save_random(kind, Path(tmp) / kind) for kind in {c[0] for c in CASES}}
        for kind, batch, seq in CASES:
            print(f"profiling {kind} batch {batch} ...", flush=True)
            hf = load_hf(paths[kind], torch.float16, torch.device("cuda"), attn_implementation="sdpa")
            inputs = cast_inputs(make_inputs(hf, batch, seq, torch.device("cuda"), seed=batch), torch.float16)
            ours = eet_triton.load(paths[kind], device=0, dtype="fp16", use_cuda_graph=False)
            contenders = {"eet_triton": lambda: ours(**inputs)}
            if with_compile:
                compiled = torch.compile(hf, dynamic=False)
                contenders["torch.compile"] = lambda: compiled(**inputs)
            record = {}
            with torch.inference_mode():
                for name, forward in contenders.items():
                    record[name] = kernel_sequence(forward)
                    text = f"### {kind} batch {batch}, {name} ({torch.cuda.get_device_name()}, fp16)\n\n{summary(record[name])}\n"
                    report.append(text)
                    print(text, flush=True)
            save(f"profile_{kind}_b{batch}.json", json.dumps(record, indent=0))
            del ours, hf, contenders
            torch.cuda.empty_cache()
    save("summary_profile.md", "\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
