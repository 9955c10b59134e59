"""runtime.streams.side_by_side off the GPU: both halves run, results in order."""

from __future__ import annotations

import torch

from eet_triton.runtime import streams


def test_side_by_side_runs_both_on_the_cpu():
    order = []
    side, main = streams.side_by_side(lambda: order.append("side") or (torch.ones(2), None),
                                      lambda: order.append("main") or torch.zeros(3), torch.device("cpu"))
    assert order == ["side", "main"]
    assert torch.equal(side[0], torch.ones(2)) and side[1] is None
    assert torch.equal(main, torch.zeros(3))
