"""Real-size ops on the GPU, fp16 against the HF modules (hidden 768, 12 heads, batch 8, seq 128)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, CLIPTextConfig, CLIPVisionConfig, GPT2Config
from transformers.models.bert.modeling_bert import BertAttention, BertLayer
from transformers.models.clip.modeling_clip import CLIPAttention, CLIPMLP
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

from _ops_helpers import additive_mask, check, hf_runs, padding_mask, randomize, same_twice, visible
from eet_triton.ops import EETFeedforward, EETSelfAttention, EETSelfMaskedAttention

pytestmark = pytest.mark.gpu

BATCH, SEQ, HIDDEN, HEADS = 8, 128, 768, 12
DEVICE = "cuda"
EAGER = dict(attn_implementation="eager")
FP16 = torch.float16


def _self_case(hf, causal, pad):
    hf = randomize(hf).to(DEVICE)
    op = EETSelfAttention.from_torch(hf, dtype=FP16, causal=causal)
    assert isinstance(op, EETSelfMaskedAttention) == causal
    x = torch.randn(BATCH, SEQ, HIDDEN, device=DEVICE).to(FP16)
    mask = padding_mask(BATCH, SEQ, pad, DEVICE)
    out = op(x, attention_mask=mask)
    out = out[0] if causal else out
    same_twice(out, op(x, attention_mask=mask)[0] if causal else op(x, attention_mask=mask))
    vis = visible(mask, BATCH, SEQ, SEQ, causal, DEVICE)
    ref, base = hf_runs(hf, lambda m, dt: m(x.to(dt), attention_mask=additive_mask(vis, dt))[0], FP16)
    check(out, ref, base, vis.any(-1))


def test_bert_attention_real_size():
    _self_case(BertAttention(BertConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, **EAGER)), False, "right")


def test_clip_vision_attention_real_size():
    _self_case(CLIPAttention(CLIPVisionConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, **EAGER)), False, "none")


def test_clip_text_attention_real_size():
    _self_case(CLIPAttention(CLIPTextConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, **EAGER)), True, "right")


def test_gpt2_kv_cache_real_size():
    hf = randomize(GPT2Attention(GPT2Config(n_embd=HIDDEN, n_head=HEADS, **EAGER), layer_idx=0)).to(DEVICE)
    op = EETSelfAttention.from_torch(hf, dtype=FP16)
    assert isinstance(op, EETSelfMaskedAttention)
    prefill = SEQ - 3
    x = torch.randn(BATCH, SEQ, HIDDEN, device=DEVICE).to(FP16)
    mask = padding_mask(BATCH, SEQ, "left", DEVICE)
    cache = op.new_cache(1, BATCH, SEQ)
    outs = [op(x[:, :prefill], attention_mask=mask[:, :prefill], kv_cache=cache)[0]]
    for t in range(prefill, SEQ):
        outs.append(op(x[:, t:t + 1], attention_mask=mask[:, :t + 1], kv_cache=cache)[0])
    vis = visible(mask, BATCH, SEQ, SEQ, True, DEVICE)
    ref, base = hf_runs(hf, lambda m, dt: m(x.to(dt), attention_mask=additive_mask(vis, dt))[0], FP16)
    check(torch.cat(outs, 1), ref, base, vis.any(-1))


@pytest.mark.parametrize("which", ["BertLayer", "CLIPMLP"])
def test_feedforward_real_size(which):
    if which == "BertLayer":
        hf, call = BertLayer(BertConfig(hidden_size=HIDDEN, num_attention_heads=HEADS)), "feed_forward_chunk"
    else:
        hf, call = CLIPMLP(CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=4 * HIDDEN)), "forward"
    hf = randomize(hf).to(DEVICE)
    op = EETFeedforward.from_torch(hf, dtype=FP16)
    x = torch.randn(BATCH, SEQ, HIDDEN, device=DEVICE).to(FP16)
    out = op(x)
    same_twice(out, op(x))
    ref, base = hf_runs(hf, lambda m, dt: getattr(m, call)(x.to(dt)), FP16)
    check(out, ref, base)
