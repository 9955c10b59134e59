"""Text models loaded with eet_triton.load against transformers: BERT, RoBERTa, ALBERT and CLIP text,
every head class, fp32 tight (against float64, baseline transformers fp32) and fp16/bf16 within the
oracle (baseline transformers in that dtype), right- and left-padded batches, odd lengths."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AlbertForMaskedLM,
    AlbertForSequenceClassification,
    AlbertForTokenClassification,
    AlbertModel,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)

import eet_triton
from _tiny_models import (
    CLIP_EOS,
    albert_config,
    assert_matches,
    assert_same,
    bert_config,
    checkpoint,
    clip_text_config,
    hf_model,
    roberta_config,
    run_hf,
    text_inputs,
    to,
)

# name -> (HF class, config, pad id, causal CLIP text)
TEXT = {
    "BertModel": (BertModel, bert_config, 0, False),
    "BertForSequenceClassification": (BertForSequenceClassification, bert_config, 0, False),
    "BertForTokenClassification": (BertForTokenClassification, bert_config, 0, False),
    "BertForMaskedLM": (BertForMaskedLM, bert_config, 0, False),
    "RobertaModel": (RobertaModel, roberta_config, 1, False),
    "RobertaForSequenceClassification": (RobertaForSequenceClassification, roberta_config, 1, False),
    "RobertaForMaskedLM": (RobertaForMaskedLM, roberta_config, 1, False),
    "AlbertModel": (AlbertModel, albert_config, 0, False),
    "AlbertForSequenceClassification": (AlbertForSequenceClassification, albert_config, 0, False),
    "AlbertForMaskedLM": (AlbertForMaskedLM, albert_config, 0, False),
    "CLIPTextModel": (CLIPTextModel, clip_text_config, 1, True),
    "CLIPTextModelWithProjection": (CLIPTextModelWithProjection, clip_text_config, 1, True),
}

# (dtype, batch, seq_len, padded)
CASES = [
    pytest.param(torch.float32, 3, 13, True, id="fp32-b3-L13-padded"),
    pytest.param(torch.float16, 3, 7, True, id="fp16-b3-L7-padded"),
    pytest.param(torch.bfloat16, 1, 7, False, id="bf16-b1-L7"),
]


def check_text(hf_class, folder, device, dtype, inputs, *, causal: bool, twice: bool = False):
    model = eet_triton.load(folder, device=device, dtype=dtype)
    inputs = to(inputs, device)
    ours = model(**inputs)
    ref = run_hf(hf_model(hf_class, folder, torch.float64).to(device), inputs)
    base = run_hf(hf_model(hf_class, folder, dtype).to(device), inputs)
    # under a causal mask a left-padding query sees no key: zeros here, uniform attention in HF;
    # nobody reads those rows
    valid = inputs["attention_mask"].bool().cpu() if causal else None
    assert_matches(ours, ref, base, valid=valid)
    if twice:
        assert_same(ours, model(**inputs))
    return model


@pytest.mark.parametrize("dtype,batch,length,padded", CASES)
@pytest.mark.parametrize("name", list(TEXT))
def test_text_model_matches_transformers(name, dtype, batch, length, padded, device):
    hf_class, config, pad_id, causal = TEXT[name]
    inputs = text_inputs(batch, length, pad_id=pad_id, padded=padded, eos=CLIP_EOS if causal else None)
    check_text(hf_class, checkpoint(hf_class, config()), device, dtype, inputs, causal=causal,
               twice=dtype == torch.float32)


@pytest.mark.parametrize("hf_class", [BertForTokenClassification, RobertaForTokenClassification,
                                      AlbertForTokenClassification])
def test_token_classification_fp32(hf_class, device):
    config = {BertForTokenClassification: bert_config, RobertaForTokenClassification: roberta_config,
              AlbertForTokenClassification: albert_config}[hf_class]
    pad_id = 1 if hf_class is RobertaForTokenClassification else 0
    inputs = text_inputs(3, 9, pad_id=pad_id, padded=True)
    check_text(hf_class, checkpoint(hf_class, config()), device, torch.float32, inputs, causal=False)


def test_token_types_and_explicit_positions(device):
    """token_type_ids given, position_ids in HF's [1, L] form, a bool attention_mask."""
    folder = checkpoint(BertModel, bert_config())
    inputs = text_inputs(2, 11, pad_id=0, padded=True)
    inputs["attention_mask"] = inputs["attention_mask"].bool()
    inputs["token_type_ids"] = torch.randint(0, 2, (2, 11))
    inputs["position_ids"] = torch.randperm(11)[None]
    check_text(BertModel, folder, device, torch.float32, inputs, causal=False)


def test_clip_text_legacy_eos_pooling(device):
    """eos_token_id == 2 (CLIP configs from before transformers PR #24773): the pooled token is the
    one with the largest id, as transformers does; the eos id itself appears nowhere in the ids."""
    folder = checkpoint(CLIPTextModel, clip_text_config(eos_token_id=2), key="CLIPTextModel-eos2")
    inputs = text_inputs(3, 9, pad_id=1, padded=True, eos=CLIP_EOS)
    check_text(CLIPTextModel, folder, device, torch.float32, inputs, causal=True)


def test_albert_layers_shared_once(device):
    """num_hidden_layers=3 steps through ONE layer module: its weights exist once."""
    folder = checkpoint(AlbertModel, albert_config())
    model = eet_triton.load(folder, device=device, dtype="fp32")
    assert len(model.layers) == 1 and model.spec.num_layers == 3
    qkv = [p for n, p in model.named_parameters() if n.endswith("qkv_weight")]
    assert len(qkv) == 1


def test_albert_layer_groups(device):
    """num_hidden_groups=2 over 4 layers: layer i runs group int(i / 2), as transformers does."""
    folder = checkpoint(AlbertModel, albert_config(num_hidden_layers=4, num_hidden_groups=2), key="AlbertModel-g2")
    inputs = text_inputs(2, 7, pad_id=0, padded=True)
    model = check_text(AlbertModel, folder, device, torch.float32, inputs, causal=False)
    assert len(model.layers) == 2


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_masked_lm_tied_and_untied(family, device):
    """Tied: the LM head's weight is the token table itself. Untied (tie_word_embeddings=False), the
    checkpoint holds a separate decoder weight and a decoder bias, the one transformers applies."""
    hf_class, config, pad_id = {"bert": (BertForMaskedLM, bert_config, 0),
                                "roberta": (RobertaForMaskedLM, roberta_config, 1)}[family]
    tied = eet_triton.load(checkpoint(hf_class, config()), device=device, dtype="fp32")
    assert tied.lm_head.weight is tied.embeddings.word_weight
    folder = checkpoint(hf_class, config(tie_word_embeddings=False), key=f"{hf_class.__name__}-untied")
    inputs = text_inputs(2, 7, pad_id=pad_id, padded=True)
    untied = check_text(hf_class, folder, device, torch.float32, inputs, causal=False)
    assert untied.lm_head.weight is not untied.embeddings.word_weight
