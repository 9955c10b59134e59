"""`eet-triton demo`: CLIP ViT-B/32 through eet_triton, checked against transformers layer by layer,
and timed against it on the GPU.

On a GPU the checkpoint is openai/clip-vit-base-patch32 from the local HuggingFace cache, or, when
it is not there, a CLIP ViT-B/32 of the same shape (transformers.CLIPConfig() defaults) with
random weights from a fixed seed, saved once under $EET_TRITON_CACHE (default
~/.cache/eet_triton)/demo. Without a GPU the kernels run in Triton's CPU interpreter, which is slow
per program: the demo then uses a tiny CLIP in fp32 and measures no speed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from eet_triton.errors import CheckpointError, DeviceError
from eet_triton.tools.hf import as_torch_dtype, default_device, dtype_name

HUB_ID = "openai/clip-vit-base-patch32"
SEED = 0
TEXT_TOKENS = 77
SPEED_BATCHES = (1, 32)

# Hidden 64/32, 2 layers, 32x32 images in 8x8 patches: a CLIP the interpreter runs in seconds.
TINY = dict(
    text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, max_position_embeddings=77, bos_token_id=998, eos_token_id=999,
                     pad_token_id=1),
    vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                       image_size=32, patch_size=8),
    projection_dim=32,
)


def cache_root() -> Path:
    """$EET_TRITON_CACHE, else ~/.cache/eet_triton."""
    return Path(os.environ.get("EET_TRITON_CACHE") or Path.home() / ".cache" / "eet_triton").expanduser()


def _saved(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def random_clip(folder: Path, config_kwargs: dict, log: Callable[[str], None]) -> Path:
    """A CLIPModel with random weights (seed SEED) saved to folder, unless one is already there.
    Written to a temporary folder first and renamed, so an interrupted save leaves nothing half-done."""
    from transformers import CLIPConfig, CLIPModel

    if _saved(folder):
        log(f"Using the random-weight CLIP saved earlier in {folder}")
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = CLIPModel(CLIPConfig(**config_kwargs)).eval()
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        model.save_pretrained(staging)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"Saved it to {folder} (reused next time; delete the folder to rebuild it).")
    return folder


def demo_checkpoint(tiny: bool, log: Callable[[str], None] = print) -> Path:
    """The folder of the CLIP the demo runs, saying where it comes from."""
    from eet_triton.mapping import resolve_checkpoint

    if tiny:
        log("No GPU: using a tiny CLIP (text hidden 32, vision hidden 64, 2 layers each, 32x32 images) with "
            f"random weights (seed {SEED}), because the CPU interpreter is too slow for ViT-B/32.")
        return random_clip(cache_root() / "demo" / "clip-tiny-random", TINY, log)
    try:
        folder = resolve_checkpoint(HUB_ID)
        log(f"Using {HUB_ID} from the local HuggingFace cache: {folder}")
        return folder
    except CheckpointError:
        log(f"{HUB_ID} is not in the local HuggingFace cache (eet_triton never downloads). Building a CLIP "
            f"ViT-B/32 of the same shape from transformers.CLIPConfig() with RANDOM weights (seed {SEED}): "
            f"the comparison and timings are real, the embeddings mean nothing.")
        return random_clip(cache_root() / "demo" / "clip-vit-base-patch32-random", {}, log)


def run_demo(device=None, dtype=None, log: Callable[[str], None] = print) -> int:
    """The demo; returns the process exit code (0: every compared tensor finite)."""
    import eet_triton
    from eet_triton.tools.bench import EET, HF, bench_checkpoint
    from eet_triton.tools.compare import compare

    device = default_device(device)
    if device.type == "cpu" and not eet_triton.INTERPRET:
        raise DeviceError("eet-triton demo --device cpu: this machine has CUDA, so Triton kernels were set up to "
                          "compile for the GPU. Run on the GPU (leave --device out), or start with "
                          "TRITON_INTERPRET=1 to run the kernels in the CPU interpreter.")
    tiny = device.type == "cpu"
    dtype = as_torch_dtype(dtype or ("fp32" if tiny else "fp16"))
    where = "CPU, Triton interpreter" if tiny else torch.cuda.get_device_name(device)
    log(f"eet_triton {eet_triton.__version__} demo on {device} ({where}), {dtype_name(dtype)}")
    path = demo_checkpoint(tiny, log)

    batch, seq = 2, (16 if tiny else TEXT_TOKENS)
    log(f"\nPrecision: eet_triton {dtype_name(dtype)} against transformers fp32, layer by layer "
        f"(batch {batch}, {seq} tokens with one padded row, random images)...")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)  # the same inputs every run
        table = compare(path, dtype=dtype, device=device, batch=batch, seq=seq)
    log(str(condensed(table)))
    log(table.summary())

    if tiny:
        log("\nSpeed: not measured here. Without a GPU the kernels run in Triton's CPU interpreter, which "
            "executes them with numpy, program by program: correct, but its timings say nothing about GPU "
            "speed. Run `eet-triton demo` on a CUDA machine for the speed table.")
    else:
        log(f"\nSpeed: eet_triton (CUDA graphs) against transformers (sdpa), {TEXT_TOKENS} tokens + 224x224 "
            "images, median of CUDA-event timings after warm-up...")
        result = bench_checkpoint(path, batches=SPEED_BATCHES, seq=TEXT_TOKENS, dtype=dtype, use_compile=False,
                                  name=f"CLIP ViT-B/32 ({path.name})", log=lambda line: None)
        log(result.markdown())
        for batch in SPEED_BATCHES:
            speedup = result.speedup(HF, batch)
            if speedup is not None:
                log(f"batch {batch}: {EET} {result.ms(EET, batch):.3f} ms, {speedup:.2f}x transformers")
    return 0 if table.all_finite() else 1


def condensed(table):
    """The rows a reader scans first: each tower's embeddings, first and last layer, and the outputs."""
    from eet_triton.tools.compare import ComparisonTable

    layers = [r.name for r in table.rows if r.name.rsplit(".", 1)[-1].startswith("layer ")]
    keep = set()
    for tower in {name.rsplit(".", 1)[0] if "." in name else "" for name in layers}:
        own = [n for n in layers if (n.rsplit(".", 1)[0] if "." in n else "") == tower]
        keep.update((own[0], own[-1]))
    rows = [r for r in table.rows if r.name in keep or not r.name.rsplit(".", 1)[-1].startswith("layer ")]
    skipped = len(table.rows) - len(rows)
    notes = table.notes + ((f"{skipped} middle layers not shown: eet_triton.compare(path) gives every row",)
                           if skipped else ())
    return ComparisonTable(rows, dtype=table.dtype, title=table.title, notes=notes)
