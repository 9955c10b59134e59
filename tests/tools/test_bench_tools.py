"""The benchmark tools' bookkeeping on the CPU (timing itself needs a GPU: test_cli's gpu tests and
bench/): speed-ups, the markdown table, failed contenders, and the refusal without a GPU."""

from __future__ import annotations

import pytest
import torch

from eet_triton.errors import DeviceError
from eet_triton.tools.bench import COMPILE, EET, HF, BenchResult, Timing, require_gpu


def result() -> BenchResult:
    r = BenchResult("tiny", "fp16", 77, "some GPU")
    r.timings += [Timing(HF, 1, 8.0, 900.0), Timing(COMPILE, 1, 2.0, 1100.0), Timing(EET, 1, 0.5, 600.0),
                  Timing(HF, 32, 12.0), Timing(COMPILE, 32, 3.0), Timing(EET, 32, None, note="failed: OOM")]
    r.load_s["eet_triton load"] = 0.75
    return r


def test_speedups_and_missing_timings():
    r = result()
    assert r.speedup(HF, 1) == pytest.approx(16.0) and r.speedup(COMPILE, 1) == pytest.approx(4.0)
    assert r.speedup(HF, 32) is None and r.ms(EET, 32) is None and r.ms(EET, 7) is None
    assert r.batches() == [1, 32] and r.contenders() == [HF, COMPILE, EET]


def test_markdown_table():
    text = result().markdown()
    assert "| 1 | 8.000 | 2.000 | 0.500 | 16.00 | 4.00 |" in text
    assert "| 32 | 12.000 | 3.000 | - | - | - |" in text
    assert "| eet_triton | 600 |" in text and "peak memory at batch 1" in text
    assert "| eet_triton load | 0.75 |" in text and "eet_triton at batch 32: failed: OOM" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_require_gpu_refuses_on_cpu():
    with pytest.raises(DeviceError, match="needs a CUDA GPU"):
        require_gpu("eet-triton bench")
