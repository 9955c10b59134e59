"""Dual encoders loaded with eet_triton.load against transformers: CLIPModel, and
VisionTextDualEncoderModel with a BERT text tower + ViT vision tower and a RoBERTa text tower +
CLIP vision tower (each tower filled from the map of its sub-config's model_type)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPModel, VisionTextDualEncoderModel

import eet_triton
from _tiny_models import (
    CLIP_EOS,
    assert_matches,
    assert_same,
    bert_config,
    checkpoint,
    clip_config,
    clip_vision_config,
    dual_config,
    hf_model,
    image_inputs,
    roberta_config,
    run_hf,
    text_inputs,
    to,
    vit_config,
)

DUAL = {
    "CLIPModel": (CLIPModel, clip_config, 1, True),
    "VisionTextDualEncoderModel-bert-vit": (VisionTextDualEncoderModel,
                                            lambda: dual_config(bert_config(), vit_config()), 0, False),
    "VisionTextDualEncoderModel-roberta-clip": (VisionTextDualEncoderModel,
                                                lambda: dual_config(roberta_config(), clip_vision_config()), 1, False),
}

# (dtype, text batch, image batch, seq_len): the batches need not match
CASES = [
    pytest.param(torch.float32, 3, 2, 13, id="fp32-t3-i2-L13"),
    pytest.param(torch.float16, 3, 3, 7, id="fp16-t3-i3-L7"),
]


@pytest.mark.parametrize("dtype,text_batch,image_batch,length", CASES)
@pytest.mark.parametrize("name", list(DUAL))
def test_dual_encoder_matches_transformers(name, dtype, text_batch, image_batch, length, device):
    hf_class, config, pad_id, causal = DUAL[name]
    folder = checkpoint(hf_class, config(), key=name)
    model = eet_triton.load(folder, device=device, dtype=dtype)
    inputs = text_inputs(text_batch, length, pad_id=pad_id, padded=True, eos=CLIP_EOS if causal else None)
    inputs = to({**inputs, **image_inputs(image_batch)}, device)
    ours = model(**inputs)
    ref = run_hf(hf_model(hf_class, folder, torch.float64).to(device), inputs)
    base = run_hf(hf_model(hf_class, folder, dtype).to(device), inputs)
    valid = inputs["attention_mask"].bool().cpu() if causal else None
    assert ours.logits_per_text.shape == (text_batch, image_batch)
    assert_matches(ours, ref, base, valid=valid)
    if dtype == torch.float32:
        assert_same(ours, model(**inputs))


@pytest.mark.parametrize("name,towers", [("CLIPModel", ("CLIPTextModel", "CLIPVisionModel")),
                                         ("VisionTextDualEncoderModel-bert-vit", ("BertModel", "ViTModel"))])
def test_towers_from_sub_config_maps(name, towers, device):
    hf_class, config, _, _ = DUAL[name]
    model = eet_triton.load(checkpoint(hf_class, config(), key=name), device=device, dtype="fp32")
    assert (model.spec.text.architecture, model.spec.vision.architecture) == towers
    # CLIP text pools at the end-of-text token; BERT's tower keeps its dense pooler (as AutoModel builds it)
    assert (model.text_model.pooler is not None) == (towers[0] == "BertModel")

