"""The precision comparison tool: its statistics against hand computation, the table, the op level
on a BertAttention and a causal CLIP text attention, and the model level on tiny BERT and CLIP
checkpoints (saved to temporary folders, loaded through eet_triton.load)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel, CLIPConfig, CLIPModel, CLIPTextConfig
from transformers.models.bert.modeling_bert import BertAttention
from transformers.models.clip.modeling_clip import CLIPAttention

import eet_triton
from eet_triton.ops import EETSelfAttention, EETSelfMaskedAttention
from eet_triton.tools import ComparisonTable, Row, Stats, compare_op, error_stats
from eet_triton.tools.demo import TINY
from eet_triton.tools.hf import make_inputs
from oracle import randomize

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# fp32 ours vs transformers fp32: a few units in the last place per layer, far below any real bug
FP32_REL = 1e-5
# low precision: the oracle's 2x rule on relative error, with one unit in the last place as the floor
FLOOR = {torch.float16: 1e-3, torch.bfloat16: 8e-3}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = BertConfig(vocab_size=97, hidden_size=40, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=72, max_position_embeddings=64)
        randomize(BertModel(config)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_clip")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        CLIPModel(CLIPConfig(**TINY)).eval().save_pretrained(folder)
    return folder


def assert_sane(row: Row, dtype: torch.dtype):
    """fp32: a few ulp of relative error; low precision: within 2x of transformers in that dtype."""
    assert row.ours is not None, f"{row.name}: no numbers ({row.note})"
    assert math.isfinite(row.ours.max_abs), f"{row.name}: not finite"
    if dtype == torch.float32:
        assert row.hf is None
        assert row.ours.rel_err <= FP32_REL, f"{row.name}: fp32 rel err {row.ours.rel_err:.3g}"
        assert row.ours.cosine >= 1 - 1e-9
    else:
        allowed = 2 * row.hf.rel_err + FLOOR[dtype]
        assert row.ours.rel_err <= allowed, f"{row.name}: rel err {row.ours.rel_err:.3g} > {allowed:.3g}"
        assert row.ours.cosine >= 1 - 1e-3


# ---- statistics and table --------------------------------------------------------------------------

def test_error_stats_against_hand_computation():
    ref = torch.randn(3, 5, 7)
    out = ref + 0.01 * torch.randn(3, 5, 7)
    stats = error_stats(out, ref)
    a, b = out.double().flatten(), ref.double().flatten()
    assert stats.max_abs == pytest.approx((a - b).abs().max().item(), rel=1e-12)
    assert stats.rel_err == pytest.approx(((a - b).norm() / b.norm()).item(), rel=1e-12)
    assert stats.cosine == pytest.approx((a @ b / (a.norm() * b.norm())).item(), rel=1e-12)
    assert error_stats(ref, ref) == Stats(0.0, 0.0, pytest.approx(1.0, abs=1e-12))


def test_error_stats_leaves_out_padding_and_shows_nan():
    ref = torch.randn(2, 6, 4)
    out = ref.clone()
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 3:] = False
    out[1, 3:] = 1e4  # garbage where padding is: must not count
    assert error_stats(out, ref, keep).max_abs == 0.0
    assert error_stats(out, ref).max_abs > 1e3
    out[0, 0, 0] = float("nan")
    assert math.isnan(error_stats(out, ref, keep).max_abs)


def test_table_rows_worst_and_renderings():
    rows = [Row("embeddings", (2, 5, 8), Stats(1e-3, 2e-4, 0.99999), Stats(1e-3, 1e-4, 0.99999)),
            Row("layer 0", (2, 5, 8), Stats(5e-3, 8e-4, 0.9999), Stats(4e-3, 4e-4, 0.9999)),
            Row("pooler_output", (2, 8), None, note="not captured from eet_triton")]
    table = ComparisonTable(rows, dtype="fp16", title="test table", notes=("a note",))
    assert table.worst().name == "layer 0"
    assert table["layer 0"].ratio == pytest.approx(2.0)
    dicts = table.to_dicts()
    assert [d["name"] for d in dicts] == ["embeddings", "layer 0", "pooler_output"]
    assert dicts[1]["rel_err"] == 8e-4 and dicts[1]["hf_rel_err"] == 4e-4 and dicts[2]["max_abs"] is None
    for text in (str(table), table._repr_markdown_(), table._repr_html_()):
        assert "test table" in text and "layer 0" in text and "8.00e-04" in text and "a note" in text
        assert "not captured" in text
    assert "worst: layer 0" in table.summary()
    nan_row = Row("layer 1", (2, 5, 8), Stats(float("nan"), float("nan"), float("nan")))
    assert ComparisonTable(rows + [nan_row], dtype="fp16", title="t").worst().name == "layer 1"
    assert not ComparisonTable([nan_row], dtype="fp16", title="t").all_finite()


def test_make_inputs_pads_last_row_and_closes_rows_with_eos(tiny_clip):
    model = CLIPModel.from_pretrained(tiny_clip)
    inputs = make_inputs(model, 3, 11, "cpu")
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    eos = model.config.text_config.eos_token_id
    assert ids.shape == mask.shape == (3, 11) and inputs["pixel_values"].shape == (3, 3, 32, 32)
    assert mask[:2].all() and mask[2].sum() == 5 and not mask[2, 5:].any()
    assert ((ids == eos).int().argmax(-1) == torch.tensor([10, 10, 4])).all()
    assert (ids == eos).sum() == 3 and ids.max() < model.config.text_config.vocab_size
    capped = make_inputs(model, 1, 500, "cpu")["input_ids"]
    assert capped.shape == (1, model.config.text_config.max_position_embeddings)


# ---- op level ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_compare_op_bert_attention(device, dtype):
    hf = randomize(BertAttention(BertConfig(hidden_size=40, num_attention_heads=2,
                                            attn_implementation="eager"))).to(device)
    op = EETSelfAttention.from_torch(hf, dtype=dtype, device=device)
    x = torch.randn(3, 7, 40, device=device)
    mask = torch.ones(3, 7, dtype=torch.int64, device=device)
    mask[2, 4:] = 0
    table = compare_op(op, hf, x, attention_mask=mask)
    again = compare_op(op, hf, x, attention_mask=mask)
    assert len(table) == 1 and table[0].shape == (3, 7, 40)
    assert table.to_dicts() == again.to_dicts()
    assert_sane(table[0], dtype)
    assert "padding excluded" in table.title and "BertAttention" in str(table)


@pytest.mark.parametrize("dtype", DTYPES)
def test_compare_op_causal_clip_text_attention(device, dtype):
    """The op is causal: compare_op must hand HF a causal 4-D mask, or every row but the last differs."""
    hf = randomize(CLIPAttention(CLIPTextConfig(hidden_size=32, num_attention_heads=2,
                                                attn_implementation="eager"))).to(device)
    op = EETSelfAttention.from_torch(hf, dtype=dtype, device=device, causal=True)
    assert isinstance(op, EETSelfMaskedAttention)
    x = torch.randn(2, 9, 32, device=device)
    mask = torch.ones(2, 9, dtype=torch.int64, device=device)
    mask[1, 6:] = 0
    assert_sane(compare_op(op, hf, x, attention_mask=mask)[0], dtype)


def test_compare_op_shows_a_wrong_op(device):
    """A bidirectional op against a causal reference must come out far off: the tool sees bugs."""
    hf = randomize(CLIPAttention(CLIPTextConfig(hidden_size=32, num_attention_heads=2,
                                                attn_implementation="eager"))).to(device)
    causal = EETSelfAttention.from_torch(hf, dtype=torch.float32, device=device, causal=True)
    x = torch.randn(2, 9, 32, device=device)
    mask = torch.ones(2, 9, dtype=torch.int64, device=device)
    bidirectional = EETSelfAttention.from_torch(hf, dtype=torch.float32, device=device)
    right = compare_op(causal, hf, x, attention_mask=mask)[0]
    wrong = compare_op(bidirectional, hf, x, attention_mask=mask, hf_kwargs={
        "attention_mask": torch.full((2, 1, 9, 9), float("-inf"), device=device).triu(1)})[0]
    assert right.ours.rel_err < FP32_REL
    assert wrong.ours.rel_err > 1e-2


# ---- model level ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_compare_tiny_bert(tiny_bert, device, dtype):
    table = eet_triton.compare(tiny_bert, dtype=dtype, device=device, batch=3, seq=13)
    names = [row.name for row in table]
    assert names == ["embeddings", "layer 0", "layer 1", "last_hidden_state", "pooler_output"]
    assert table["layer 1"].shape == (3, 13, 40) and table["pooler_output"].shape == (3, 40)
    for row in table:
        assert_sane(row, dtype)
    # the last layer's output is last_hidden_state (BERT has no final norm): one tensor, two names
    assert table["layer 1"].ours == table["last_hidden_state"].ours
    assert any("padding" in note for note in table.notes)
    assert table.worst() in table.rows


def test_compare_takes_inputs_and_an_hf_model(tiny_bert, device):
    hf = BertModel.from_pretrained(tiny_bert)
    ids = torch.randint(0, 97, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5])
    inputs = {"input_ids": ids, "attention_mask": mask}
    table = eet_triton.compare(tiny_bert, dtype="fp32", device=device, inputs=inputs, hf_model=hf)
    assert table["layer 0"].shape == (2, 9, 40)
    for row in table:
        assert_sane(row, torch.float32)
    assert next(hf.parameters()).device.type == "cpu", "compare must not move the caller's model"


def test_compare_tiny_clip_two_towers(tiny_clip, device):
    table = eet_triton.compare(tiny_clip, dtype="fp32", device=device)
    names = [row.name for row in table]
    for tower, tokens, width in (("text", 16, 32), ("vision", 17, 64)):
        assert [n for n in names if n.startswith(tower + ".")] == [
            f"{tower}.embeddings", f"{tower}.layer 0", f"{tower}.layer 1", f"{tower}.last_hidden_state",
            f"{tower}.pooler_output"]
        assert table[f"{tower}.layer 0"].shape == (2, tokens, width)
    assert {"logits_per_image", "logits_per_text", "text_embeds", "image_embeds"} <= set(names)
    for row in table:
        assert_sane(row, torch.float32)
