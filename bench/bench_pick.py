"""One GEMM tuning pick against another inside a whole model, side by side (CUDA-graph forward).

The question the per-GEMM sweeps cannot answer: each sweep GEMM has the GPU to itself, while in
CLIP the other tower's kernels share the SMs.

    PYTHONPATH=. python3 bench/bench_pick.py [--model clip|bert] [--batch 128] [--stages 2]
        [--config "128x128x64 w4 s3 2/SM pointer"] [--without wide|stagger]

Loads the model and runs it once (tuning every GEMM as in use, capturing its CUDA graph: model
A). Then every tuned TMA GEMM pick with `--stages` pipeline stages is replaced by `--config` (a
name as bench/sweep_linear.py prints it, from tuning/linear_tma.yaml) and a second instance is
loaded and run (model B: its graph captures the replaced picks; A's keeps its own). Prints the
replaced picks, then both forwards timed interleaved (three rounds, min of medians, graph replay)
and whether their outputs agree bit for bit. With EET_BENCH_OUT set, also writes summary_pick.md.
--without wide|stagger: instead, every pick that is a wide tile (EXTRA_N) or a staggered grid
(STAGGER) is tuned again without those configs, so B is the model as it would be tuned had the
YAML none (its outputs may differ in the last bit: another tile sums in another order).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
from bench.bench_models import save_random
from bench.sweep_linear import describe
from eet_triton.kernels import linear
from eet_triton.kernels._common import tuning_configs
from bench._out import save
from bench.bench_switch import interleaved_ms, model_inputs


# --without's choices: the config flag that marks those picks
WITHOUT = {"wide": "EXTRA_N", "stagger": "STAGGER"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["clip", "bert"], default="clip")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--stages", type=int, default=2, help="replace the picks with this many stages")
    parser.add_argument("--config", default="128x128x64 w4 s3 2/SM pointer", help="what replaces them")
    parser.add_argument("--without", choices=sorted(WITHOUT),
                        help="B: the picks of that kind (wide tiles, staggered grids) tuned again without them")
    args = parser.parse_args()
    by_name = {describe(c): c for c in tuning_configs("linear_tma")}
    if args.config not in by_name:
        raise SystemExit(f"no config named {args.config!r} in tuning/linear_tma.yaml; one of: {', '.join(by_name)}")
    seq = 77 if args.model == "clip" else 128
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        path = save_random(args.model, Path(tmp) / args.model)
        inputs = model_inputs(path, args.batch, seq)
        models = {"A (tuned picks)": eet_triton.load(path, device=0, dtype="fp16")}
        outputs = {"A (tuned picks)": models["A (tuned picks)"](**inputs)[0].clone()}
        def pick(key, config):
            return f"  M bucket {key.m_bucket}, N {key.n}, K {key.k}: {describe(config)}"

        replaced, retuned = [], []
        if args.without:
            flag = WITHOUT[args.without]
            tuner = linear._linear_tma_kernel
            tuner.configs = [c for c in tuner.configs if not c.kwargs.get(flag)]
            tuner.cache.clear()  # (the on-disk results are keyed by the config list too)
            retuned = [k for k, c in linear._TUNED.items() if c.kwargs.get(flag)]
            for key in retuned:
                replaced.append(pick(key, linear._TUNED.pop(key)))
            label = f"B ({args.without} picks tuned again without them)"
        else:
            for key, config in linear._TUNED.items():
                if key.tma and config.num_stages == args.stages:
                    replaced.append(f"{pick(key, config)} -> {args.config}")
                    linear._TUNED[key] = by_name[args.config]
            label = f"B ({args.stages}-stage picks replaced)"
        print(f"replaced {len(replaced)} picks:\n" + "\n".join(replaced), flush=True)
        models[label] = eet_triton.load(path, device=0, dtype="fp16")
        outputs[label] = models[label](**inputs)[0].clone()
        if retuned:
            print("B's picks for them:\n" + "\n".join(pick(k, linear._TUNED[k]) for k in retuned), flush=True)
        a, b = interleaved_ms(models, inputs).values()
    same = torch.equal(*outputs.values())
    text = (f"| model | batch | A ms | B ms | B/A | same output |\n| --- | ---: | ---: | ---: | ---: | --- |\n"
            f"| {args.model} | {args.batch} | {a:.4f} | {b:.4f} | {b / a:.3f} | {same} |\n")
    print(text)
    save("summary_pick.md", "\n".join(replaced) + "\n\n" + text)


if __name__ == "__main__":
    main()
