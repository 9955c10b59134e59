"""The models `eet_triton.load` returns: an Encoder with the heads of one HuggingFace class, called
with that class's inputs and returning its output class.

| class | HuggingFace classes |
| --- | --- |
| TextModel | BertModel, RobertaModel, AlbertModel, CLIPTextModel |
| SequenceClassificationModel | BertForSequenceClassification, AlbertForSequenceClassification |
| RobertaSequenceClassificationModel | RobertaForSequenceClassification |
| TokenClassificationModel | BertForTokenClassification, RobertaForTokenClassification, AlbertForTokenClassification |
| MaskedLMModel | BertForMaskedLM, RobertaForMaskedLM, AlbertForMaskedLM |
| TextProjectionModel | CLIPTextModelWithProjection |
| VisionModel | ViTModel, CLIPVisionModel |
| ImageClassificationModel | ViTForImageClassification |
| VisionProjectionModel | CLIPVisionModelWithProjection |
| DualEncoderModel | CLIPModel, VisionTextDualEncoderModel |

Heads use the kernels; the glue around them (picking a token, the CLIP normalisation and logit
scale) is torch on [batch, width] tensors. Nothing syncs with the host.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from eet_triton.kernels.layernorm import l2_normalize
from eet_triton.kernels.linear import linear
from eet_triton.models.base import EETModel, check_pixel_values, check_text_inputs
from eet_triton.models.encoder import Encoder
from eet_triton.models.layers import Dense, layer_norm
from eet_triton.models.spec import ModelSpec
from eet_triton.ops._base import empty
from eet_triton.runtime.streams import side_by_side


def hf_output_class(name: str) -> type:
    """A transformers output class by its path under `transformers.` (imported on first use, so
    importing eet_triton does not import transformers)."""
    module, _, cls = name.rpartition(".")
    return getattr(importlib.import_module(f"transformers.{module}"), cls)


_POOLING_OUTPUT = "modeling_outputs.BaseModelOutputWithPooling"


class TextModel(Encoder, EETModel):
    """A text encoder: forward(input_ids, attention_mask=None, token_type_ids=None, position_ids=None)
    -> last_hidden_state [B, L, hidden] and pooler_output [B, hidden] (None without a pooler) in
    `output_class` (BaseModelOutputWithPooling, or ...AndCrossAttentions for BERT and RoBERTa)."""

    output_class = _POOLING_OUTPUT

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device)
        if output_class is not None:
            self.output_class = output_class

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None):
        return self._run(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                         position_ids=position_ids)

    def _check(self, **inputs) -> dict:
        return check_text_inputs(self.spec.architecture, self.spec, self.device, **inputs)

    def _compute(self, input_ids, attention_mask, token_type_ids, position_ids) -> dict[str, torch.Tensor]:
        h = self.encode(input_ids, attention_mask, token_type_ids, position_ids)
        return self._heads(h, input_ids)

    def _heads(self, h: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"last_hidden_state": h}
        pooled = self.pool(h, input_ids)
        if pooled is not None:
            out["pooler_output"] = pooled
        return out

    def _output(self, flat: dict[str, torch.Tensor]):
        return hf_output_class(self.output_class)(**flat)

    def _example_inputs(self, batch: int, length: int | None) -> dict:
        return self._example_text(self.spec, batch, length)


class SequenceClassificationModel(TextModel):
    """BERT / ALBERT: logits = classifier(pooler_output) -> SequenceClassifierOutput(logits [B, labels])."""

    output_class = "modeling_outputs.SequenceClassifierOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        self.classifier = Dense(spec.pooler_size or spec.hidden_size, spec.num_labels, dtype=dtype, device=device)

    def _heads(self, h, input_ids):
        return {"logits": self.classifier(self.pool(h, input_ids))}


class RobertaClassificationHead(nn.Module):
    """RobertaClassificationHead: out_proj(tanh(dense(h[:, 0])))."""

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device):
        super().__init__()
        self.dense = Dense(spec.hidden_size, spec.hidden_size, activation="tanh", dtype=dtype, device=device)
        self.out_proj = Dense(spec.hidden_size, spec.num_labels, dtype=dtype, device=device)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dense(h[:, 0]))


class RobertaSequenceClassificationModel(TextModel):
    """RoBERTa: logits = classifier(last_hidden_state) on <s> -> SequenceClassifierOutput."""

    output_class = "modeling_outputs.SequenceClassifierOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        self.classifier = RobertaClassificationHead(spec, dtype=dtype, device=device)

    def _heads(self, h, input_ids):
        return {"logits": self.classifier(h)}


class TokenClassificationModel(TextModel):
    """logits = classifier(last_hidden_state) -> TokenClassifierOutput(logits [B, L, labels])."""

    output_class = "modeling_outputs.TokenClassifierOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        self.classifier = Dense(spec.hidden_size, spec.num_labels, dtype=dtype, device=device)

    def _heads(self, h, input_ids):
        return {"logits": self.classifier(h)}


class MaskedLMHead(nn.Module):
    """dense (+ activation) -> norm -> decoder: logits = norm(act(dense(h))) @ weight.T + bias.

    weight [vocab, embedding width] is the token embedding's own Parameter when the model ties
    them (held once), else a separate one; bias [vocab].
    """

    def __init__(self, spec: ModelSpec, word_weight: nn.Parameter | None, *, dtype: torch.dtype, device):
        super().__init__()
        width = spec.embedding_size or spec.hidden_size
        self.dense = Dense(spec.hidden_size, width, activation=spec.lm_activation or spec.activation, dtype=dtype,
                           device=device)
        self.norm = layer_norm(spec, width, dtype=dtype, device=device)
        self.weight = (word_weight if word_weight is not None else
                       nn.Parameter(empty(spec.vocab_size, width, dtype=dtype, device=device), requires_grad=False))
        self.bias = nn.Parameter(empty(spec.vocab_size, dtype=dtype, device=device), requires_grad=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return linear(self.norm(self.dense(h)), self.weight, self.bias)


class MaskedLMModel(TextModel):
    """logits = lm_head(last_hidden_state) -> MaskedLMOutput(logits [B, L, vocab])."""

    output_class = "modeling_outputs.MaskedLMOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        tied = self.embeddings.word_weight if spec.tie_word_embeddings else None
        self.lm_head = MaskedLMHead(spec, tied, dtype=dtype, device=device)

    def _heads(self, h, input_ids):
        return {"logits": self.lm_head(h)}


class TextProjectionModel(TextModel):
    """CLIPTextModelWithProjection: text_embeds = text_projection(pooler_output) -> CLIPTextModelOutput."""

    output_class = "models.clip.modeling_clip.CLIPTextModelOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        self.text_projection = Dense(spec.hidden_size, spec.projection_dim, bias=False, dtype=dtype, device=device)

    def _heads(self, h, input_ids):
        return {"text_embeds": self.text_projection(self.pool(h, input_ids)), "last_hidden_state": h}


class VisionModel(Encoder, EETModel):
    """A vision encoder: forward(pixel_values [B, C, H, W] float) -> last_hidden_state [B, 1 + nP,
    hidden] and pooler_output in BaseModelOutputWithPooling."""

    output_class = _POOLING_OUTPUT

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device)
        if output_class is not None:
            self.output_class = output_class

    def forward(self, pixel_values: torch.Tensor):
        return self._run(pixel_values=pixel_values)

    def _check(self, pixel_values) -> dict:
        return {"pixel_values": check_pixel_values(self.spec.architecture, self.spec, self.device, pixel_values)}

    def _compute(self, pixel_values) -> dict[str, torch.Tensor]:
        return self._heads(self.encode(pixel_values=pixel_values))

    def _heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"last_hidden_state": h}
        pooled = self.pool(h)
        if pooled is not None:
            out["pooler_output"] = pooled
        return out

    def _output(self, flat: dict[str, torch.Tensor]):
        return hf_output_class(self.output_class)(**flat)

    def _example_inputs(self, batch: int, length: int | None) -> dict:
        return self._example_image(self.spec, batch)


class ImageClassificationModel(VisionModel):
    """ViTForImageClassification: logits = classifier(last_hidden_state[:, 0]) -> ImageClassifierOutput."""

    output_class = "modeling_outputs.ImageClassifierOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        self.classifier = Dense(spec.hidden_size, spec.num_labels, dtype=dtype, device=device)

    def _heads(self, h):
        return {"logits": self.classifier(h[:, 0])}


class VisionProjectionModel(VisionModel):
    """CLIPVisionModelWithProjection: image_embeds = visual_projection(pooler_output) -> CLIPVisionModelOutput."""

    output_class = "models.clip.modeling_clip.CLIPVisionModelOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, output_class: str | None = None):
        super().__init__(spec, dtype=dtype, device=device, output_class=output_class)
        self.visual_projection = Dense(spec.hidden_size, spec.projection_dim, bias=False, dtype=dtype, device=device)

    def _heads(self, h):
        return {"image_embeds": self.visual_projection(self.pool(h)), "last_hidden_state": h}


class DualEncoderModel(nn.Module, EETModel):
    """CLIPModel and VisionTextDualEncoderModel: a text tower and a vision tower (any mapped ones),
    linear projections without bias, and a learned temperature.

    forward(input_ids [Bt, L], pixel_values [Bi, C, H, W], attention_mask=None, position_ids=None,
    token_type_ids=None) -> CLIPOutput: logits_per_text [Bt, Bi] = scale * unit(text_embeds) @
    unit(image_embeds).T with scale = exp(logit_scale), logits_per_image its transpose, the unit
    embeddings, and each tower's output (tower_outputs: their classes, as the towers' own models
    return them). Bt and Bi need not match.
    projected_pooler: the text/vision outputs' pooler_output is the projected embedding (CLIPModel
    in transformers 5) rather than the tower's own (VisionTextDualEncoderModel).
    """

    output_class = "models.clip.modeling_clip.CLIPOutput"

    def __init__(self, spec: ModelSpec, *, dtype: torch.dtype, device, projected_pooler: bool = False,
                 tower_outputs: tuple[str, str] = (_POOLING_OUTPUT, _POOLING_OUTPUT)):
        super().__init__()
        self.spec = spec
        self.text_model = Encoder(spec.text, dtype=dtype, device=device)
        self.vision_model = Encoder(spec.vision, dtype=dtype, device=device)
        self.text_projection = Dense(spec.text.hidden_size, spec.projection_dim, bias=False, dtype=dtype,
                                     device=device)
        self.visual_projection = Dense(spec.vision.hidden_size, spec.projection_dim, bias=False, dtype=dtype,
                                       device=device)
        self.logit_scale = nn.Parameter(torch.empty((), dtype=dtype, device=device), requires_grad=False)
        self.projected_pooler = projected_pooler
        self.tower_outputs = tower_outputs

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None):
        return self._run(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask,
                         position_ids=position_ids, token_type_ids=token_type_ids)

    def _check(self, input_ids, pixel_values, attention_mask=None, position_ids=None, token_type_ids=None) -> dict:
        owner = self.spec.architecture
        text = check_text_inputs(owner, self.spec.text, self.device, input_ids, attention_mask, token_type_ids,
                                 position_ids)
        return {**text, "pixel_values": check_pixel_values(owner, self.spec.vision, self.device, pixel_values)}

    def _compute(self, input_ids, pixel_values, attention_mask, position_ids, token_type_ids):
        def text_tower():
            text = self.text_model.encode(input_ids, attention_mask, token_type_ids, position_ids)
            pooled = self.text_model.pool(text, input_ids)
            return text, pooled, self.text_projection(pooled)

        def vision_tower():
            image = self.vision_model.encode(pixel_values=pixel_values)
            pooled = self.vision_model.pool(image)
            return image, pooled, self.visual_projection(pooled)

        # the towers share nothing until the head: run them side by side (CLIP b32 forward: NOTES, models run 5)
        (text, text_pooled, text_projected), (image, image_pooled, image_projected) = side_by_side(
            text_tower, vision_tower, pixel_values.device)
        # one kernel each, the norm in fp32 (fp16 squares of wide vectors overflow)
        text_embeds, image_embeds = l2_normalize(text_projected), l2_normalize(image_projected)
        logits_per_text = linear(text_embeds, image_embeds) * self.logit_scale.exp()
        return {
            "logits_per_image": logits_per_text.t(), "logits_per_text": logits_per_text,
            "text_embeds": text_embeds, "image_embeds": image_embeds,
            "text_model_output.last_hidden_state": text,
            "text_model_output.pooler_output": text_projected if self.projected_pooler else text_pooled,
            "vision_model_output.last_hidden_state": image,
            "vision_model_output.pooler_output": image_projected if self.projected_pooler else image_pooled,
        }

    def _output(self, flat: dict[str, torch.Tensor]):
        fields = {k: v for k, v in flat.items() if "." not in k}
        for name, tower in zip(("text_model_output", "vision_model_output"), self.tower_outputs):
            fields[name] = hf_output_class(tower)(last_hidden_state=flat[f"{name}.last_hidden_state"],
                                                  pooler_output=flat[f"{name}.pooler_output"])
        return hf_output_class(self.output_class)(**fields)

    def _example_inputs(self, batch: int, length: int | None) -> dict:
        return {**self._example_text(self.spec.text, batch, length), **self._example_image(self.spec.vision, batch)}
