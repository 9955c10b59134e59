"""ModelSpec: everything the generic architectures need to know about a checkpoint, in one dataclass.

A spec is built from config.json through the structure map's `spec:` section (`spec_from_map`):
every field the map names is read from the config there; the architecture fixes its heads
(models/registry.py); the presence of optional modules (an embedding LayerNorm, CLIP vision's
pre-norm, a final norm...) is read off the map: a module the map fills outside `heads:` exists.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from eet_triton.errors import MappingError, UnsupportedModelError

NORM_POSITIONS = ("pre", "post")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_SCHEMES = ("learned", "padding", "none", "relative")
POOLINGS = ("first", "eos")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Sizes, behaviour and structure of one transformer stack (a text or vision tower), or of a
    dual encoder whose `text` and `vision` fields hold its towers' specs.

    Field names follow the map schema's `spec:` fields (docs/MAPS.md) where it has them.
    """

    architecture: str = ""
    """HuggingFace class the model reproduces (BertModel, CLIPVisionModel, ...)."""
    family: str = ""
    modality: str = "text"
    """text (token ids in) or vision (pixels in)."""

    hidden_size: int = 0
    num_heads: int = 0
    head_dim: int | None = None
    """None: hidden_size // num_heads."""
    num_layers: int = 0
    """Layers the forward runs."""
    num_layer_groups: int | None = None
    """Distinct layer modules when layers share weights (ALBERT's num_hidden_groups); None: no sharing."""
    inner_group_num: int = 1
    ffn_size: int = 0
    vocab_size: int | None = None
    max_positions: int | None = None
    type_vocab_size: int = 0
    embedding_size: int | None = None
    """Embedding width when it differs from hidden_size (ALBERT); None: hidden_size."""
    image_size: int | tuple[int, int] | None = None
    patch_size: int | None = None
    num_channels: int = 3
    projection_dim: int | None = None
    num_labels: int = 2

    activation: str | None = "gelu"
    gated_ffn: bool = False
    norm_kind: str = "layernorm"
    norm_eps: float = 1e-12
    norm_position: str = "post"
    qkv_bias: bool = True
    out_bias: bool = True
    ffn_bias: bool = True
    patch_bias: bool = True
    causal: bool = False
    cross_attention: bool = False
    attention_scale: float | None = None
    position_scheme: str = "learned"
    """learned: positions 0..L-1; padding: RoBERTa's pad_token_id + cumsum of the non-padding tokens."""
    position_offset: int = 0
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    relative_buckets: int | None = None
    relative_max_distance: int = 128
    embedding_scale: float = 1.0
    tie_word_embeddings: bool = True

    embedding_norm: bool = False
    """LayerNorm inside the embedding (BERT), not (CLIP text)."""
    pre_norm: bool = False
    """A norm between the embeddings and the first layer (CLIP vision's pre_layrnorm)."""
    embedding_projection: bool = False
    """A linear map embedding_size -> hidden_size after the embeddings (ALBERT)."""
    final_norm: bool = False
    """A norm over the whole last hidden state (ViT, CLIP text)."""
    pooler_norm: bool = False
    """A norm of the pooled first token only (CLIP vision's post_layernorm)."""
    pooler: bool = False
    """A dense + activation pooler on the first token (BERT, ALBERT, ViT)."""
    pooler_activation: str | None = "tanh"
    pooler_size: int | None = None
    """Pooler output width (ViT's pooler_output_size); None: hidden_size."""
    pooling: str = "first"
    """Which token is pooled: first ([CLS], <s>) or eos (CLIP text)."""
    lm_activation: str | None = None
    """Activation of the masked-LM transform; None: `activation` (RoBERTa's head always uses gelu)."""

    text: ModelSpec | None = None
    vision: ModelSpec | None = None

    def __post_init__(self):
        if self.text is not None or self.vision is not None:
            return
        where = f"ModelSpec({self.architecture or self.family or 'model'})"
        if self.hidden_size <= 0 or self.num_heads <= 0 or self.num_layers <= 0 or self.ffn_size <= 0:
            raise MappingError(f"{where}: hidden_size, num_heads, num_layers and ffn_size must be positive, got "
                               f"{self.hidden_size}, {self.num_heads}, {self.num_layers}, {self.ffn_size}; "
                               "check the map's spec: section against config.json")
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise MappingError(f"{where}: hidden_size {self.hidden_size} is not a multiple of num_heads "
                                   f"{self.num_heads}; set head_dim in the map's spec")
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        for name, value, allowed in (("norm_position", self.norm_position, NORM_POSITIONS),
                                     ("norm_kind", self.norm_kind, NORM_KINDS),
                                     ("position_scheme", self.position_scheme, POSITION_SCHEMES),
                                     ("pooling", self.pooling, POOLINGS),
                                     ("modality", self.modality, ("text", "vision"))):
            if value not in allowed:
                raise MappingError(f"{where}: {name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.modality == "text" and not self.vocab_size:
            raise MappingError(f"{where}: a text model needs vocab_size in the map's spec")
        if self.modality == "vision" and not (self.image_size and self.patch_size):
            raise MappingError(f"{where}: a vision model needs image_size and patch_size in the map's spec")

    @property
    def layer_groups(self) -> int:
        """Distinct layer modules the model holds."""
        return self.num_layer_groups or self.num_layers

    def layer_schedule(self) -> tuple[int, ...]:
        """The layer module each of the num_layers steps runs (HF ALBERT's group_idx formula)."""
        groups = self.layer_groups
        return tuple(int(i / (self.num_layers / groups)) for i in range(self.num_layers))

    @property
    def max_sequence(self) -> int | None:
        """Longest token sequence the position table covers (None: no limit from positions)."""
        if self.modality != "text" or self.position_scheme in ("none", "relative") or not self.max_positions:
            return None
        if self.position_scheme == "padding":
            return self.max_positions - (self.pad_token_id or 0) - 1
        return self.max_positions - self.position_offset


FIELDS = frozenset(f.name for f in dataclasses.fields(ModelSpec))

# optional modules the model holds exactly when the map fills them (non-head targets)
_MODULE_FLAGS = {
    "embedding_norm": "embeddings.norm.weight",
    "pre_norm": "pre_norm.weight",
    "embedding_projection": "embedding_projection.weight",
    "final_norm": "final_norm.weight",
    "pooler_norm": "pooler_norm.weight",
}

# fields whose None means something (a default of another field, or "absent"); a None read from
# config.json for any other field leaves the ModelSpec default
_NULLABLE = {"head_dim", "num_layer_groups", "embedding_size", "pad_token_id", "eos_token_id", "attention_scale",
             "activation", "pooler_activation", "pooler_size", "projection_dim", "relative_buckets",
             "lm_activation", "max_positions", "image_size", "patch_size", "vocab_size"}


def spec_from_map(structure_map, config: Mapping, *, architecture: str, part: str | None = None,
                  **overrides) -> ModelSpec:
    """The ModelSpec of `architecture` from config.json (a dict, defaults filled in) under a map.

    part: one of the map's parts (a tower of CLIP); its spec fields are read from the part's
    sub-config. overrides: fields the architecture fixes (see models/registry.py).
    """
    values = dict(structure_map.resolve_spec(config, part))
    prefix = ""
    if part is not None:
        target = structure_map.parts[part].target
        prefix = f"{target}." if target else ""
    unknown = set(values) - FIELDS
    if unknown:
        raise MappingError(f"{structure_map.origin}: spec fields {', '.join(sorted(unknown))} are not ModelSpec "
                           f"fields; ModelSpec has {', '.join(sorted(FIELDS))}")
    targets = {r.target[len(prefix):] for r in structure_map.rules
               if not r.head and r.part == part and r.target.startswith(prefix)}
    for name, target in _MODULE_FLAGS.items():
        values.setdefault(name, target in targets)
    if "vision_embeddings.patch_weight" in targets:
        values.setdefault("modality", "vision")
    values = {k: v for k, v in values.items() if v is not None or k in _NULLABLE}
    values.update(overrides)
    values.update(family=structure_map.family, architecture=architecture)
    if values.get("num_layer_groups") == values.get("num_layers"):
        values["num_layer_groups"] = None
    if values.get("inner_group_num", 1) != 1:
        raise UnsupportedModelError(f"{architecture}: inner_group_num={values['inner_group_num']} (several layers "
                                    "per ALBERT layer group) is not supported; only 1, as in every released ALBERT")
    try:
        return ModelSpec(**values)
    except TypeError as exc:
        raise MappingError(f"{structure_map.origin}: cannot build a ModelSpec for {architecture}: {exc}") from exc
