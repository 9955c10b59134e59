"""Compile every kernel config for Hopper (sm_90) on a machine without a GPU: what the interpreter
forgives and the compiler does not (a tl.dot shape, values of two shapes leaving an `if`, register
spills), found before device time is spent.

    python3 scripts/compile_check.py [--families linear,attention,layernorm,embedding] [--dtypes fp16,bf16,fp32]
        [--quick]

Drives the real launchers (`eet_triton.kernels.linear`, `attention`, `layer_norm`, `embedding`,
`patch_embedding`) on CPU tensors of the models' shapes, with Triton in compiled mode and a
compile-only driver: every launch compiles (tuning included: each candidate config that survives
pruning is compiled where the tuner would time it) and nothing runs. Prints one line per compiled
kernel variant: registers and stack-frame (spill) bytes (from the cubin, by the `cuobjdump` Triton ships),
shared memory, the programs per SM those allow, and the config; failures first, with the
compiler's message. Exit status 1 if any
config failed to compile. --quick: fp16 and the model shapes only (about a minute per family).

The local Triton may be newer than the GPU machine's; an error here is worth fixing either way,
and a config that compiles here can still misbehave there (timing, numerics): the GPU suite
stays the judge.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Set by _import_kernels(), which switches Triton to compiled mode first: importing this module
# (the tests do, for programs_per_sm) changes nothing.
triton = driver = Autotuner = JITFunction = None
_common = attention = embedding = layernorm = linear = None


def _import_kernels():
    global triton, driver, Autotuner, JITFunction, _common, attention, embedding, layernorm, linear
    os.environ["EET_TRITON_COMPILE_ONLY"] = "1"  # eet_triton._backend: compiled mode even without CUDA
    sys.path.insert(0, str(ROOT))
    import triton
    from triton.runtime import driver
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    from eet_triton.kernels import _common, attention, embedding, layernorm, linear


TARGET_ARCH = 90  # H100 / H200
SMS = 132
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class CompileOnlyDriver:
    """Just enough of Triton's driver for JITFunction.run(warmup=True) to compile for sm_TARGET_ARCH."""

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", TARGET_ARCH, 32)

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")


# Per-SM limits of sm_90 that decide how many programs share an SM
SM_REGISTERS, SM_SHARED, SM_WARPS, SM_PROGRAMS = 65536, 233472, 64, 32
SHARED_RESERVED = 1024  # per program, taken by the runtime


def programs_per_sm(regs: int, warps: int, smem: int) -> int:
    """Resident programs per SM: registers are allocated per warp in 256-register units."""
    per_warp = -(-regs * 32 // 256) * 256
    by_regs = SM_REGISTERS // per_warp // warps
    by_smem = SM_SHARED // (smem + SHARED_RESERVED)
    return min(by_regs, by_smem, SM_WARPS // warps, SM_PROGRAMS)


def _resources(kernel) -> str:
    """Registers and spills from the cubin (cuobjdump -res-usage, shipped with Triton), shared memory
    from the metadata, and the programs per SM they allow."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    smem, warps = kernel.metadata.shared, kernel.metadata.num_warps
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        try:
            text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            return f"smem {smem} (registers unknown: {type(exc).__name__})"
    fields = dict(part.split(":", 1) for part in text.replace(",", " ").split() if ":" in part)
    regs, spill = fields.get("REG", "?"), fields.get("STACK", "?")  # spilled registers live in the stack frame
    fit = programs_per_sm(int(regs), warps, smem) if regs.isdigit() else "?"
    return f"regs {regs:>3} spill {spill:>4} smem {smem:>6} {fit}/SM"


def _config(kwargs: dict) -> str:
    """The tuning choices among a launch's keyword arguments, compactly."""
    blocks = "x".join(str(v) for k, v in kwargs.items() if k.startswith("BLOCK_") and k != "BLOCK_D")
    rest = [f"{k}={v}" for k, v in kwargs.items() if k in ("EXTRA_N", "OCCUPANCY", "STORE", "TAIL", "STAGGER", "FLATTEN", "maxnreg") and v]
    return f"{blocks} w{kwargs.get('num_warps', 4)} s{kwargs.get('num_stages', '?')} {' '.join(rest)}".rstrip()


class Recorder:
    """Patches Triton and our launchers into compile-only mode and records each compile."""

    def __init__(self):
        self.lines: list[str] = []
        self.failures: list[str] = []
        self._seen: set = set()

    def install(self):
        driver.set_active(CompileOnlyDriver())
        original_run = JITFunction.run
        recorder = self

        def run(fn, *args, grid, warmup, **kwargs):
            kernel = original_run(fn, *args, grid=grid, warmup=True, **kwargs)
            key = (fn.__name__, id(kernel))
            if kernel is not None and key not in recorder._seen:
                recorder._seen.add(key)
                recorder.lines.append(f"{fn.__name__:<22} {_resources(kernel)}  {_config(kwargs):<40} "
                                      f"{recorder.context}")
            return kernel

        JITFunction.run = run
        # CPU tensors pass the launchers' device checks; the hardware queries answer for an H100
        original_check = _common.check_tensor

        def check_tensor(*args, **kwargs):
            _common.INTERPRET = True  # only the device rule reads it
            try:
                return original_check(*args, **kwargs)
            finally:
                _common.INTERPRET = False

        for module in (linear, attention, layernorm, embedding):
            module.check_tensor = check_tensor
        linear._has_tma = lambda device_index: True
        linear._num_programs = lambda device: SMS
        _common._pdl_capable = lambda device_index: True
        torch.cuda.current_device = lambda: 0  # CPU tensors have no device index
        # tuning compiles each surviving config instead of timing it; a failure is recorded, not fatal.
        # Nothing is written to Triton's on-disk tuning cache: these "timings" are not timings.
        for module in (linear, attention, layernorm, embedding):
            for tuner in vars(module).values():
                if isinstance(tuner, Autotuner):
                    tuner.do_bench = self._bench_hook(tuner)
                    tuner.cache_results = False

    def _bench_hook(self, tuner):
        def bench(kernel_call, quantiles):
            try:
                kernel_call()
            except Exception as exc:  # noqa: BLE001  (a report, not a test)
                message = str(exc).strip().splitlines()
                self.failures.append(f"{tuner.fn.__name__} {self.context}: {type(exc).__name__}: "
                                     f"{' | '.join(message[-3:])[:400]}")
                return [float("inf")] * 3
            return [1.0, 1.0, 1.0]

        return bench

    context = ""

    def call(self, label: str, fn, *args, **kwargs):
        self.context = label
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self.failures.append(f"{label}: {type(exc).__name__}: {str(exc).strip().splitlines()[-1][:400]}")


def _t(*shape, dtype):
    return torch.empty(*shape, dtype=dtype)


def check_linear(rec: Recorder, dtype, quick: bool):
    # (M, K, N, epilogue): CLIP ViT-B/32 b128 and b32, BERT-base b32 (the FFN2: the one model shape
    # where the wide EXTRA_N tiles are candidates) and b1, decode rows
    shapes = [(6400, 768, 3072, "quick_gelu"), (9856, 512, 2048, "quick_gelu"), (6400, 3072, 768, "residual"),
              (9856, 512, 512, "residual"), (6400, 768, 2304, None), (1600, 3072, 768, "residual"),
              (4096, 768, 3072, "gelu"), (4096, 3072, 768, "residual"), (128, 768, 2304, None),
              (64, 3072, 768, "residual")]
    if not quick:
        shapes += [(512, 768, 2048, "gated"), (77, 40, 24, "gelu")]
    for M, K, N, epilogue in shapes:
        x, w, b = _t(M, K, dtype=dtype), _t(N, K, dtype=dtype), _t(N, dtype=dtype)
        kwargs = {}
        if epilogue == "residual":
            kwargs["residual"] = _t(M, N, dtype=dtype)
        elif epilogue == "gated":
            kwargs.update(activation="gelu_new", gate_weight=_t(N, K, dtype=dtype))
        elif epilogue:
            kwargs["activation"] = epilogue
        rec.call(f"linear {M}x{N}x{K} {epilogue} {str(dtype)[6:]}", linear.linear, x, w, b, **kwargs)


def check_attention(rec: Recorder, dtype, quick: bool):
    # name, batch, q len, k len, heads, causal, padding mask, T5 bias
    shapes = [("CLIP text b128", 128, 77, 77, 8, True, True, False), ("CLIP vision b128", 128, 50, 50, 12, False, False, False),
              ("BERT b32", 32, 128, 128, 12, False, True, False)]
    if not quick:
        shapes += [("T5 encoder", 4, 512, 512, 8, False, True, True), ("decode", 8, 1, 300, 12, True, False, False),
                   ("long causal", 2, 2048, 2048, 16, True, False, False)]
    for name, B, Lq, Lk, H, causal, padded, t5 in shapes:
        q, k, v = _t(B, Lq, H, 64, dtype=dtype), _t(B, Lk, H, 64, dtype=dtype), _t(B, Lk, H, 64, dtype=dtype)
        mask = torch.ones(B, Lk, dtype=torch.bool) if padded else None
        table = torch.zeros(32, H, dtype=dtype) if t5 else None
        rec.call(f"attention {name} {str(dtype)[6:]}", attention.attention, q, k, v, causal=causal,
                 key_padding_mask=mask, t5_table=table)


def check_layernorm(rec: Recorder, dtype, quick: bool):
    for rows, n in [(9856, 512), (6400, 768), (4096, 768)] + ([] if quick else [(7, 4096)]):
        x, w = _t(rows, n, dtype=dtype), _t(n, dtype=dtype)
        rec.call(f"layer_norm {rows}x{n} {str(dtype)[6:]}", layernorm.layer_norm, x, w, w)
        rec.call(f"layer_norm residual {rows}x{n} {str(dtype)[6:]}", layernorm.layer_norm, x, w, w,
                 residual=_t(rows, n, dtype=dtype))
        if not quick:
            rec.call(f"rms_norm {rows}x{n} {str(dtype)[6:]}", layernorm.layer_norm, x, w, rms=True)
    rec.call(f"l2_normalize 128x512 {str(dtype)[6:]}", layernorm.l2_normalize, _t(128, 512, dtype=dtype))


def check_embedding(rec: Recorder, dtype, quick: bool):
    ids = torch.zeros(32, 128, dtype=torch.int64)
    word, pos, typ, norm = _t(30522, 768, dtype=dtype), _t(512, 768, dtype=dtype), _t(2, 768, dtype=dtype), _t(768, dtype=dtype)
    rec.call(f"embedding BERT b32 {str(dtype)[6:]}", embedding.embedding, ids, word,
             position_ids=torch.zeros(128, dtype=torch.int64), position_weight=pos, type_weight=typ,
             norm_weight=norm, norm_bias=norm)
    rec.call(f"patch_embedding CLIP b128 {str(dtype)[6:]}", embedding.patch_embedding, _t(128, 3, 224, 224, dtype=dtype),
             _t(768, 3, 32, 32, dtype=dtype), class_embedding=_t(768, dtype=dtype), position_weight=_t(50, 768, dtype=dtype))


FAMILIES = {"linear": check_linear, "attention": check_attention, "layernorm": check_layernorm,
            "embedding": check_embedding}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--dtypes", default="fp16,bf16,fp32")
    parser.add_argument("--quick", action="store_true", help="fp16 and the model shapes only")
    args = parser.parse_args()
    dtypes = ["fp16"] if args.quick else args.dtypes.split(",")
    _import_kernels()
    rec = Recorder()
    rec.install()
    print(f"# compile-only check for sm_{TARGET_ARCH}, triton {triton.__version__}", flush=True)
    for family in args.families.split(","):
        for name in dtypes:
            FAMILIES[family](rec, DTYPES[name], args.quick)
            print(f"{family} {name}: {len(rec.lines)} kernel variants compiled so far, "
                  f"{len(rec.failures)} failures", flush=True)
    for line in rec.failures:
        print(f"FAILED {line}")
    print("\n".join(rec.lines))
    print(f"\n{len(rec.lines)} kernel variants compiled, {len(rec.failures)} failed")
    return 1 if rec.failures else 0


if __name__ == "__main__":
    sys.exit(main())
