"""Whole-model speed on the GPU: eet_triton (CUDA graphs) against transformers (sdpa) and
torch.compile(mode="reduce-overhead"), fp16, random-initialised full-size models:

  CLIP ViT-B/32 (CLIPModel: 77 text tokens with a padded row + 224x224 images), batch 1, 32, 128
  BERT-base (BertModel, 128 tokens with a padded row), batch 1, 32

plus peak GPU memory per contender at the largest batch, and the time eet_triton.load takes for a
local CLIP-B/32 checkpoint with the kernel cache warm (second load in the process). Prints tables
and the targets; with EET_BENCH_OUT set, also writes $EET_BENCH_OUT/summary_models.md.

    PYTHONPATH=. python3 bench/bench_models.py          (about 5 minutes on an H100, most of it
                                                          torch.compile warm-up)
    PYTHONPATH=. python3 bench/bench_models.py --only bert:32,clip:128 --no-load
        only those models and batches (one device call's worth), no load timing; the targets
        not measured show "-"
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import torch

import eet_triton  # noqa: F401  (first: picks the Triton interpreter or the GPU before triton loads)
from eet_triton.errors import DeviceError
from eet_triton.tools.bench import COMPILE, EET, HF, BenchResult, bench_checkpoint, load_seconds, require_gpu
from bench._out import save

CLIP_BATCHES = (1, 32, 128)
BERT_BATCHES = (1, 32)
CLIP_TOKENS, BERT_TOKENS = 77, 128
PEAK_TFLOPS = 760.0  # H100 SXM dense fp16 tensor-core peak, the floor a forward's time is held against


def save_random(kind: str, folder: Path) -> Path:
    """A full-size random-initialised checkpoint (seed 0) saved to folder: 'clip' or 'bert'."""
    from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()) if kind == "clip" else BertModel(BertConfig())
    model.save_pretrained(folder)
    return folder


def encoder_flops(batch: int, tokens: int, layers: int, hidden: int, ffn: int) -> float:
    """Multiply-adds x2 of a transformer encoder stack: QKV + output projections (8 h^2), FFN (4 h f)
    and attention scores and mixing (4 L h) per token per layer."""
    return 2.0 * batch * tokens * layers * (4 * hidden * hidden + 2 * hidden * ffn + 2 * tokens * hidden)


def model_flops(kind: str, batch: int) -> float:
    if kind == "bert":
        return encoder_flops(batch, BERT_TOKENS, 12, 768, 3072)
    patches = (224 // 32) ** 2
    patch_embed = 2.0 * batch * patches * 3 * 32 * 32 * 768
    return (encoder_flops(batch, CLIP_TOKENS, 12, 512, 2048) + encoder_flops(batch, patches + 1, 12, 768, 3072)
            + patch_embed)


def targets(clip: BenchResult | None, bert: BenchResult | None,
            load_s: float | None) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of the model benchmark; "-" and None where not measured."""
    rows = []

    def speedup(result, over, batch, want, label):
        x = None if result is None else result.speedup(over, batch)
        rows.append((f"{label} batch {batch}: >= {want}x {over}", "-" if x is None else f"{x:.2f}x",
                     None if x is None else x >= want))

    speedup(clip, COMPILE, 1, 1.5, "CLIP")
    speedup(clip, HF, 1, 10.0, "CLIP")
    for batch in (32, 128):
        speedup(clip, COMPILE, batch, 1.5, "CLIP")
    for batch in BERT_BATCHES:
        speedup(bert, COMPILE, batch, 1.3, "BERT")
    # peak memory is taken at a run's largest batch: it answers the target only when that is 128
    peaks = {t.contender: t.peak_mib for t in (clip.timings if clip else ())
             if t.peak_mib is not None and t.batch == max(CLIP_BATCHES)}
    ours, theirs = peaks.get(EET), peaks.get(HF)
    rows.append((f"CLIP peak memory at batch {max(CLIP_BATCHES)} <= transformers'",
                 "-" if ours is None or theirs is None else f"{ours:.0f} vs {theirs:.0f} MiB",
                 None if ours is None or theirs is None else ours <= theirs))
    rows.append(("CLIP-B/32 load, kernel cache warm: < 3 s", "-" if load_s is None else f"{load_s:.2f} s",
                 None if load_s is None else load_s < 3.0))
    return rows


def throughput_table(results: dict[str, BenchResult]) -> str:
    lines = ["| model | batch | contender | ms | TFLOP/s | % of 760 |", "| --- | ---: | --- | ---: | ---: | ---: |"]
    for kind, result in results.items():
        for t in result.timings:
            if t.ms:
                tflops = model_flops(kind, t.batch) / (t.ms * 1e-3) / 1e12
                lines.append(f"| {kind} | {t.batch} | {t.contender} | {t.ms:.3f} | {tflops:.1f} | "
                             f"{100 * tflops / PEAK_TFLOPS:.1f} |")
    return "\n".join(lines)


def parse_only(text: str | None) -> dict[str, tuple[int, ...]]:
    """'bert:32,clip:1,clip:128' -> {'bert': (32,), 'clip': (1, 128)}; None -> every model and batch."""
    known = {"clip": CLIP_BATCHES, "bert": BERT_BATCHES}
    if not text:
        return known
    chosen: dict[str, list[int]] = {}
    for item in text.split(","):
        kind, _, batch = item.strip().partition(":")
        if kind not in known or not batch.isdigit():
            raise SystemExit(f"--only: expected MODEL:BATCH items with MODEL in {sorted(known)}, got {item!r}")
        chosen.setdefault(kind, []).append(int(batch))
    return {kind: tuple(sorted(set(batches))) for kind, batches in chosen.items()}


def main(argv: list[str] | None = None) -> int:
    import transformers
    import triton

    parser = argparse.ArgumentParser(description="Whole-model speed against transformers and torch.compile")
    parser.add_argument("--only", help="MODEL:BATCH items, comma-separated (models: clip, bert)")
    parser.add_argument("--no-load", action="store_true", help="skip the load timing")
    args = parser.parse_args(argv)
    only = parse_only(args.only)

    try:
        device = require_gpu("bench/bench_models.py")
    except DeviceError as exc:
        print(exc)
        return 2
    results: dict[str, BenchResult] = {}
    load_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="eet_bench_models.") as tmp:
        names = {"clip": ("clip-vit-base-patch32-random", CLIP_TOKENS, "CLIP ViT-B/32 (CLIPModel, random init)"),
                 "bert": ("bert-base-random", BERT_TOKENS, "BERT-base (BertModel, random init)")}
        paths = {}
        for kind in ("clip", "bert"):
            if kind in only:
                folder, tokens, title = names[kind]
                paths[kind] = save_random(kind, Path(tmp) / folder)
                results[kind] = bench_checkpoint(paths[kind], batches=only[kind], seq=tokens, name=title)
        if not args.no_load:
            try:
                load_times = load_seconds(paths.get("clip") or save_random("clip", Path(tmp) / names["clip"][0]),
                                          repeats=2)
            except Exception as exc:  # the speed tables above still stand
                print(f"load timing FAILED: {type(exc).__name__}: {exc}")
    load_s = load_times[-1] if load_times else None

    env = (f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, triton {triton.__version__}, "
           f"transformers {transformers.__version__}, {datetime.date.today().isoformat()}")
    parts = [f"## Model benchmark ({env})", ""]
    for result in results.values():
        parts += [result.markdown(), ""]
    if load_times:
        parts += [f"eet_triton.load of a local CLIP-B/32 checkpoint (fp16): first {load_times[0]:.2f} s, "
                  f"second (kernel cache warm) {load_times[-1]:.2f} s", ""]
    parts += ["Achieved throughput (analytic matmul FLOPs of the forward over its median time):", "",
              throughput_table(results), "", "| target | measured | met |", "| --- | --- | --- |"]
    parts += [f"| {what} | {measured} | {'-' if met is None else ('yes' if met else 'NO')} |"
              for what, measured, met in targets(results.get("clip"), results.get("bert"), load_s)]
    summary = "\n".join(parts) + "\n"
    print()
    print(summary)
    save("summary_models.md", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
