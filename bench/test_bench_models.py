"""bench_models.py's contenders as pytest-benchmark tests (GPU only):

    PYTHONPATH=. python3 -m pytest bench/test_bench_models.py --benchmark-columns=median,iqr,rounds

CLIP ViT-B/32 (batch 1, 32, 128; 77 tokens with a padded row + 224x224 images) and BERT-base
(batch 1, 32; 128 tokens), fp16, random init; per (model, batch): transformers (sdpa),
torch.compile(mode="reduce-overhead") and eet_triton (CUDA graphs). Each timed call ends in
torch.cuda.synchronize(), after warm-up calls outside the timed rounds (they hold torch.compile's
compilation and graph recording and eet_triton's graph capture); the median is the number to read.
"""

from __future__ import annotations

import pytest
import torch

import eet_triton
from bench_models import BERT_BATCHES, BERT_TOKENS, CLIP_BATCHES, CLIP_TOKENS, save_random
from eet_triton.tools.bench import COMPILE, EET, HF
from eet_triton.tools.hf import cast_inputs, load_hf, make_inputs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CASES = [("clip", b, CLIP_TOKENS) for b in CLIP_BATCHES] + [("bert", b, BERT_TOKENS) for b in BERT_BATCHES]
WARMUP_CALLS = 5


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {kind: save_random(kind, folder / kind) for kind in ("clip", "bert")}


@pytest.fixture(scope="module")
def models(checkpoints):
    """Per model kind, the three contenders, built once (lazily) and shared by every batch size."""
    built = {}

    def get(kind: str, contender: str):
        if (kind, contender) not in built:
            path = checkpoints[kind]
            if contender == HF:
                built[kind, HF] = load_hf(path, torch.float16, "cuda", attn_implementation="sdpa")
            elif contender == COMPILE:
                # dynamic=False: one static graph per batch size, torch.compile's fastest for a fixed shape
                built[kind, COMPILE] = torch.compile(get(kind, HF), mode="reduce-overhead", dynamic=False)
            else:
                built[kind, EET] = eet_triton.load(path, device="cuda", dtype="fp16", use_cuda_graph=True)
        return built[kind, contender]

    yield get
    built.clear()
    torch._dynamo.reset()
    torch.cuda.empty_cache()


@pytest.mark.parametrize("contender", [HF, COMPILE, EET])
@pytest.mark.parametrize("kind, batch, seq", CASES)
def test_model_speed(benchmark, models, kind, batch, seq, contender):
    model = models(kind, contender)
    inputs = cast_inputs(make_inputs(models(kind, HF), batch, seq, "cuda", seed=batch), torch.float16)

    def call():
        with torch.inference_mode():
            out = model(**inputs)
        torch.cuda.synchronize()
        return out

    for _ in range(WARMUP_CALLS):
        call()
    benchmark.group = f"{kind} batch {batch}"
    benchmark.extra_info.update(contender=contender, batch=batch, seq=seq)
    out = benchmark.pedantic(call, rounds=30 if batch < 128 else 10, warmup_rounds=2, iterations=1)
    first = out.last_hidden_state if kind == "bert" else out.logits_per_image
    assert torch.isfinite(first).all(), f"{contender} gave non-finite outputs"
