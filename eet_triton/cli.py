"""The `eet-triton` command.

    eet-triton demo [--device D] [--dtype fp16]          CLIP ViT-B/32: precision and speed vs transformers
    eet-triton compare PATH [--dtype fp16] [--batch B] [--seq L] [--device D] [--json]
                                                        layer-by-layer precision table vs transformers
    eet-triton bench PATH [--batch 1,32,128] [--seq L] [--dtype fp16] [--no-compile]
                                                        speed vs transformers (sdpa) and torch.compile (GPU)
    eet-triton info                                     versions, device, interpreter or not
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import eet_triton  # first: picks the Triton interpreter when there is no GPU
from eet_triton.errors import EETError


def _batches(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch takes comma-separated sizes such as 1,32,128, got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--batch sizes must be positive integers, got {text!r}")
    return sizes


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eet-triton", description="eet_triton: transformer inference with "
                                     "Triton kernels. Every command checks itself against transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,compare,bench,info}")
    dtypes = ["fp16", "bf16", "fp32"]

    demo = sub.add_parser("demo", help="CLIP ViT-B/32: precision vs transformers and, on a GPU, speed")
    demo.add_argument("--device", help="cuda, cuda:N or cpu (default: the GPU if there is one, else cpu)")
    demo.add_argument("--dtype", choices=dtypes, help="default fp16 on a GPU, fp32 on the CPU")

    compare = sub.add_parser("compare", help="layer-by-layer precision table vs transformers fp32")
    compare.add_argument("path", help="checkpoint folder, or a hub id in the local HuggingFace cache")
    compare.add_argument("--dtype", choices=dtypes, default="fp16")
    compare.add_argument("--batch", type=_positive, default=2, help="rows of random input (last one padded)")
    compare.add_argument("--seq", type=_positive, default=16, help="tokens per row (text models)")
    compare.add_argument("--device", help="cuda, cuda:N or cpu (default: the GPU if there is one, else cpu)")
    compare.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")

    bench = sub.add_parser("bench", help="speed vs transformers (sdpa) and torch.compile; needs a GPU")
    bench.add_argument("path", help="checkpoint folder, or a hub id in the local HuggingFace cache")
    bench.add_argument("--batch", type=_batches, default=[1, 32, 128], help="comma-separated, default 1,32,128")
    bench.add_argument("--seq", type=_positive, default=128, help="tokens per row (text models), default 128")
    bench.add_argument("--dtype", choices=dtypes, default="fp16")
    bench.add_argument("--no-compile", action="store_true", help="leave torch.compile out (its warm-up is slow)")

    sub.add_parser("info", help="versions, device, and whether kernels run compiled or interpreted")
    return parser


def _info() -> int:
    import torch
    import transformers
    import triton

    print(f"eet_triton   {eet_triton.__version__}")
    print(f"python       {platform.python_version()}")
    print(f"torch        {torch.__version__}")
    print(f"triton       {triton.__version__}")
    print(f"transformers {transformers.__version__}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            print(f"device       cuda:{i} {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                  f"compute capability {props.major}.{props.minor}")
    else:
        print("device       cpu (no CUDA device)")
    mode = ("interpreted (TRITON_INTERPRET=1: kernels run on the CPU with numpy; slow, tiny shapes only)"
            if eet_triton.INTERPRET else "compiled for the GPU")
    print(f"kernels      {mode}")
    return 0


def _compare(args) -> int:
    from eet_triton.tools.compare import compare

    table = compare(args.path, dtype=args.dtype, device=args.device, batch=args.batch, seq=args.seq)
    if args.json:
        print(json.dumps({"title": table.title, "dtype": table.dtype, "rows": table.to_dicts()}, indent=1))
    else:
        print(table)
        print()
        print(table.summary())
    return 0 if table.all_finite() else 1


def _bench(args) -> int:
    from eet_triton.tools.bench import bench_checkpoint

    result = bench_checkpoint(args.path, batches=args.batch, seq=args.seq, dtype=args.dtype,
                              use_compile=not args.no_compile)
    print()
    print(result.markdown())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit code (0 ok, 1 a check failed, 2 refused or bad input)."""
    args = _parser().parse_args(argv)
    if args.command != "info":
        from transformers.utils import logging as hf_logging

        # transformers' per-load progress bars would bury the tables this command prints
        hf_logging.disable_progress_bar()
    try:
        if args.command == "info":
            return _info()
        if args.command == "compare":
            return _compare(args)
        if args.command == "bench":
            return _bench(args)
        from eet_triton.tools.demo import run_demo

        return run_demo(device=args.device, dtype=args.dtype)
    except EETError as exc:
        print(f"eet-triton {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
