"""Two independent halves of a forward, side by side on two CUDA streams.

Why: a dual encoder's towers (CLIP text and vision) share nothing until the
head, and at small and mid batch each tower's kernels leave most SMs idle (at
batch 32, CLIP's text FFN down projection is 80 tiles on 132 SMs, the vision
one 78). Run together, one tower's kernels fill the SMs the other leaves idle.
Each half runs the same kernels in the same order as alone, so results are
bit-identical to running them one after the other. Captured into a CUDA graph
the two streams become two branches of the graph.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch

A = TypeVar("A")
B = TypeVar("B")

CONCURRENT = True
"""A switch, so benchmarks can time both ways in one process."""


@functools.cache
def _side_stream(device_index: int) -> torch.cuda.Stream:
    return torch.cuda.Stream(device_index)


def side_by_side(side: Callable[[], A], main: Callable[[], B], device: torch.device) -> tuple[A, B]:
    """(side(), main()): `side` on a second stream of `device` while `main` runs on the current one;
    the current stream waits for both before it goes on. `side` returns a tensor or a tuple of
    tensors (None allowed); they may be used on the current stream afterwards. On the CPU, or with
    CONCURRENT off, the two run one after the other."""
    if not CONCURRENT or device.type != "cuda":
        return side(), main()
    current = torch.cuda.current_stream(device)
    stream = _side_stream(device.index if device.index is not None else torch.cuda.current_device())
    stream.wait_stream(current)  # side's inputs were made on the current stream
    with torch.cuda.stream(stream):
        side_result = side()
    main_result = main()
    current.wait_stream(stream)
    # side's outputs were allocated on its stream: tell the allocator the current stream uses them
    # too, so their memory is not handed out again before the current stream is done with them
    for t in side_result if isinstance(side_result, tuple) else (side_result,):
        if t is not None:
            t.record_stream(current)
    return side_result, main_result
