"""Programmatic dependent launch on and off, side by side: CUDA-graph forward time of BERT-base
(batch 1 and 32, 128 tokens) and CLIP ViT-B/32 (batch 1 and 32), fp16, random init; outputs of
the two must agree bit for bit (PDL changes when kernels start, not what they compute).

    PYTHONPATH=. python3 bench/bench_pdl.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

import eet_triton  # noqa: F401  (first: picks compiled vs interpreted Triton)
from bench.bench_models import save_random
from eet_triton.kernels import _common
from eet_triton.tools.bench import median_ms
from eet_triton.tools.hf import cast_inputs, load_hf, make_inputs

CASES = [("bert", 1, 128), ("bert", 32, 128), ("clip", 1, 77), ("clip", 32, 77)]


def main() -> int:
    rows = ["| model | batch | PDL off ms | PDL on ms | on/off | same output |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        paths = {kind: save_random(kind, Path(tmp) / kind) for kind in {c[0] for c in CASES}}
        for kind, batch, seq in CASES:
            hf = load_hf(paths[kind], torch.float16, torch.device("cuda"), attn_implementation="sdpa")
            inputs = cast_inputs(make_inputs(hf, batch, seq, torch.device("cuda"), seed=batch), torch.float16)
            del hf
            models, outputs = {}, {}
            for pdl in (False, True):  # each model captures its graph under its own setting
                _common.PDL_ENABLED = pdl
                models[pdl] = eet_triton.load(paths[kind], device=0, dtype="fp16")
                outputs[pdl] = models[pdl](**inputs)[0].clone()
            _common.PDL_ENABLED = True
            times = {pdl: [] for pdl in models}
            for _ in range(3):  # interleaved, so drift hits both
                for pdl, model in models.items():
                    times[pdl].append(median_ms(lambda: model(**inputs)))
            off, on = min(times[False]), min(times[True])
            same = torch.equal(outputs[False], outputs[True])
            rows.append(f"| {kind} | {batch} | {off:.4f} | {on:.4f} | {on / off:.3f} | {same} |")
            print(rows[-1], flush=True)
            del models, outputs
    text = "\n".join(rows) + "\n"
    print(text)
    if os.environ.get("EET_BENCH_OUT"):
        Path(os.environ["EET_BENCH_OUT"], "summary_pdl.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
