"""What every kernel launcher shares: argument checks, and autotuning over
configs declared as data in `tuning/<family>.yaml`.

Tuning: each kernel family lists its candidate configs in `tuning/<family>.yaml`
(a YAML list; each entry the kernel's constexpr block sizes plus num_warps and
num_stages; the first entry is the one the interpreter uses, so keep it small); the
autotune key uses shape buckets (powers of two) so a new sequence length does
not re-tune, and the chosen config persists in Triton's cache directory
(`cache_results`), so a second process does not tune again. In the CPU
interpreter only the first config is kept: autotuning needs a GPU to time on.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import pathlib

import torch
import triton
import triton.language as tl
import triton.testing
import yaml

from eet_triton._backend import INTERPRET
from eet_triton.errors import DeviceError, DTypeError, GraphCaptureError, ShapeError

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# For kernels: compiled for a GPU, so inline PTX and libdevice are there (the interpreter has neither).
COMPILED = tl.constexpr(not INTERPRET)
_TUNING_DIR = pathlib.Path(__file__).with_name("tuning")


@functools.cache
def _declared_configs(family: str) -> list[dict]:
    return yaml.safe_load((_TUNING_DIR / f"{family}.yaml").read_text())


def tuning_configs(family: str, pre_hook=None, *, every=False) -> list[triton.Config]:
    """The candidate `triton.Config`s declared in tuning/<family>.yaml (each with `pre_hook`): in the
    interpreter only the first, unless `every` (to check pruning rules on the whole list)."""
    configs = []
    for entry in _declared_configs(family):
        meta = dict(entry)
        num_warps = meta.pop("num_warps", 4)
        num_stages = meta.pop("num_stages", 2)
        maxnreg = meta.pop("maxnreg", None)  # a register cap per thread: more programs per SM, maybe spills
        configs.append(triton.Config(meta, num_warps=num_warps, num_stages=num_stages, maxnreg=maxnreg,
                                     pre_hook=pre_hook))
    return configs[:1] if INTERPRET and not every else configs


def autotune(family: str, key: list[str], pre_hook=None, **kwargs):
    """`triton.autotune` over the configs declared for `family`, results persisted on disk;
    `pre_hook(args)` runs before each launch of a config (to size host tensor descriptors)."""
    if not INTERPRET and "cache_results" in inspect.signature(triton.autotune).parameters:
        kwargs.setdefault("cache_results", True)
    return triton.autotune(configs=tuning_configs(family, pre_hook), key=key, **kwargs)


# Programmatic dependent launch (compute capability 9+): each kernel is launched while the one
# before it drains, so its programs are resident and waiting when the predecessor's last store
# lands, instead of paying the launch gap after it. Every kernel waits for its predecessor
# (`wait_for_predecessor`) before its first memory access, so ordering is as without it.
# A switch, so benchmarks can time both.
PDL_ENABLED = True


@functools.cache
def _pdl_capable(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= 9


def pdl_launch_args(device: torch.device) -> dict:
    """Launch kwargs for a kernel taking `PDL: tl.constexpr` on `device`: PDL on where the GPU has it."""
    if PDL_ENABLED and not INTERPRET and _pdl_capable(device.index if device.index is not None else
                                                      torch.cuda.current_device()):
        return {"PDL": True, "launch_pdl": True}
    return {"PDL": False}


@triton.jit
def wait_for_predecessor(PDL: tl.constexpr):
    """First statement of every kernel: under PDL, wait until the previous kernel in the stream has
    finished and its writes are visible, then let the next kernel launch (it waits here in turn)."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off for the block (as it was, after).

    Why: a collection inside a CUDA graph capture may finalise a torch CUDAGraph or a Triton
    CompiledKernel left in a reference cycle (a model of an earlier call, say); their destructors
    call CUDA (graph destroy, module unload), which is illegal while a stream captures and
    invalidates the capture. Seen once in 1073 tests on an H100 (8 processes, 2026-12-06:
    "operation not permitted when stream is capturing (function reset)", a tuning capture) and in
    139 of a 15-process run. Newer Triton's do_bench_cudagraph pauses the collector the same way;
    triton 3.6's does not."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def graph_capture(graph: "torch.cuda.CUDAGraph", **kwargs):
    """torch.cuda.graph(graph, **kwargs) with the collector paused (gc_paused says why). Like
    torch.cuda.graph, it collects once before the capture begins."""
    with gc_paused(), torch.cuda.graph(graph, **kwargs):
        yield graph


def bench_in_graph(kernel_call, quantiles):
    """Tuning timer: replays from a CUDA graph, so the host launch cost (tens of us, more than a
    whole GEMM at M=64 or a short attention) stays out of the comparison; with plain do_bench the
    pick was noise.

    do_bench_cudagraph runs its warm-up launches on a fresh stream of its own, which waits for no
    other stream (a wait_stream on a stream of ours around it does not reach it). Those launches
    write the output buffer, which the caching allocator may just have handed over from a tensor
    whose last reader is still queued on the caller's stream (a weight's fp32 source being cast,
    say), and read inputs that may not be written yet. So the device drains first: tuning syncs
    anyway, and do_bench_cudagraph syncs again before it returns, so nothing of it is left in
    flight either. (Without it: NaN or wrong fused QKV weights in an 8-process, cold-cache test
    run on one H100, the likely trace of a launch overtaking the cast of their fp32 source.)
    Inside a caller's CUDA graph capture it raises GraphCaptureError instead (a shape must be tuned
    before capture)."""
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        # before any CUDA call: the synchronize below would invalidate the caller's capture
        raise GraphCaptureError(
            "a kernel met a new shape while a CUDA graph is being captured, and tuning it cannot run inside a "
            "capture; run the model or op once with inputs of this shape before capturing (eet_triton's own "
            "graphs, model.use_cuda_graphs(), do this for you)")
    torch.cuda.synchronize()
    with gc_paused():  # its capture must not meet a collection (gc_paused)
        return triton.testing.do_bench_cudagraph(kernel_call, rep=3, quantiles=quantiles)


def shape_bucket(n: int) -> int:
    """Autotune key for a size that varies between calls (tokens, sequence length).

    Plain int arithmetic: triton.next_power_of_2 costs ~4.5 us a call on triton 3.x,
    paid on every launch."""
    return 1 << (max(int(n), 1) - 1).bit_length()


def check_tensor(
    name: str,
    t: torch.Tensor,
    *,
    ndim: int | tuple[int, ...] | None = None,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
    shape: tuple[int | None, ...] | None = None,
) -> None:
    """Raise a clear EETError unless `t` is a tensor of the given rank, dtype and shape
    (None in `shape` matches any size) on a device the kernels can run on."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if t.dim() not in allowed:
            raise ShapeError(f"{name}: expected {' or '.join(map(str, allowed))} dims, got shape {tuple(t.shape)}")
    if t.dtype not in dtypes:
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise DTypeError(f"{name}: expected dtype in ({names}), got {t.dtype}; cast it with .to(...)")
    if shape is not None:
        if len(shape) != t.dim() or any(want is not None and want != got for want, got in zip(shape, t.shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ShapeError(f"{name}: expected shape {want}, got {list(t.shape)}")
    if not INTERPRET and not t.is_cuda:
        raise DeviceError(f"{name}: expected a CUDA tensor, got one on {t.device}; move it with .cuda()")


def check_same_device(**tensors: torch.Tensor | None) -> torch.device:
    """All given tensors (None ignored) live on one device; returns it."""
    present = {k: t for k, t in tensors.items() if t is not None}
    devices = {t.device for t in present.values()}
    if len(devices) > 1:
        where = ", ".join(f"{k} on {t.device}" for k, t in present.items())
        raise DeviceError(f"tensors must share one device, got {where}")
    return devices.pop()


def check_same_dtype(**tensors: torch.Tensor | None) -> torch.dtype:
    """All given tensors (None ignored) share one dtype; returns it."""
    present = {k: t for k, t in tensors.items() if t is not None}
    dtypes = {t.dtype for t in present.values()}
    if len(dtypes) > 1:
        what = ", ".join(f"{k} {t.dtype}" for k, t in present.items())
        raise DTypeError(f"tensors must share one dtype, got {what}; cast them to the model's dtype")
    return dtypes.pop()
