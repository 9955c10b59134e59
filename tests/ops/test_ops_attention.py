"""Attention ops against the HuggingFace modules they lift: CLIP (vision, causal text), BERT,
RoBERTa, BART (encoder, decoder, cross), T5 (encoder, decoder, cross; relative bias), GPT-2
(with the KV cache). Tiny random modules, odd sizes, head_dim 16 and 20, padding masks."""

from __future__ import annotations

import pytest
import torch
from transformers import BartConfig, BertConfig, CLIPTextConfig, CLIPVisionConfig, GPT2Config, RobertaConfig, T5Config
from transformers.models.bart.modeling_bart import BartAttention
from transformers.models.bert.modeling_bert import BertAttention
from transformers.models.clip.modeling_clip import CLIPAttention
from transformers.models.gpt2.modeling_gpt2 import GPT2Attention
from transformers.models.roberta.modeling_roberta import RobertaAttention
from transformers.models.t5.modeling_t5 import T5Attention, T5LayerCrossAttention, T5LayerSelfAttention

from _ops_helpers import additive_mask, check, hf_runs, padding_mask, randomize, same_twice, visible
from eet_triton.errors import DTypeError, SequenceTooLongError, ShapeError, UnsupportedModelError
from eet_triton.ops import (
    EETCrossAttention,
    EETLayerNorm,
    EETSelfAttention,
    EETSelfMaskedAttention,
    from_torch,
)
from eet_triton.runtime import KVCache

EAGER = dict(attn_implementation="eager")
DTYPES = [torch.float32, torch.float16]
# (batch, seq_len, padding side)
CASES = [(1, 1, "none"), (3, 7, "right"), (3, 13, "left"), (1, 13, "none")]


def clip_vision():
    return CLIPAttention(CLIPVisionConfig(hidden_size=40, num_attention_heads=2, **EAGER))  # head_dim 20


def clip_text():
    return CLIPAttention(CLIPTextConfig(hidden_size=32, num_attention_heads=2, **EAGER))  # head_dim 16


def bert(cls=BertAttention, config=BertConfig, **kwargs):
    return cls(config(hidden_size=40, num_attention_heads=2, **EAGER), **kwargs)


def bart(**kwargs):
    config = BartConfig(d_model=32, encoder_attention_heads=2, decoder_attention_heads=2, **EAGER)
    return BartAttention(32, 2, config=config, layer_idx=0, **kwargs)


def t5_config(is_decoder: bool) -> T5Config:
    # 8 buckets and max_distance 10 with 13 tokens: exact, logarithmic and clamped distances all occur
    return T5Config(d_model=32, d_kv=20, num_heads=2, relative_attention_num_buckets=8,
                    relative_attention_max_distance=10, is_decoder=is_decoder, **EAGER)


def gpt2(layer_idx=0, **config):
    return GPT2Attention(GPT2Config(n_embd=40, n_head=2, **EAGER, **config), layer_idx=layer_idx)


def _self_attention_case(hf, hf_call, device, dtype, batch, seq, pad, *, causal, expect, lift=None):
    hf = randomize(hf).to(device)
    op = EETSelfAttention.from_torch(hf, dtype=dtype, **(lift or {}))
    assert type(op) is expect
    x = torch.randn(batch, seq, op.hidden_size, device=device).to(dtype)
    mask = padding_mask(batch, seq, pad, device)
    vis = visible(mask, batch, seq, seq, causal, device)
    out = op(x, attention_mask=mask)
    again = op(x, attention_mask=mask)
    if causal:
        (out, cache), (again, _) = out, again
        assert cache is None
    same_twice(out, again)
    ref, base = hf_runs(hf, lambda m, dt: hf_call(m, x.to(dt), additive_mask(vis, dt)), dtype)
    # HF gives uniform attention where a query sees no key, we give zeros: compare the other rows
    check(out, ref, base, vis.any(-1))


@pytest.mark.parametrize("batch, seq, pad", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_vision_attention(device, dtype, batch, seq, pad):
    _self_attention_case(clip_vision(), lambda m, x, m4: m(x, attention_mask=m4)[0], device, dtype, batch, seq, pad,
                         causal=False, expect=EETSelfAttention)


@pytest.mark.parametrize("batch, seq, pad", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_text_attention_is_causal(device, dtype, batch, seq, pad):
    _self_attention_case(clip_text(), lambda m, x, m4: m(x, attention_mask=m4)[0], device, dtype, batch, seq, pad,
                         causal=True, expect=EETSelfMaskedAttention, lift={"causal": True})


@pytest.mark.parametrize("batch, seq, pad", CASES)
@pytest.mark.parametrize("dtype", [*DTYPES, torch.bfloat16])
def test_bert_attention(device, dtype, batch, seq, pad):
    _self_attention_case(bert(), lambda m, x, m4: m(x, attention_mask=m4)[0], device, dtype, batch, seq, pad,
                         causal=False, expect=EETSelfAttention)


@pytest.mark.parametrize("dtype", DTYPES)
def test_roberta_attention(device, dtype):
    hf = bert(RobertaAttention, RobertaConfig)
    _self_attention_case(hf, lambda m, x, m4: m(x, attention_mask=m4)[0], device, dtype, 3, 7, "right",
                         causal=False, expect=EETSelfAttention)


@pytest.mark.parametrize("batch, seq, pad", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_bart_self_attention(device, dtype, decoder, batch, seq, pad):
    hf = bart(is_decoder=decoder, is_causal=decoder)
    _self_attention_case(hf, lambda m, x, m4: m(x, attention_mask=m4)[0], device, dtype, batch, seq, pad,
                         causal=decoder, expect=EETSelfMaskedAttention if decoder else EETSelfAttention)


@pytest.mark.parametrize("batch, seq, pad", [(1, 1, "none"), (3, 13, "right"), (3, 7, "left")])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wrapped", [False, True], ids=["T5Attention", "T5LayerSelfAttention"])
@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_t5_self_attention(device, dtype, decoder, wrapped, batch, seq, pad):
    config = t5_config(decoder)
    if wrapped:
        hf = T5LayerSelfAttention(config, has_relative_attention_bias=True, layer_idx=0)
        call = lambda m, x, m4: m(x, attention_mask=m4)[0]  # noqa: E731
    else:
        hf = T5Attention(config, has_relative_attention_bias=True, layer_idx=0)
        call = lambda m, x, m4: m(x, mask=m4)[0]  # noqa: E731
    _self_attention_case(hf, call, device, dtype, batch, seq, pad, causal=decoder,
                         expect=EETSelfMaskedAttention if decoder else EETSelfAttention)


def test_t5_layer_without_bias_table(device):
    """Layers after the first have no table of their own: their T5Attention alone adds no bias."""
    hf = T5LayerSelfAttention(t5_config(False), has_relative_attention_bias=False, layer_idx=1)
    _self_attention_case(hf, lambda m, x, m4: m(x, attention_mask=m4)[0], device, torch.float32, 3, 7, "right",
                         causal=False, expect=EETSelfAttention)


def _incremental(op, x, mask, cache, prefill):
    """Prefill `prefill` tokens, then one token per step; returns all outputs concatenated."""
    outs = []
    out, cache = op(x[:, :prefill], attention_mask=None if mask is None else mask[:, :prefill], kv_cache=cache)
    outs.append(out)
    for t in range(prefill, x.shape[1]):
        out, cache = op(x[:, t:t + 1], attention_mask=None if mask is None else mask[:, :t + 1], kv_cache=cache)
        outs.append(out)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, prefill, pad, layer_idx, config", [
    (1, 1, "none", 0, {}),
    (3, 7, "left", 0, {}),
    (3, 4, "left", 2, {"scale_attn_by_inverse_layer_idx": True}),
    (1, 10, "none", 1, {"scale_attn_weights": False}),
])
def test_gpt2_kv_cache_matches_full_sequence(device, dtype, batch, prefill, pad, layer_idx, config):
    """Prefill, then 3 single-token steps through the KV cache == HF on the whole sequence."""
    hf = randomize(gpt2(layer_idx, **config)).to(device)
    op = EETSelfAttention.from_torch(hf, dtype=dtype)
    assert type(op) is EETSelfMaskedAttention and op.layer_idx == layer_idx
    total = prefill + 3
    x = torch.randn(batch, total, 40, device=device).to(dtype)
    mask = padding_mask(batch, total, pad, device)
    cache = op.new_cache(num_layers=layer_idx + 1, batch_size=batch, max_len=total + 2)
    stepped = _incremental(op, x, mask, cache, prefill)
    assert cache.length(layer_idx) == total
    full, _ = op(x, attention_mask=mask)
    vis = visible(mask, batch, total, total, True, device)
    ref, base = hf_runs(hf, lambda m, dt: m(x.to(dt), attention_mask=additive_mask(vis, dt))[0], dtype)
    rows = vis.any(-1)
    check(stepped, ref, base, rows, what="prefill + steps")
    check(full, ref, base, rows, what="full sequence")


@pytest.mark.parametrize("dtype", DTYPES)
def test_t5_decoder_kv_cache_matches_full_sequence(device, dtype):
    """The relative position bias of a cached decoder step counts positions from the start."""
    hf = randomize(T5Attention(t5_config(True), has_relative_attention_bias=True, layer_idx=0)).to(device)
    op = EETSelfAttention.from_torch(hf, dtype=dtype)
    batch, prefill, total = 3, 9, 12
    x = torch.randn(batch, total, 32, device=device).to(dtype)
    stepped = _incremental(op, x, None, op.new_cache(1, batch, total), prefill)
    vis = visible(None, batch, total, total, True, device)
    ref, base = hf_runs(hf, lambda m, dt: m(x.to(dt), mask=additive_mask(vis, dt))[0], dtype)
    check(stepped, ref, base)


def _cross(kind):
    """(HF module, call(module, x, encoder_states, 4-D mask))."""
    if kind == "T5LayerCrossAttention":
        return (T5LayerCrossAttention(t5_config(True), layer_idx=0),
                lambda m, x, e, m4: m(x, key_value_states=e, attention_mask=m4)[0])
    if kind == "T5Attention":
        return (T5Attention(t5_config(True), has_relative_attention_bias=False, layer_idx=0),
                lambda m, x, e, m4: m(x, mask=m4, key_value_states=e)[0])
    if kind == "BartAttention":
        return bart(is_decoder=True), lambda m, x, e, m4: m(x, key_value_states=e, attention_mask=m4)[0]
    if kind == "BertAttention":
        return (bert(is_cross_attention=True, layer_idx=0),
                lambda m, x, e, m4: m(x, encoder_hidden_states=e, encoder_attention_mask=m4)[0])
    return (GPT2Attention(GPT2Config(n_embd=40, n_head=2, **EAGER), is_cross_attention=True, layer_idx=0),
            lambda m, x, e, m4: m(x, encoder_hidden_states=e, encoder_attention_mask=m4)[0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, q_len, enc_len", [(3, 1, 13), (1, 7, 13), (3, 7, 1)])
@pytest.mark.parametrize("kind", ["T5LayerCrossAttention", "T5Attention", "BartAttention", "BertAttention",
                                  "GPT2Attention"])
def test_cross_attention(device, dtype, kind, batch, q_len, enc_len):
    hf, call = _cross(kind)
    hf = randomize(hf).to(device)
    op = EETCrossAttention.from_torch(hf, dtype=dtype)
    hidden = op.hidden_size
    x = torch.randn(batch, q_len, hidden, device=device).to(dtype)
    enc = torch.randn(batch, enc_len, op.encoder_hidden_size, device=device).to(dtype)
    enc_mask = padding_mask(batch, enc_len, "right", device)
    out = op(x, enc, enc_mask)
    vis = visible(enc_mask, batch, q_len, enc_len, False, device)
    ref, base = hf_runs(hf, lambda m, dt: call(m, x.to(dt), enc.to(dt), additive_mask(vis, dt)), dtype)
    check(out, ref, base)

    cache = KVCache(1, batch, 4, op.num_heads, op.head_dim, dtype=dtype, device=device)
    first = op(x, enc, enc_mask, kv_cache=cache)
    assert cache.cross_kv[0] is not None
    same_twice(out, first)
    same_twice(first, op(x, None, enc_mask, kv_cache=cache))  # later steps reuse the cached encoder k/v
    same_twice(first, op(x, encoder_attention_mask=enc_mask, encoder_kv=op.project_kv(enc)))


def test_from_torch_dispatch(device):
    assert type(from_torch(clip_vision())) is EETSelfAttention
    assert type(from_torch(clip_text(), causal=True)) is EETSelfMaskedAttention
    assert type(from_torch(gpt2())) is EETSelfMaskedAttention
    assert type(from_torch(T5LayerCrossAttention(t5_config(True), layer_idx=0))) is EETCrossAttention
    assert type(from_torch(bert(is_cross_attention=True, layer_idx=0))) is EETCrossAttention
    assert type(EETSelfMaskedAttention.from_torch(clip_text())) is EETSelfMaskedAttention
    with pytest.raises(UnsupportedModelError, match="EETCrossAttention"):
        EETSelfAttention.from_torch(T5LayerCrossAttention(t5_config(True), layer_idx=0))
    with pytest.raises(UnsupportedModelError, match="EETSelfAttention"):
        EETCrossAttention.from_torch(gpt2())
    with pytest.raises(UnsupportedModelError, match="supported: .*BertAttention"):
        EETSelfAttention.from_torch(torch.nn.Linear(4, 4))
    with pytest.raises(UnsupportedModelError, match="causal=False"):
        EETSelfMaskedAttention.from_torch(gpt2(), causal=False)


def test_from_torch_placement(device):
    hf = clip_vision()
    op = EETSelfAttention.from_torch(hf, dtype=torch.float16, device=device)
    assert op.qkv_weight.dtype == torch.float16 and op.qkv_weight.device.type == device
    assert not any(p.requires_grad for p in op.parameters())
    default = EETSelfAttention.from_torch(hf)
    assert default.dtype == torch.float32 and default.device == torch.device("cpu")
    with torch.no_grad():
        hf.q_proj.weight.zero_()
    assert default.qkv_weight.abs().sum() > 0, "from_torch must copy the weights, not alias them"


def test_parameter_contract_and_empty(device):
    """Names and shapes the checkpoint mapping relies on; an empty() skeleton filled from a state
    dict computes what the lifted op computes."""
    hf = randomize(bert()).to(device)
    op = EETSelfAttention.from_torch(hf)
    shapes = {k: tuple(v.shape) for k, v in op.state_dict().items()}
    assert shapes == {"qkv_weight": (120, 40), "qkv_bias": (120,), "out_weight": (40, 40), "out_bias": (40,),
                      "norm.weight": (40,), "norm.bias": (40,)}
    assert op.t5_table is None
    skeleton = EETSelfAttention.empty(40, 2, norm=EETLayerNorm.empty(40, eps=op.norm.eps, dtype=torch.float32,
                                                                     device=device),
                                      norm_position="post", residual=True, dtype=torch.float32, device=device)
    skeleton.load_state_dict(op.state_dict())
    x = torch.randn(3, 7, 40, device=device)
    same_twice(op(x), skeleton(x))

    t5 = EETSelfAttention.from_torch(T5LayerSelfAttention(t5_config(False), has_relative_attention_bias=True))
    assert {k: tuple(v.shape) for k, v in t5.state_dict().items()} == {
        "qkv_weight": (120, 32), "out_weight": (32, 40), "norm.weight": (32,), "t5_table": (8, 2)}
    assert t5.qkv_bias is None and t5.out_bias is None and t5.norm.bias is None and t5.scale == 1.0

    cross = EETCrossAttention.from_torch(bart(is_decoder=True))
    assert {k: tuple(v.shape) for k, v in cross.state_dict().items()} == {
        "q_weight": (32, 32), "q_bias": (32,), "kv_weight": (64, 32), "kv_bias": (64,), "out_weight": (32, 32),
        "out_bias": (32,)}
    empty_cross = EETCrossAttention.empty(32, 2, q_bias=True, dtype=torch.float32, device=device)
    assert {k: tuple(v.shape) for k, v in empty_cross.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in cross.state_dict().items()}


def test_input_errors(device):
    op = EETSelfAttention.from_torch(randomize(bert()).to(device))
    x = torch.randn(3, 7, 40, device=device)
    with pytest.raises(ShapeError, match="hidden size 40"):
        op(torch.randn(3, 7, 32, device=device))
    with pytest.raises(ShapeError, match="3 dims"):
        op(torch.randn(7, 40, device=device))
    with pytest.raises(DTypeError, match="float16"):
        op(x.half())
    with pytest.raises(ShapeError, match=r"\[3, 7\]"):
        op(x, attention_mask=torch.ones(3, 6, device=device))
    with pytest.raises(ShapeError, match="4-D"):
        op(x, attention_mask=torch.zeros(3, 1, 7, 7, device=device))


def test_kv_cache_errors_leave_cache_untouched(device):
    op = EETSelfAttention.from_torch(randomize(gpt2()).to(device))
    cache = op.new_cache(1, 2, 8)
    op(torch.randn(2, 5, 40, device=device), kv_cache=cache)
    with pytest.raises(ShapeError, match=r"\[2, 6\]"):
        op(torch.randn(2, 1, 40, device=device), attention_mask=torch.ones(2, 1, device=device), kv_cache=cache)
    assert cache.length(0) == 5
    with pytest.raises(SequenceTooLongError, match="max_len is 8"):
        op(torch.randn(2, 4, 40, device=device), kv_cache=cache)
    assert cache.length(0) == 5
    with pytest.raises(ShapeError, match="batch=2"):
        op(torch.randn(3, 1, 40, device=device), kv_cache=cache)


def test_cross_attention_errors(device):
    op = EETCrossAttention.from_torch(randomize(bart(is_decoder=True)).to(device))
    x = torch.randn(3, 1, 32, device=device)
    cache = KVCache(1, 3, 4, op.num_heads, op.head_dim, dtype=torch.float32, device=device)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        op(x, kv_cache=cache)
    with pytest.raises(ShapeError, match=r"must be \[3, Lk, 2, 2, 16\], got \[2, 5, 2, 2, 16\]"):
        op(x, torch.randn(2, 5, 32, device=device), kv_cache=cache)
    assert cache.get_cross(0) is None, "a failed call must not fill the cache"
    with pytest.raises(ShapeError, match="hidden size 32"):
        op(x, torch.randn(3, 5, 40, device=device))
    with pytest.raises(ShapeError, match=r"\[3, 5\]"):
        op(x, torch.randn(3, 5, 32, device=device), torch.ones(3, 4, device=device))
