"""Replays a model's forward as a CUDA graph, one graph per input signature.

Why: a BERT-base forward at batch 1 is ~60 kernel launches of a few
microseconds each; from Python, each launch costs more host time than the GPU
spends on it. Captured once and replayed, the whole forward is one launch.

Each graph owns static input buffers (inputs are copied in before a replay)
and a private memory pool where every intermediate of the captured forward
lives; outputs are copied out after the replay, so a later call never
overwrites what an earlier one returned. Graphs are kept per signature (shapes,
dtypes and which inputs are present), least recently used first out, at most
`max_graphs` of them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch

from eet_triton.kernels._common import graph_capture

Signature = tuple


def _signature(inputs: dict[str, torch.Tensor | None]) -> Signature:
    return tuple(
        (name, None if t is None else (tuple(t.shape), t.dtype, t.device)) for name, t in sorted(inputs.items())
    )


class _Graph:
    # Static buffers are made outside inference mode: a graph captured under
    # torch.inference_mode() must still accept inputs copied in outside it.
    @torch.inference_mode(False)
    @torch.no_grad()
    def __init__(self, fn: Callable[..., dict[str, torch.Tensor]], inputs: dict[str, torch.Tensor | None]):
        self.inputs = {k: None if t is None else t.clone() for k, t in inputs.items()}
        device = next(t.device for t in inputs.values() if t is not None)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            fn(**self.inputs)  # warm-up outside capture: autotuning and compilation happen here
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with graph_capture(self.graph):
            self.outputs = fn(**self.inputs)

    @torch.no_grad()
    def replay(self, inputs: dict[str, torch.Tensor | None]) -> dict[str, torch.Tensor]:
        for name, t in inputs.items():
            if t is not None:
                self.inputs[name].copy_(t)
        self.graph.replay()
        return {k: v.clone() for k, v in self.outputs.items()}


class GraphRunner:
    """Calls `fn(**inputs) -> dict[str, Tensor]` through per-signature CUDA graphs.

    fn must be capturable: no host sync, no allocation outside torch's caching
    allocator, no Python branch on tensor values. On the CPU (interpreter) or
    with `enabled=False` it simply calls fn.
    """

    def __init__(self, fn: Callable[..., dict[str, torch.Tensor]], *, max_graphs: int = 8, enabled: bool = True):
        self.fn = fn
        self.max_graphs = max_graphs
        self.enabled = enabled
        self._graphs: OrderedDict[Signature, _Graph] = OrderedDict()

    def __call__(self, **inputs: torch.Tensor | None) -> dict[str, torch.Tensor]:
        first = next((t for t in inputs.values() if t is not None), None)
        if not self.enabled or first is None or not first.is_cuda or torch.cuda.is_current_stream_capturing():
            return self.fn(**inputs)
        return self._graph_for(inputs).replay(inputs)

    def capture(self, **example_inputs: torch.Tensor | None) -> None:
        """Capture ahead of time for the signature of these inputs (their values do not matter)."""
        self._graph_for(example_inputs)

    @property
    def signatures(self) -> list[Signature]:
        return list(self._graphs)

    def clear(self) -> None:
        self._graphs.clear()

    def _graph_for(self, inputs: dict[str, torch.Tensor | None]) -> _Graph:
        key = _signature(inputs)
        graph = self._graphs.get(key)
        if graph is None:
            while len(self._graphs) >= self.max_graphs:
                self._graphs.popitem(last=False)
            graph = self._graphs[key] = _Graph(self.fn, inputs)
        self._graphs.move_to_end(key)
        return graph
