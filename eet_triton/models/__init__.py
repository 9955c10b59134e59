"""Generic architectures assembled from the ops and driven by one ModelSpec: an encoder stack
(BERT, RoBERTa, ALBERT, ViT, CLIP text and vision towers) with the heads of each supported
HuggingFace class, and a dual encoder (CLIP, VisionTextDualEncoder). `eet_triton.load` builds
them from a checkpoint; `ARCHITECTURES` lists what it can build."""

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
from eet_triton.models.encoder import Encoder
from eet_triton.models.registry import ARCHITECTURES, Architecture, architecture_of, build_model, build_spec
from eet_triton.models.spec import ModelSpec, spec_from_map

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "DualEncoderModel",
    "Encoder",
    "ImageClassificationModel",
    "MaskedLMModel",
    "ModelSpec",
    "RobertaSequenceClassificationModel",
    "SequenceClassificationModel",
    "TextModel",
    "TextProjectionModel",
    "TokenClassificationModel",
    "VisionModel",
    "VisionProjectionModel",
    "architecture_of",
    "build_model",
    "build_spec",
    "spec_from_map",
]
