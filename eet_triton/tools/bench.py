"""Model speed on the GPU: eet_triton against transformers (sdpa) and torch.compile, per batch size.

    result = bench_checkpoint("path/to/clip", batches=(1, 32, 128), seq=77)
    print(result.markdown())

Every contender runs the same random inputs (a padded row, images of the model's size) in one
process: transformers with attn_implementation="sdpa", torch.compile(that model,
mode="reduce-overhead") and the eet_triton model with CUDA graphs. Times are the median of many
runs measured with CUDA events (triton.testing.do_bench), after a warm-up that also holds
compilation and graph capture. Peak memory is what the contender holds at its peak while serving
the memory batch: weights, graph pools and the call's transient buffers
(torch.cuda.max_memory_allocated after a reset, less what was allocated before its weights).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import time
from typing import Callable

import torch

from eet_triton.errors import DeviceError
from eet_triton.tools.hf import as_torch_dtype, cast_inputs, dtype_name, load_hf, make_inputs

HF = "transformers (sdpa)"
COMPILE = "torch.compile"
EET = "eet_triton"
CONTENDERS = (HF, COMPILE, EET)


@dataclasses.dataclass
class Timing:
    """One contender at one batch size: median milliseconds, and peak MiB where measured."""

    contender: str
    batch: int
    ms: float | None
    peak_mib: float | None = None
    note: str = ""


@dataclasses.dataclass
class BenchResult:
    """All timings of one model, with what was run."""

    model: str
    dtype: str
    seq: int | None
    device: str
    timings: list[Timing] = dataclasses.field(default_factory=list)
    load_s: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    def ms(self, contender: str, batch: int) -> float | None:
        for t in self.timings:
            if t.contender == contender and t.batch == batch:
                return t.ms
        return None

    def speedup(self, over: str, batch: int) -> float | None:
        """How many times faster eet_triton is than `over` at this batch (None if either is missing)."""
        ours, theirs = self.ms(EET, batch), self.ms(over, batch)
        return theirs / ours if ours and theirs else None

    def batches(self) -> list[int]:
        return sorted({t.batch for t in self.timings})

    def contenders(self) -> list[str]:
        return [c for c in CONTENDERS if any(t.contender == c for t in self.timings)]

    def markdown(self) -> str:
        """A speed table (ms and eet_triton's speed-ups) and, where measured, a peak-memory table."""
        names = self.contenders()
        others = [c for c in names if c != EET] if EET in names else []
        head = ["batch"] + [f"{c} ms" for c in names] + [f"x vs {c}" for c in others]
        lines = [f"**{self.model}** ({self.dtype}{f', seq {self.seq}' if self.seq else ''}, {self.device})", "",
                 "| " + " | ".join(head) + " |", "|" + " ---: |" * len(head)]
        for batch in self.batches():
            cells = [str(batch)] + [_num(self.ms(c, batch), ".3f") for c in names]
            cells += [_num(self.speedup(c, batch), ".2f") for c in others]
            lines.append("| " + " | ".join(cells) + " |")
        peaks = [t for t in self.timings if t.peak_mib is not None]
        if peaks:
            lines += ["", f"| peak memory at batch {peaks[0].batch} | MiB |", "| --- | ---: |"]
            lines += [f"| {t.contender} | {t.peak_mib:.0f} |" for t in peaks]
        if self.load_s:
            lines += ["", "| load | seconds |", "| --- | ---: |"]
            lines += [f"| {what} | {s:.2f} |" for what, s in self.load_s.items()]
        failed = [t for t in self.timings if t.note]
        lines += [""] + [f"- {t.contender} at batch {t.batch}: {t.note}" for t in failed] if failed else []
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def require_gpu(what: str) -> torch.device:
    """The current CUDA device, or a DeviceError that says why speed is not measured here."""
    if not torch.cuda.is_available():
        raise DeviceError(f"{what} measures GPU speed and needs a CUDA GPU; this machine has none (eet_triton's "
                          f"kernels run in Triton's CPU interpreter here, which says nothing about speed). Run it "
                          f"on a GPU machine; to check precision on the CPU use `eet-triton compare`.")
    return torch.device("cuda", torch.cuda.current_device())


def median_ms(fn: Callable[[], object]) -> float:
    """Median milliseconds of fn on the GPU (CUDA events around each call, L2 flushed between
    calls by do_bench), over about 30 calls or 0.5 s, whichever is longer."""
    import triton.testing

    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    estimate = (time.perf_counter() - start) / 3 * 1e3
    return triton.testing.do_bench(fn, warmup=max(25, int(3 * estimate)), rep=max(500, int(30 * estimate)),
                                   return_mode="median")


def peak_mib(fn: Callable[[], object], allocated_before: int) -> float:
    """MiB allocated at the peak of one call of fn, counted from `allocated_before` bytes."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - allocated_before) / 2**20


def _bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()) if t.is_cuda)


def _free():
    gc.collect()
    torch.cuda.empty_cache()


def _measure(name: str, model, inputs: dict, batches, memory_batch, allocated_before: int, result: BenchResult,
             warmup_calls: int, log) -> None:
    for batch in batches:
        def call(x=inputs[batch]):
            with torch.inference_mode():
                return model(**x)

        try:
            for _ in range(warmup_calls):
                call()
            peak = peak_mib(call, allocated_before) if batch == memory_batch else None
            ms = median_ms(call)
        except Exception as exc:  # one contender failing (OOM, unsupported) must not lose the others
            result.timings.append(Timing(name, batch, None, note=f"failed: {type(exc).__name__}: {exc}"[:300]))
            log(f"  {name:22s} batch {batch:4d}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
            _free()
            continue
        result.timings.append(Timing(name, batch, ms, peak))
        log(f"  {name:22s} batch {batch:4d}: {ms:9.3f} ms" + (f"  peak {peak:8.0f} MiB" if peak is not None else ""))


def bench_checkpoint(path: str | os.PathLike, *, batches=(1, 32, 128), seq: int = 128, dtype="fp16",
                     use_compile: bool = True, memory_batch: int | None = None, name: str | None = None,
                     log: Callable[[str], None] = print) -> BenchResult:
    """Time eet_triton against transformers (sdpa) and torch.compile on one checkpoint.

    path: a checkpoint folder (or a hub id in the local cache). batches: batch sizes; seq: tokens
    per row for text inputs (capped at the model's positions; images take the model's size);
    use_compile=False leaves torch.compile out (its warm-up takes tens of seconds per shape);
    memory_batch: the batch size at which peak memory is measured (default: the largest).
    Contenders run one after another, each freed before the next is built.
    """
    import eet_triton
    from eet_triton.mapping import resolve_checkpoint

    device = require_gpu("eet-triton bench")
    dtype = as_torch_dtype(dtype)
    path = resolve_checkpoint(path)
    batches = sorted(set(batches))
    memory_batch = max(batches) if memory_batch is None else memory_batch
    _free()
    start = time.perf_counter()
    hf = load_hf(path, dtype, device, attn_implementation="sdpa")
    load_hf_s = time.perf_counter() - start
    inputs = {b: cast_inputs(make_inputs(hf, b, seq, device, seed=b), dtype) for b in batches}
    # the inputs were made after the weights: count the weights in, leave the inputs out, as for eet_triton
    allocated_before = torch.cuda.memory_allocated() - _bytes(hf)
    text_seq = next((x["input_ids"].shape[1] for x in inputs.values() if "input_ids" in x), None)
    result = BenchResult(name or str(path), dtype_name(dtype), text_seq, torch.cuda.get_device_name(device))
    result.load_s["transformers from_pretrained"] = load_hf_s
    log(f"{result.model}: {type(hf).__name__}, {dtype_name(dtype)}, batches {batches}"
        f"{f', {text_seq} tokens' if text_seq else ''}")
    _measure(HF, hf, inputs, batches, memory_batch, allocated_before, result, 3, log)
    if use_compile:
        # dynamic=False: one static graph per batch size, the fastest torch.compile can give a fixed shape
        compiled = torch.compile(hf, mode="reduce-overhead", dynamic=False)
        # reduce-overhead compiles on the first call, records a CUDA graph on a later one, then replays
        _measure(COMPILE, compiled, inputs, batches, memory_batch, allocated_before, result, 5, log)
        del compiled
        torch._dynamo.reset()
    del hf
    _free()
    allocated_before = torch.cuda.memory_allocated()
    start = time.perf_counter()
    try:
        ours = eet_triton.load(path, device=device, dtype=dtype_name(dtype), use_cuda_graph=True)
    except Exception as exc:
        result.notes.append(f"eet_triton.load failed: {type(exc).__name__}: {exc}"[:300])
        log(f"  {EET}: load FAILED {type(exc).__name__}: {exc}")
        return result
    torch.cuda.synchronize()
    result.load_s["eet_triton load"] = time.perf_counter() - start
    _measure(EET, ours, inputs, batches, memory_batch, allocated_before, result, 3, log)
    del ours
    _free()
    return result


def load_seconds(path: str | os.PathLike, *, dtype="fp16", repeats: int = 2) -> list[float]:
    """Seconds eet_triton.load(path) takes to return a ready model (GPU synchronised), `repeats` times
    in this process: the first may pay for kernel compilation, later ones find the kernel cache warm."""
    import eet_triton

    device = require_gpu("load timing")
    times = []
    for _ in range(repeats):
        _free()
        torch.cuda.synchronize()
        start = time.perf_counter()
        model = eet_triton.load(path, device=device, dtype=dtype_name(as_torch_dtype(dtype)))
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del model
    return times
