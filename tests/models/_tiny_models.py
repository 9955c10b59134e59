"""Tiny random HuggingFace checkpoints for the model tests, and comparing our outputs to theirs.

Each checkpoint is built from a transformers config with a fixed seed (inside fork_rng, so the
test's own fresh seed still drives the inputs), every parameter drawn at random (HF's init zeroes
biases and sets norms to 1, which would hide a bias or norm routed to the wrong place), saved with
save_pretrained to a temporary folder once per session, and loaded from there.
"""

from __future__ import annotations

import pathlib
import tempfile

import torch
from transformers import (
    AlbertConfig,
    BertConfig,
    CLIPConfig,
    CLIPTextConfig,
    CLIPVisionConfig,
    RobertaConfig,
    ViTConfig,
    VisionTextDualEncoderConfig,
)
from transformers.utils import ModelOutput

from oracle import assert_oracle

VOCAB = 99
LABELS = {0: "a", 1: "b", 2: "c"}
# CLIP text: real tokens < 97, bos 97, eos 98 (the eos_token_id path); the legacy configs say
# eos_token_id 2 and mark the end with the largest id in the row
CLIP_BOS, CLIP_EOS = 97, 98


def bert_config(**kw):
    return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                      vocab_size=VOCAB, max_position_embeddings=40, type_vocab_size=2, id2label=LABELS, **kw)


def roberta_config(**kw):
    return RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                         vocab_size=VOCAB, max_position_embeddings=42, type_vocab_size=1, pad_token_id=1,
                         id2label=LABELS, **kw)


def albert_config(**kw):
    kw = {"num_hidden_layers": 3, **kw}
    return AlbertConfig(hidden_size=32, embedding_size=24, num_attention_heads=2, intermediate_size=37,
                        vocab_size=VOCAB, max_position_embeddings=40, hidden_act="gelu_new", id2label=LABELS, **kw)


def vit_config(**kw):
    # head_dim 20: not a power of two
    return ViTConfig(hidden_size=40, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32,
                     patch_size=8, id2label=LABELS, **kw)


def clip_text_config(**kw):
    kw = {"eos_token_id": CLIP_EOS, **kw}
    return CLIPTextConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                          vocab_size=VOCAB, max_position_embeddings=20, bos_token_id=CLIP_BOS, pad_token_id=1,
                          projection_dim=24, **kw)


def clip_vision_config(**kw):
    return CLIPVisionConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37,
                            image_size=32, patch_size=16, projection_dim=24, **kw)


def clip_config(**text_kw):
    return CLIPConfig(text_config=clip_text_config(**text_kw).to_dict(), vision_config=clip_vision_config().to_dict(),
                      projection_dim=24)


def dual_config(text, vision):
    return VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=24)


def randomize(model: torch.nn.Module, seed: int = 1234, std: float = 0.1) -> torch.nn.Module:
    """Every parameter random: norm weights near 1, the rest N(0, std); logit_scale kept."""
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                continue
            if p.dim() == 1 and "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    return model


_FOLDERS: dict[str, pathlib.Path] = {}


def checkpoint(hf_class, config, key: str | None = None, std: float = 0.1) -> pathlib.Path:
    """A saved random `hf_class(config)` (once per session per key); std: see randomize."""
    key = key or hf_class.__name__
    if key not in _FOLDERS:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = randomize(hf_class(config).eval(), std=std)
        folder = pathlib.Path(tempfile.mkdtemp(prefix=f"eet_{key}_"))
        model.save_pretrained(folder)
        _FOLDERS[key] = folder
    return _FOLDERS[key]


def hf_model(hf_class, folder: pathlib.Path, dtype: torch.dtype):
    return hf_class.from_pretrained(folder, dtype=dtype).eval()


def text_inputs(batch: int, length: int, *, pad_id: int, padded: bool, eos: int | None = None,
                low: int = 3, high: int = 96) -> dict[str, torch.Tensor]:
    """input_ids [batch, length] of random ids in [low, high) (never pad_id) and attention_mask.
    padded: row 0 right-padded, row 1 left-padded (batch >= 2), the rest full. eos: the id put
    at each row's last real token."""
    ids = torch.randint(low, high, (batch, length))
    ids[ids == pad_id] = low + 1
    mask = torch.ones(batch, length, dtype=torch.int64)
    if padded:
        mask[0, length - 3:] = 0
        if batch > 1:
            mask[1, :2] = 0
    if eos is not None:
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        ids[torch.arange(batch), last] = eos
    ids[mask == 0] = pad_id
    return {"input_ids": ids, "attention_mask": mask}


def image_inputs(batch: int, size: int = 32) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(batch, 3, size, size)}


def to(inputs: dict, device) -> dict:
    return {k: v.to(device) for k, v in inputs.items()}


def run_hf(model, inputs: dict):
    with torch.no_grad():
        return model(**inputs)


def assert_matches(ours, ref, baseline, *, valid: torch.Tensor | None = None, what: str = ""):
    """Our output object against transformers': the same class and the same fields present; each
    tensor within the oracle (ref: high precision; baseline: transformers in our dtype). valid:
    [B, L] bool, the positions compared in tensors of a sequence ([B, L, ...])."""
    assert type(ours) is type(ref), f"{what}: output class {type(ours).__name__}, transformers {type(ref).__name__}"
    assert list(ours.keys()) == list(ref.keys()), f"{what}: fields {list(ours.keys())} != {list(ref.keys())}"
    for name, r in ref.items():
        o, b = ours[name], baseline[name]
        where = f"{what}.{name}" if what else name
        if isinstance(r, ModelOutput):
            assert_matches(o, r, b, valid=valid, what=where)
            continue
        o, r, b = o.cpu(), r.cpu(), b.cpu()
        if valid is not None and r.dim() >= 2 and tuple(r.shape[:2]) == tuple(valid.shape):
            o, r, b = o[valid], r[valid], b[valid]
        assert_oracle(o, r, b, what=where)


def assert_same(a, b, what: str = "output"):
    """Two runs of our model give bit-identical outputs (no races)."""
    for name, x in a.items():
        y = b[name]
        if isinstance(x, ModelOutput):
            assert_same(x, y, f"{what}.{name}")
        else:
            assert torch.equal(x, y), f"{what}.{name}: a second run differs"
