"""embedding and patch_embedding against float64 torch references."""

import math

import pytest
import torch
import torch.nn.functional as F

from eet_triton.errors import DTypeError, ShapeError
from eet_triton.kernels.embedding import embedding, patch_embedding
from tests.oracle import assert_oracle, nan_like

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def table(rows, e, dtype, device):
    return (torch.randn(rows, e, device=device) * 0.5).to(dtype)


def embedding_reference(input_ids, word_weight, *, position_ids=None, position_weight=None, token_type_ids=None,
                        type_weight=None, scale=1.0, norm_weight=None, norm_bias=None, eps=1e-12):
    """The model's own sequence of torch ops, in the tables' dtype (float64 tables: the reference)."""
    h = word_weight[input_ids] * scale
    if position_weight is not None:
        h = h + position_weight[position_ids]
    if type_weight is not None:
        h = h + type_weight[token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)]
    if norm_weight is not None:
        h = F.layer_norm(h, (h.shape[-1],), norm_weight, norm_bias, eps)
    return h


def check_embedding(**kw):
    """NaN-poisoned out, two runs equal bit for bit, float64 reference, low-dtype baseline."""
    word = kw["word_weight"]
    shape = (*kw["input_ids"].shape, word.shape[1])
    outs = [embedding(**kw, out=nan_like(torch.empty(shape, dtype=word.dtype, device=word.device))) for _ in range(2)]
    assert torch.equal(outs[0], outs[1]), "two runs differ: a race or an unwritten element"
    ref_kw = {k: v for k, v in kw.items() if k != "word_weight"}
    as64 = {k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in ref_kw.items()}
    ref = embedding_reference(word_weight=word.double(), **as64)
    assert_oracle(outs[0], ref, embedding_reference(word_weight=word, **ref_kw))
    return outs[0]


def ids(high, b, seq, device, dtype=torch.int64):
    t = torch.randint(0, high, (b, seq), device=device, dtype=dtype)
    # the edges of the table must work
    t.view(-1)[0], t.view(-1)[-1] = 0, high - 1
    return t


@pytest.mark.parametrize("with_type_ids", [True, False], ids=["type_ids", "type0"])
@pytest.mark.parametrize("e", [48, 100])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bert_like(with_type_ids, e, dtype, device):
    """Word + [B, L] positions + token types (type row 0 without ids), then LayerNorm."""
    b, seq = 2, 7
    out = check_embedding(
        input_ids=ids(97, b, seq, device, torch.int32), word_weight=table(97, e, dtype, device),
        position_ids=torch.arange(seq, device=device).expand(b, seq), position_weight=table(16, e, dtype, device),
        token_type_ids=ids(2, b, seq, device) if with_type_ids else None, type_weight=table(2, e, dtype, device),
        norm_weight=table(1, e, dtype, device)[0] + 1, norm_bias=table(1, e, dtype, device)[0],
    )
    assert out.dtype == dtype and out.shape == (b, seq, e)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_roberta_like(dtype, device):
    """Positions given per token (RoBERTa counts from padding_idx + 1 and skips padding)."""
    b, seq, e, pad = 3, 11, 64, 1
    input_ids = ids(50, b, seq, device)
    input_ids[0, -3:] = pad
    not_pad = (input_ids != pad).long()
    position_ids = torch.cumsum(not_pad, dim=1) * not_pad + pad
    check_embedding(
        input_ids=input_ids, word_weight=table(50, e, dtype, device),
        position_ids=position_ids, position_weight=table(seq + 2, e, dtype, device),
        type_weight=table(1, e, dtype, device),
        norm_weight=table(1, e, dtype, device)[0] + 1, norm_bias=table(1, e, dtype, device)[0], eps=1e-5,
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_clip_text_like(dtype, device):
    """Word + [L] positions broadcast over the batch; no types, no norm."""
    b, seq, e = 3, 77, 32
    check_embedding(input_ids=ids(200, b, seq, device), word_weight=table(200, e, dtype, device),
                    position_ids=torch.arange(seq, device=device), position_weight=table(seq, e, dtype, device))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bart_like(dtype, device):
    """embed_scale on the word term, positions offset by 2, layernorm_embedding, no norm bias."""
    b, seq, e = 2, 9, 40
    check_embedding(input_ids=ids(60, b, seq, device), word_weight=table(60, e, dtype, device),
                    position_ids=torch.arange(seq, device=device) + 2, position_weight=table(seq + 2, e, dtype, device),
                    scale=math.sqrt(e), norm_weight=table(1, e, dtype, device)[0] + 1, eps=1e-5)


def test_strided_ids_and_out(device):
    """ids as a column slice of a wider batch and a strided out view: no copies needed."""
    word, pos = table(30, 24, torch.float32, device), table(12, 24, torch.float32, device)
    wide = ids(30, 3, 12, device)
    input_ids = wide[:, 2:9]
    out_base = torch.full((3, 8, 24), float("nan"), device=device)
    out = embedding(input_ids, word, position_ids=torch.arange(7, device=device), position_weight=pos,
                    out=out_base[:, 1:])
    ref = word.double()[input_ids] + pos.double()[:7]
    assert_oracle(out, ref, word[input_ids] + pos[:7])
    assert torch.isnan(out_base[:, 0]).all(), "wrote outside the view"


def test_embedding_errors(device):
    word = table(10, 16, torch.float32, device)
    input_ids = ids(10, 2, 3, device)
    with pytest.raises(DTypeError, match="input_ids"):
        embedding(input_ids.float(), word)
    with pytest.raises(ShapeError, match="position_weight"):
        embedding(input_ids, word, position_ids=torch.arange(3, device=device))
    with pytest.raises(ShapeError, match="position_ids"):
        embedding(input_ids, word, position_ids=torch.arange(4, device=device), position_weight=table(8, 16,
                  torch.float32, device))
    with pytest.raises(ShapeError, match="position_weight"):
        embedding(input_ids, word, position_ids=torch.arange(3, device=device),
                  position_weight=table(8, 15, torch.float32, device))
    with pytest.raises(ShapeError, match="type_weight"):
        embedding(input_ids, word, token_type_ids=torch.zeros_like(input_ids))
    with pytest.raises(ShapeError, match="norm_weight"):
        embedding(input_ids, word, norm_bias=torch.zeros(16, device=device))
    with pytest.raises(ShapeError, match="norm_weight"):
        embedding(input_ids, word, norm_weight=torch.ones(15, device=device))
    with pytest.raises(DTypeError, match="out"):
        embedding(input_ids, word, out=torch.empty(2, 3, 16, device=device, dtype=torch.float16))


def patch_reference(pixel_values, weight, bias, cls, pos):
    """CLIP / ViT embeddings: conv2d -> flatten -> class token -> + positions, in weight's dtype."""
    h = F.conv2d(pixel_values.to(weight.dtype), weight, bias, stride=weight.shape[-1]).flatten(2).transpose(1, 2)
    if cls is not None:
        h = torch.cat([cls.expand(h.shape[0], 1, -1), h], dim=1)
    return h if pos is None else h + pos


def check_patch(pixel_values, weight, bias=None, cls=None, pos=None):
    b, _, hgt, wid = pixel_values.shape
    p = weight.shape[-1]
    shape = (b, (hgt // p) * (wid // p) + (cls is not None), weight.shape[0])
    outs = [patch_embedding(pixel_values, weight, bias, class_embedding=cls, position_weight=pos,
                            out=torch.full(shape, float("nan"), dtype=weight.dtype, device=weight.device))
            for _ in range(2)]
    assert torch.equal(outs[0], outs[1]), "two runs differ: a race or an unwritten element"
    as64 = [None if t is None else t.double() for t in (weight, bias, cls, pos)]
    # the reference sees the pixels exactly as the kernel does: cast to the weight's dtype
    ref = patch_reference(pixel_values.to(weight.dtype).double(), *as64)
    with torch.backends.cudnn.flags(allow_tf32=False):
        baseline = patch_reference(pixel_values, weight, bias, cls, pos)
    assert_oracle(outs[0], ref, baseline)
    return outs[0]


@pytest.mark.parametrize("image,patch,e", [((8, 8), 4, 48), ((12, 12), 4, 32), ((12, 18), 6, 40), ((32, 32), 16, 32)])
@pytest.mark.parametrize("with_bias,with_cls", [(False, True), (True, True), (True, False)],
                         ids=["clip", "vit", "no_cls"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_patch_embedding(image, patch, e, with_bias, with_cls, dtype, device):
    b, c = 2, 3
    n_tok = (image[0] // patch) * (image[1] // patch) + with_cls
    weight = (torch.randn(e, c, patch, patch, device=device) / patch).to(dtype)
    out = check_patch(torch.randn(b, c, *image, device=device).to(dtype), weight,
                      torch.randn(e, device=device).to(dtype) if with_bias else None,
                      torch.randn(e, device=device).to(dtype) if with_cls else None,
                      table(n_tok, e, dtype, device))
    assert out.shape == (b, n_tok, e) and out.dtype == dtype


def test_patch_embedding_fp32_pixels_strided(device):
    """fp32 pixels into fp16 weights (cast on load), pixels a cropped channels-last view, no positions."""
    full = torch.randn(2, 14, 15, 3, device=device).permute(0, 3, 1, 2)
    pixel_values = full[:, :, 1:13, 2:14]
    weight = (torch.randn(32, 3, 4, 4, device=device) / 4).half()
    check_patch(pixel_values, weight, cls=torch.randn(32, device=device).half())


def test_patch_embedding_errors(device):
    weight = torch.randn(16, 3, 4, 4, device=device)
    px = torch.randn(1, 3, 8, 8, device=device)
    with pytest.raises(ShapeError, match="multiples"):
        patch_embedding(torch.randn(1, 3, 8, 10, device=device), weight)
    with pytest.raises(ShapeError, match="channels"):
        patch_embedding(torch.randn(1, 4, 8, 8, device=device), weight)
    with pytest.raises(ShapeError, match="position_weight"):
        patch_embedding(px, weight, class_embedding=torch.randn(16, device=device),
                        position_weight=torch.randn(4, 16, device=device))
    with pytest.raises(ShapeError, match="square"):
        patch_embedding(px, torch.randn(16, 3, 4, 2, device=device))
    with pytest.raises(ShapeError, match="patch_bias"):
        patch_embedding(px, weight, torch.randn(15, device=device))
    with pytest.raises(DTypeError, match="pixel_values"):
        patch_embedding(px.to(torch.int32), weight)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_embedding_real_size(dtype):
    b, seq, e = 32, 512, 768
    check_embedding(
        input_ids=ids(30522, b, seq, "cuda"), word_weight=table(30522, e, dtype, "cuda"),
        position_ids=torch.arange(seq, device="cuda"), position_weight=table(512, e, dtype, "cuda"),
        token_type_ids=ids(2, b, seq, "cuda"), type_weight=table(2, e, dtype, "cuda"),
        norm_weight=table(1, e, dtype, "cuda")[0] + 1, norm_bias=table(1, e, dtype, "cuda")[0],
    )


@pytest.mark.gpu
@pytest.mark.parametrize("patch", [32, 16])
@pytest.mark.parametrize("with_bias", [False, True], ids=["clip", "vit"])
def test_patch_embedding_real_size(patch, with_bias):
    b, c, side, e = 32, 3, 224, 768
    n_tok = (side // patch) ** 2 + 1
    weight = (torch.randn(e, c, patch, patch, device="cuda") / patch).half()
    check_patch(torch.randn(b, c, side, side, device="cuda"), weight,
                torch.randn(e, device="cuda").half() if with_bias else None,
                torch.randn(e, device="cuda").half(), table(n_tok, e, torch.float16, "cuda"))
