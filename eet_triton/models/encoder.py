"""The generic encoder stack, driven by a ModelSpec: one class serves BERT, RoBERTa, ALBERT, ViT,
CLIP text and CLIP vision.

    embeddings -> [pre_norm] -> [embedding_projection] -> layers (each step runs
    layers[schedule[i]]: ALBERT runs one shared layer N times) -> [final_norm] -> pooling

Module names are the model-level parameter names of the structure maps (docs/MAPS.md):
`embeddings` (EETBertEmbedding) or `vision_embeddings` (EETVisionEmbedding), `pre_norm`,
`embedding_projection`, `layers.{i}.attention`, `layers.{i}.ffn`, `final_norm`, `pooler_norm`,
`pooler`.
"""

from __future__ import annotations

import torch
from torch import nn

from eet_triton.errors import UnsupportedModelError
from eet_triton.models.layers import Dense, EncoderLayer, layer_norm
from eet_triton.models.spec import ModelSpec
from eet_triton.ops import EETBertEmbedding, EETVisionEmbedding


class Encoder(nn.Module):
    """A transformer encoder stack with its pooling.

    encode(input_ids [B, L] | pixel_values [B, C, H, W], attention_mask=None, token_type_ids=None,
    position_ids=None) -> last_hidden_state [B, L, hidden] in the weights' dtype.
    pool(last_hidden_state, input_ids=None) -> pooler_output [B, hidden or pooler_size], or None
    when the architecture has no pooled output.
    """

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device):
        super().__init__()
        if spec.cross_attention or spec.position_scheme == "relative" or spec.position_offset:
            raise UnsupportedModelError(
                f"{spec.architecture}: the encoder takes learned absolute or RoBERTa padding-aware positions "
                f"and no cross attention; this spec has position_scheme={spec.position_scheme!r}, "
                f"position_offset={spec.position_offset}, cross_attention={spec.cross_attention}")
        self.spec = spec
        alloc = dict(dtype=dtype, device=device)
        width = spec.embedding_size or spec.hidden_size
        if spec.modality == "vision":
            self.vision_embeddings = EETVisionEmbedding.empty(spec.image_size, spec.patch_size, spec.num_channels,
                                                              spec.hidden_size, patch_bias=spec.patch_bias, **alloc)
        else:
            positions = spec.max_positions if spec.position_scheme in ("learned", "padding") else None
            self.embeddings = EETBertEmbedding.empty(
                spec.vocab_size, width, positions, spec.type_vocab_size,
                norm=layer_norm(spec, width, **alloc) if spec.embedding_norm else None, scale=spec.embedding_scale,
                position_padding_idx=spec.pad_token_id if spec.position_scheme == "padding" else None, **alloc)
        self.pre_norm = layer_norm(spec, spec.hidden_size, **alloc) if spec.pre_norm else None
        self.embedding_projection = (Dense(width, spec.hidden_size, **alloc) if spec.embedding_projection else None)
        self.layers = nn.ModuleList(EncoderLayer(spec, **alloc) for _ in range(spec.layer_groups))
        self._schedule = spec.layer_schedule()
        self.final_norm = layer_norm(spec, spec.hidden_size, **alloc) if spec.final_norm else None
        self.pooler_norm = layer_norm(spec, spec.hidden_size, **alloc) if spec.pooler_norm else None
        self.pooler = (Dense(spec.hidden_size, spec.pooler_size or spec.hidden_size,
                             activation=spec.pooler_activation, **alloc) if spec.pooler else None)

    def encode(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
               pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        if self.spec.modality == "vision":
            h = self.vision_embeddings(pixel_values)
        else:
            h = self.embeddings(input_ids, token_type_ids, position_ids)
        if self.pre_norm is not None:
            h = self.pre_norm(h)
        if self.embedding_projection is not None:
            h = self.embedding_projection(h)
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            # once per forward, not once per layer: the attention kernel reads a bool mask faster than
            # the tokenizer's int64 one (H100, CLIP text at batch 128: 27.3 -> 24.2 us a layer)
            attention_mask = attention_mask != 0
        for index in self._schedule:
            h = self.layers[index](h, attention_mask)
        if self.final_norm is not None:
            h = self.final_norm(h)
        return h

    def pooled_token(self, h: torch.Tensor, input_ids: torch.Tensor | None) -> torch.Tensor:
        """[B, hidden]: the first token, or CLIP text's end-of-text token, found as the installed
        transformers does: with eos_token_id == 2 (configs from before transformers PR #24773) the
        largest id, else the first position holding eos_token_id."""
        if self.spec.pooling == "first":
            return h[:, 0]
        ids = input_ids.to(torch.int32)
        if self.spec.eos_token_id == 2:
            position = ids.argmax(dim=-1)
        else:
            position = (ids == self.spec.eos_token_id).to(torch.int32).argmax(dim=-1)
        return h[torch.arange(h.shape[0], device=h.device), position]

    def pool(self, h: torch.Tensor, input_ids: torch.Tensor | None = None) -> torch.Tensor | None:
        if self.pooler_norm is not None:
            return self.pooler_norm(h[:, 0])
        if self.pooler is not None:
            return self.pooler(self.pooled_token(h, input_ids))
        if self.spec.pooling == "eos":
            return self.pooled_token(h, input_ids)
        return None
