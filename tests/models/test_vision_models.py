"""Vision models loaded with eet_triton.load against transformers: ViT (head_dim 20, with pooler and
image classification) and CLIP vision (no patch bias, pre-norm, pooled-token norm, projection)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionModel, CLIPVisionModelWithProjection, ViTForImageClassification, ViTModel

import eet_triton
from _tiny_models import (
    assert_matches,
    assert_same,
    checkpoint,
    clip_vision_config,
    hf_model,
    image_inputs,
    run_hf,
    to,
    vit_config,
)

VISION = {
    "ViTModel": (ViTModel, vit_config),
    "ViTForImageClassification": (ViTForImageClassification, vit_config),
    "CLIPVisionModel": (CLIPVisionModel, clip_vision_config),
    "CLIPVisionModelWithProjection": (CLIPVisionModelWithProjection, clip_vision_config),
}

CASES = [
    pytest.param(torch.float32, 3, id="fp32-b3"),
    pytest.param(torch.float16, 1, id="fp16-b1"),
    pytest.param(torch.bfloat16, 3, id="bf16-b3"),
]


@pytest.mark.parametrize("dtype,batch", CASES)
@pytest.mark.parametrize("name", list(VISION))
def test_vision_model_matches_transformers(name, dtype, batch, device):
    hf_class, config = VISION[name]
    folder = checkpoint(hf_class, config())
    model = eet_triton.load(folder, device=device, dtype=dtype)
    inputs = to(image_inputs(batch), device)
    ours = model(**inputs)
    ref = run_hf(hf_model(hf_class, folder, torch.float64).to(device), inputs)
    base = run_hf(hf_model(hf_class, folder, dtype).to(device), inputs)
    assert_matches(ours, ref, base)
    if dtype == torch.float32:
        assert_same(ours, model(**inputs))


def test_pixel_values_in_another_float_dtype(device):
    """fp16 pixels into an fp32 model are cast on load, as transformers casts before its conv."""
    folder = checkpoint(ViTModel, vit_config())
    model = eet_triton.load(folder, device=device, dtype="fp32")
    pixels = image_inputs(2)["pixel_values"].half().to(device)
    ours = model(pixel_values=pixels)
    ref = run_hf(hf_model(ViTModel, folder, torch.float64).to(device), {"pixel_values": pixels.double()})
    base = run_hf(hf_model(ViTModel, folder, torch.float32).to(device), {"pixel_values": pixels.float()})
    assert_matches(ours, ref, base)
