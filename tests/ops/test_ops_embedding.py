"""EETBertEmbedding (BERT, RoBERTa, CLIP text) and EETVisionEmbedding (CLIP vision, ViT) against HF."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, CLIPTextConfig, CLIPVisionConfig, RobertaConfig, ViTConfig
from transformers.models.bert.modeling_bert import BertEmbeddings
from transformers.models.clip.modeling_clip import CLIPTextEmbeddings, CLIPVisionEmbeddings
from transformers.models.roberta.modeling_roberta import RobertaEmbeddings
from transformers.models.vit.modeling_vit import ViTEmbeddings

from _ops_helpers import check, hf_runs, randomize, same_twice
from eet_triton.errors import DeviceError, DTypeError, SequenceTooLongError, ShapeError, UnsupportedModelError
from eet_triton.ops import EETBertEmbedding, EETVisionEmbedding, from_torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
VISION_DTYPES = DTYPES
TEXT = dict(vocab_size=50, hidden_size=40, max_position_embeddings=20)


def _text(name):
    if name == "BertEmbeddings":
        return BertEmbeddings(BertConfig(type_vocab_size=3, **TEXT))
    if name == "RobertaEmbeddings":
        return RobertaEmbeddings(RobertaConfig(pad_token_id=1, type_vocab_size=1, **TEXT))
    return CLIPTextEmbeddings(CLIPTextConfig(**TEXT))


@pytest.mark.parametrize("batch, seq", [(1, 1), (3, 7), (3, 13)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["BertEmbeddings", "RobertaEmbeddings", "CLIPTextEmbeddings"])
def test_text_embedding_matches_hf(device, name, dtype, batch, seq):
    hf = randomize(_text(name)).to(device)
    op = EETBertEmbedding.from_torch(hf, dtype=dtype)
    ids = torch.randint(2, 50, (batch, seq), device=device)
    kwargs = {}
    if name == "BertEmbeddings":
        kwargs["token_type_ids"] = torch.randint(0, 3, (batch, seq), device=device)
    if name == "RobertaEmbeddings":
        ids[1:, : seq // 2] = 1  # left padding: positions count only real tokens
        ids[-1, -2:] = 1  # and right padding
    out = op(ids, **kwargs)
    same_twice(out, op(ids, **kwargs))
    ref, base = hf_runs(hf, lambda m, dt: m(input_ids=ids, **kwargs), dtype)
    check(out, ref, base)


def test_bert_defaults_and_explicit_positions(device):
    hf = randomize(_text("BertEmbeddings")).to(device)
    op = EETBertEmbedding.from_torch(hf)
    ids = torch.randint(0, 50, (3, 7), device=device)
    positions = torch.randint(0, 20, (3, 7), device=device)
    ref, base = hf_runs(hf, lambda m, dt: m(input_ids=ids, position_ids=positions), torch.float32)
    check(op(ids, position_ids=positions), ref, base)
    ref, base = hf_runs(hf, lambda m, dt: m(input_ids=ids), torch.float32)
    check(op(ids), ref, base)  # no token types: type 0, as BERT


def test_sequence_too_long(device):
    op = EETBertEmbedding.from_torch(_text("BertEmbeddings").to(device))
    assert op.max_positions == 20
    op(torch.zeros(1, 20, dtype=torch.long, device=device))
    with pytest.raises(SequenceTooLongError, match="21 exceeds the 20 positions"):
        op(torch.zeros(1, 21, dtype=torch.long, device=device))
    roberta = EETBertEmbedding.from_torch(_text("RobertaEmbeddings").to(device))
    assert roberta.max_positions == 18  # positions start after padding_idx = 1
    with pytest.raises(SequenceTooLongError):
        roberta(torch.full((1, 19), 5, dtype=torch.long, device=device))


def test_text_contract_and_errors(device):
    op = EETBertEmbedding.from_torch(_text("BertEmbeddings"))
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == {
        "word_weight": (50, 40), "position_weight": (20, 40), "type_weight": (3, 40),
        "norm.weight": (40,), "norm.bias": (40,)}
    clip = from_torch(_text("CLIPTextEmbeddings"))
    assert isinstance(clip, EETBertEmbedding) and clip.type_weight is None and clip.norm is None
    skeleton = EETBertEmbedding.empty(50, 40, 20, 3, norm=op.norm, dtype=torch.float32, device="cpu")
    assert {k: v.shape for k, v in skeleton.state_dict().items()} == {k: v.shape for k, v in op.state_dict().items()}
    with pytest.raises(UnsupportedModelError, match="BertEmbeddings"):
        EETBertEmbedding.from_torch(torch.nn.Embedding(3, 4))
    op = op.to(device)
    with pytest.raises(ShapeError, match=r"\[batch, seq_len\]"):
        op(torch.zeros(7, dtype=torch.long, device=device))
    with pytest.raises(DTypeError, match="int32/int64"):
        op(torch.zeros(1, 7, device=device))
    with pytest.raises(ShapeError, match="token_type_ids"):
        op(torch.zeros(1, 7, dtype=torch.long, device=device),
           token_type_ids=torch.zeros(1, 6, dtype=torch.long, device=device))
    if device == "cuda":
        with pytest.raises(DeviceError):
            op(torch.zeros(1, 7, dtype=torch.long))


def _vision(name):
    if name == "CLIPVisionEmbeddings":
        return CLIPVisionEmbeddings(CLIPVisionConfig(hidden_size=40, num_attention_heads=2, image_size=12, patch_size=4,
                                                     num_channels=3))
    return ViTEmbeddings(ViTConfig(hidden_size=40, num_attention_heads=2, image_size=12, patch_size=4, num_channels=3))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("dtype", VISION_DTYPES)
@pytest.mark.parametrize("name", ["CLIPVisionEmbeddings", "ViTEmbeddings"])
def test_vision_embedding_matches_hf(device, name, dtype, batch):
    hf = randomize(_vision(name)).to(device)
    op = EETVisionEmbedding.from_torch(hf, dtype=dtype)
    pixels = torch.randn(batch, 3, 12, 12, device=device)
    out = op(pixels)
    assert out.shape == (batch, 10, 40) and out.dtype == dtype
    same_twice(out, op(pixels))
    ref, base = hf_runs(hf, lambda m, dt: m(pixels.to(dt)), dtype)
    check(out, ref, base)


def test_vision_contract_and_errors(device):
    op = EETVisionEmbedding.from_torch(_vision("ViTEmbeddings"))
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == {
        "patch_weight": (40, 3, 4, 4), "patch_bias": (40,), "class_embedding": (40,), "position_weight": (10, 40)}
    clip = from_torch(_vision("CLIPVisionEmbeddings"))
    assert isinstance(clip, EETVisionEmbedding) and clip.patch_bias is None
    skeleton = EETVisionEmbedding.empty(12, 4, 3, 40, dtype=torch.float32, device="cpu")
    assert {k: v.shape for k, v in skeleton.state_dict().items()} == {k: v.shape for k, v in clip.state_dict().items()}
    op = op.to(device)
    with pytest.raises(ShapeError, match="image size"):
        op(torch.randn(1, 3, 16, 16, device=device))
    with pytest.raises(ShapeError, match=r"\[batch, 3, 12, 12\]"):
        op(torch.randn(1, 1, 12, 12, device=device))
    with pytest.raises(DTypeError, match="float"):
        op(torch.zeros(1, 3, 12, 12, dtype=torch.long, device=device))
