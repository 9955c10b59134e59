"""Real-size models on the GPU (compiled kernels): random-init CLIP ViT-B/32, BERT-base, ViT-B/16 and
ALBERT-base in fp16 and bf16 against transformers (float64 reference, transformers in the same
dtype as the baseline), batch 128 and 32, padded text; CUDA-graph replay against eager launches."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AlbertConfig,
    AlbertModel,
    BertConfig,
    BertModel,
    CLIPConfig,
    CLIPModel,
    ViTConfig,
    ViTForImageClassification,
)

import eet_triton
from _tiny_models import CLIP_EOS, assert_matches, assert_same, checkpoint, hf_model, image_inputs, run_hf, text_inputs

pytestmark = pytest.mark.gpu

VOCAB = 30522

# name -> (HF class, config, pad id, text?, image?)
REAL = {
    "bert-base": (BertModel, lambda: BertConfig(), 0, True, False),
    "albert-base": (AlbertModel, lambda: AlbertConfig(hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                                                      embedding_size=128, num_hidden_layers=12), 0, True, False),
    "vit-b16": (ViTForImageClassification, lambda: ViTConfig(num_labels=10), 0, False, True),
    # CLIP ViT-B/32 sizes; text eos id inside the vocabulary the inputs draw from
    "clip-vit-b32": (CLIPModel, lambda: CLIPConfig(text_config=dict(eos_token_id=CLIP_EOS)), 1, True, True),
}

CASES = [
    pytest.param(torch.float16, 128, id="fp16-b128"),
    pytest.param(torch.bfloat16, 32, id="bf16-b32"),
]


def real_inputs(name: str, batch: int) -> dict:
    _, _, pad_id, text, image = REAL[name]
    inputs = {}
    if text:
        length = 77 if name.startswith("clip") else 128
        inputs.update(text_inputs(batch, length, pad_id=pad_id, padded=True, low=3, high=96,
                                  eos=CLIP_EOS if name.startswith("clip") else None))
    if image:
        inputs.update(image_inputs(batch, 224))
    return {k: v.cuda() for k, v in inputs.items()}


def real_checkpoint(name: str):
    hf_class, config, *_ = REAL[name]
    return checkpoint(hf_class, config(), key=f"real-{name}", std=0.02)


@pytest.mark.parametrize("dtype,batch", CASES)
@pytest.mark.parametrize("name", list(REAL))
def test_real_size_within_oracle(name, dtype, batch):
    hf_class = REAL[name][0]
    folder = real_checkpoint(name)
    model = eet_triton.load(folder, device="cuda:0", dtype=dtype)
    assert all(p.device == torch.device("cuda", 0) for p in model.parameters())
    inputs = real_inputs(name, batch)
    ours = model(**inputs)
    ref = run_hf(hf_model(hf_class, folder, torch.float64).cuda(), inputs)
    base = run_hf(hf_model(hf_class, folder, dtype).cuda(), inputs)
    causal = name.startswith("clip")
    valid = inputs["attention_mask"].bool().cpu() if causal else None
    assert_matches(ours, ref, base, valid=valid)


@pytest.mark.parametrize("name", list(REAL))
def test_cuda_graph_replay_equals_eager(name):
    folder = real_checkpoint(name)
    model = eet_triton.load(folder, device="cuda", dtype="fp16")
    assert model.cuda_graphs
    inputs = real_inputs(name, 8)
    captured = model(**inputs)          # captures this signature's graph
    replayed = model(**inputs)          # replays it
    other = real_inputs(name, 8)
    replayed_other = model(**other)     # same graph, new input values
    model.use_cuda_graphs(False)
    assert_same(captured, model(**inputs), "captured vs eager")
    assert_same(replayed, model(**inputs), "replayed vs eager")
    assert_same(replayed_other, model(**other), "replay on new inputs vs eager")


def test_capture_ahead_of_time():
    model = eet_triton.load(real_checkpoint("bert-base"), device="cuda", dtype="fp16")
    model.capture(batch_sizes=(1, 4), seq_lens=(16,))
    assert len(model._graphs.signatures) == 2
    inputs = {k: v[:4, :16] for k, v in real_inputs("bert-base", 4).items()}
    inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    out = model(**inputs)
    assert len(model._graphs.signatures) == 2, "a call of a captured signature must reuse its graph"
    model.use_cuda_graphs(False)
    assert_same(out, model(**inputs))


def test_towers_side_by_side_equal_one_after_the_other(monkeypatch):
    """CLIP's towers run on two streams (one graph, two branches); the numbers must be the ones
    running them one after the other gives, bit for bit."""
    from eet_triton.runtime import streams

    model = eet_triton.load(real_checkpoint("clip-vit-b32"), device="cuda", dtype="fp16")
    inputs = real_inputs("clip-vit-b32", 32)
    together = model(**inputs)
    monkeypatch.setattr(streams, "CONCURRENT", False)
    model.use_cuda_graphs(False)
    assert_same(together, model(**inputs), "side by side (graph) vs one after the other (eager)")
