"""A runtime switch off and on, side by side: CUDA-graph forward time, fp16, random init; the
outputs of the two must agree bit for bit (each switch changes when kernels run, not what they
compute), but for gelu's.

    PYTHONPATH=. python3 bench/bench_switch.py [pdl|towers|persistent|tail|gelu ...]     (default: all)

pdl: programmatic dependent launch (kernels._common.PDL_ENABLED), on BERT-base (batch 1 and 32,
128 tokens) and CLIP ViT-B/32 (batch 1 and 32). towers: CLIP's text and vision towers on two
streams (runtime.streams.CONCURRENT), CLIP ViT-B/32 at batch 1, 32 and 128. persistent: GEMMs on
a persistent grid or one program per tile (kernels.linear.PERSISTENT), CLIP at batch 32 and 128 (the
towers share the SMs) and BERT at batch 32. tail: TAIL configs split their last round of tiles
(kernels.linear.SPLIT_TAIL) or run it whole, CLIP at batch 128 (the tuned picks are the same).
gelu: the erf gelu epilogue of fp16/bf16 GEMMs as gelu_lean or libdevice's erff
(kernels.activations.LEAN_GELU), BERT-base at batch 32 and 1; outputs differ in the last bits.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
from bench.bench_models import save_random
from eet_triton.kernels import _common, activations, linear
from eet_triton.runtime import streams
from eet_triton.tools.bench import median_ms
from eet_triton.tools.hf import cast_inputs, load_hf, make_inputs
from bench._out import save

# name -> (module, attribute, cases (model, batch, sequence length))
SWITCHES = {
    "pdl": (_common, "PDL_ENABLED", [("bert", 1, 128), ("bert", 32, 128), ("clip", 1, 77), ("clip", 32, 77)]),
    "towers": (streams, "CONCURRENT", [("clip", 1, 77), ("clip", 32, 77), ("clip", 128, 77)]),
    "persistent": (linear, "PERSISTENT", [("clip", 32, 77), ("clip", 128, 77), ("bert", 32, 128)]),
    "tail": (linear, "SPLIT_TAIL", [("clip", 128, 77)]),
    "gelu": (activations, "LEAN_GELU", [("bert", 32, 128), ("bert", 1, 128)]),
}


def model_inputs(path: Path, batch: int, seq: int) -> dict:
    """fp16 CUDA inputs for the checkpoint at `path`, made as transformers' model takes them."""
    hf = load_hf(path, torch.float16, torch.device("cuda"), attn_implementation="sdpa")
    return cast_inputs(make_inputs(hf, batch, seq, torch.device("cuda"), seed=batch), torch.float16)


def interleaved_ms(models: dict, inputs: dict, rounds: int = 3) -> dict:
    """Graph-replay milliseconds of each model on `inputs`: the min over `rounds` interleaved medians,
    so drift hits every model alike."""
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(median_ms(lambda: model(**inputs)))
    return {name: min(t) for name, t in times.items()}


def main(names: list[str]) -> int:
    rows = ["| switch | model | batch | off ms | on ms | on/off | same output |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        paths = {}
        for name in names:
            module, attribute, cases = SWITCHES[name]
            for kind, batch, seq in cases:
                if kind not in paths:
                    paths[kind] = save_random(kind, Path(tmp) / kind)
                inputs = model_inputs(paths[kind], batch, seq)
                models, outputs = {}, {}
                default = getattr(module, attribute)
                # the default's model first, so tuning (once per process) runs as it does in use;
                # each model captures its graph under its own setting
                for on in (default, not default):
                    setattr(module, attribute, on)
                    models[on] = eet_triton.load(paths[kind], device=0, dtype="fp16")
                    outputs[on] = models[on](**inputs)[0].clone()
                setattr(module, attribute, default)
                times = interleaved_ms(models, inputs)
                off_ms, on_ms = times[False], times[True]
                same = torch.equal(outputs[False], outputs[True])
                rows.append(f"| {name} | {kind} | {batch} | {off_ms:.4f} | {on_ms:.4f} | {on_ms / off_ms:.3f} | {same} |")
                print(rows[-1], flush=True)
                del models, outputs
    text = "\n".join(rows) + "\n"
    print(text)
    save("summary_switch.md", text)
    return 0


if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SWITCHES)
    unknown = [n for n in chosen if n not in SWITCHES]
    if unknown:
        sys.exit(f"unknown switch {', '.join(unknown)}; choose from {', '.join(SWITCHES)}")
    sys.exit(main(chosen))
