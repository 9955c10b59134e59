"""Which model class reproduces which HuggingFace architecture, and building its skeleton.

A family's YAML map says where each tensor lives and how config.json reads into a ModelSpec; this
table adds what the class name alone decides: which heads exist (BertModel has a pooler,
BertForMaskedLM does not) and the output class. A new family of an existing shape needs only its
map and rows here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import torch
from torch import nn

from eet_triton.errors import UnsupportedModelError
from eet_triton.models.architectures import (
    DualEncoderModel,
    ImageClassificationModel,
    MaskedLMModel,
    RobertaSequenceClassificationModel,
    SequenceClassificationModel,
    TextModel,
    TextProjectionModel,
    TokenClassificationModel,
    VisionModel,
    VisionProjectionModel,
)
from eet_triton.models.spec import ModelSpec, spec_from_map


@dataclasses.dataclass(frozen=True)
class Architecture:
    """model: the class to build; spec: ModelSpec fields the class fixes (its heads); kwargs: constructor
    arguments; towers: a dual encoder's default (text, vision) tower architectures, used when its
    map spells the towers out instead of taking them from the sub-configs' maps."""

    model: type
    spec: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    towers: tuple[str, str] | None = None


_WITH_CROSS = dict(output_class="modeling_outputs.BaseModelOutputWithPoolingAndCrossAttentions")
_POOLER = dict(pooler=True)

ARCHITECTURES: dict[str, Architecture] = {
    "BertModel": Architecture(TextModel, _POOLER, _WITH_CROSS),
    "BertForSequenceClassification": Architecture(SequenceClassificationModel, _POOLER),
    "BertForTokenClassification": Architecture(TokenClassificationModel),
    "BertForMaskedLM": Architecture(MaskedLMModel),
    "RobertaModel": Architecture(TextModel, _POOLER, _WITH_CROSS),
    "RobertaForSequenceClassification": Architecture(RobertaSequenceClassificationModel),
    "RobertaForTokenClassification": Architecture(TokenClassificationModel),
    "RobertaForMaskedLM": Architecture(MaskedLMModel),
    "AlbertModel": Architecture(TextModel, _POOLER),
    "AlbertForSequenceClassification": Architecture(SequenceClassificationModel, _POOLER),
    "AlbertForTokenClassification": Architecture(TokenClassificationModel),
    "AlbertForMaskedLM": Architecture(MaskedLMModel),
    "ViTModel": Architecture(VisionModel, _POOLER),
    "ViTForImageClassification": Architecture(ImageClassificationModel),
    "CLIPTextModel": Architecture(TextModel),
    "CLIPTextModelWithProjection": Architecture(TextProjectionModel),
    "CLIPVisionModel": Architecture(VisionModel),
    "CLIPVisionModelWithProjection": Architecture(VisionProjectionModel),
    "CLIPModel": Architecture(DualEncoderModel, kwargs=dict(projected_pooler=True),
                              towers=("CLIPTextModel", "CLIPVisionModel")),
    "VisionTextDualEncoderModel": Architecture(DualEncoderModel),
}
"""HuggingFace class name -> how eet_triton builds it."""


_TOWERS = (TextModel, VisionModel)


def architecture_of(structure_map, config: Mapping) -> str:
    """The class to build: config.json's first architecture the map and this table both know;
    without `architectures` in the config, the map's first (its base model)."""
    named = list(config.get("architectures") or [])
    known = [a for a in named if a in ARCHITECTURES and (not structure_map.architectures
                                                         or a in structure_map.architectures)]
    if known:
        return known[0]
    if named:
        raise UnsupportedModelError(
            f"config.json names the architecture(s) {', '.join(named)}, which eet_triton cannot build; supported: "
            f"{', '.join(ARCHITECTURES)}. A new head needs a model class (eet_triton/models); a new family of a "
            "known shape needs a YAML map (docs/MAPS.md) and a row in eet_triton/models/registry.py")
    candidates = [a for a in structure_map.architectures if a in ARCHITECTURES]
    if not candidates:
        raise UnsupportedModelError(
            f"The {structure_map.family!r} map ({structure_map.origin}) lists the architectures "
            f"{', '.join(structure_map.architectures) or 'none'}, none of which eet_triton can build; supported: "
            f"{', '.join(ARCHITECTURES)}")
    return candidates[0]


def build_spec(structure_map, config: Mapping, *, towers: Mapping[str, str] | None = None,
               architecture: str | None = None) -> ModelSpec:
    """The ModelSpec of the checkpoint. towers: part name -> tower architecture, for dual encoders
    whose parts were composed from the sub-configs' maps."""
    architecture = architecture or architecture_of(structure_map, config)
    entry = ARCHITECTURES[architecture]
    if entry.model is not DualEncoderModel:
        return spec_from_map(structure_map, config, architecture=architecture, **entry.spec)
    missing = [p for p in ("text", "vision") if p not in structure_map.parts]
    if missing:
        raise UnsupportedModelError(f"{architecture}: the map {structure_map.origin} needs parts `text` and `vision` "
                                    f"(docs/MAPS.md); it lacks {', '.join(missing)}")
    defaults = dict(zip(("text", "vision"), entry.towers or (None, None)))
    specs = {}
    for part in ("text", "vision"):
        tower = (towers or {}).get(part) or defaults[part]
        if tower not in ARCHITECTURES or ARCHITECTURES[tower].model not in _TOWERS:
            supported = ", ".join(a for a, e in ARCHITECTURES.items() if e.model in _TOWERS)
            raise UnsupportedModelError(f"{architecture}: its {part} tower {tower!r} is not a supported base model; "
                                        f"supported towers: {supported}")
        specs[part] = spec_from_map(structure_map, config, architecture=tower, part=part,
                                    **ARCHITECTURES[tower].spec)
    values = structure_map.resolve_spec(config)
    return ModelSpec(architecture=architecture, family=structure_map.family, text=specs["text"],
                     vision=specs["vision"], projection_dim=values.get("projection_dim"))


def output_class_of(architecture: str) -> str:
    """The transformers output class (path under `transformers.`) the architecture returns."""
    entry = ARCHITECTURES[architecture]
    return entry.kwargs.get("output_class", entry.model.output_class)


def build_model(spec: ModelSpec, *, dtype: torch.dtype, device) -> nn.Module:
    """The model skeleton of `spec` on `device`: every parameter allocated, none filled."""
    entry = ARCHITECTURES[spec.architecture]
    kwargs = dict(entry.kwargs)
    if entry.model is DualEncoderModel:
        kwargs["tower_outputs"] = (output_class_of(spec.text.architecture), output_class_of(spec.vision.architecture))
    return entry.model(spec, dtype=dtype, device=device, **kwargs)
