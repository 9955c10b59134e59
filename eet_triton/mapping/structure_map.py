"""YAML structure maps: which checkpoint tensor fills which model parameter, and how.

A map is data (docs/MAPS.md is the user-facing schema). `load_map` parses one into a
`StructureMap`: its `spec:` section (ModelSpec fields read from config.json) and a flat list of
`Rule`s, each filling one target tensor of the model from one or more checkpoint tensors through a
named transform. The compact per-op role tables (q/k/v/out/norm, up/gate/down, tokens/positions...)
expand into the same rules as the raw `params:` form, through the one table `ROLES` below.
`StructureMap.routes(config)` expands the `{i}` layer templates with the layer counts of a config.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from eet_triton.errors import MappingError, UnsupportedModelError

MAPS_DIR = Path(__file__).parent

SPEC_FIELDS: dict[str, str] = {
    # sizes
    "hidden_size": "width of the residual stream",
    "num_heads": "attention heads",
    "head_dim": "width of one head (default hidden_size // num_heads; T5: d_kv)",
    "num_layers": "transformer layers the forward runs (the default range of {i})",
    "num_layer_groups": "distinct layer modules when layers share weights (ALBERT: num_hidden_groups)",
    "ffn_size": "inner width of the feed-forward block",
    "vocab_size": "rows of the token embedding",
    "max_positions": "rows of the learned position table",
    "type_vocab_size": "rows of the token-type table (0: none)",
    "embedding_size": "embedding width when it differs from hidden_size (ALBERT)",
    "image_size": "input image side (vision)",
    "patch_size": "patch side (vision)",
    "num_channels": "image channels (vision)",
    "projection_dim": "width of a projection head (CLIP)",
    "num_labels": "classifier outputs (use {len: id2label})",
    "inner_group_num": "layers inside one ALBERT layer group",
    "modality": "text (token ids in) or vision (pixels in)",
    # behaviour
    "activation": "FFN activation, a HF name (gelu, gelu_new, quick_gelu, relu, silu, ...)",
    "gated_ffn": "act(up(x)) * gate(x) (T5 v1.1 gated-gelu)",
    "norm_kind": "layernorm or rmsnorm",
    "norm_eps": "epsilon of every norm",
    "norm_position": "pre (GPT-2, CLIP, T5) or post (BERT, BART)",
    "qkv_bias": "q/k/v projections have biases",
    "out_bias": "attention output projection has a bias",
    "ffn_bias": "FFN projections have biases",
    "patch_bias": "the vision patch projection has a bias",
    "causal": "self attention is causal (decoders)",
    "cross_attention": "layers attend to an encoder's output (decoders of encoder-decoders)",
    "attention_scale": "softmax scale (default head_dim ** -0.5; T5: 1.0)",
    "position_scheme": "learned, relative (T5 buckets) or none",
    "position_offset": "first row of the position table in use (RoBERTa, BART: 2)",
    "pad_token_id": "padding token id",
    "eos_token_id": "end-of-sequence token id (CLIP text pools at it)",
    "relative_buckets": "T5 relative-position buckets",
    "relative_max_distance": "T5 relative-position max distance",
    "embedding_scale": "multiplier of token embeddings (BART scale_embedding: sqrt(hidden_size))",
    "tie_word_embeddings": "the LM head shares the token embedding",
    # heads
    "pooling": "which token is pooled: first ([CLS]) or eos (CLIP text)",
    "pooler_activation": "activation of the pooler dense (tanh)",
    "pooler_size": "pooler output width (ViT pooler_output_size; default hidden_size)",
    "lm_activation": "activation of the masked-LM transform (default: activation)",
}
"""ModelSpec fields a map's `spec:` may set. A field the models need is added here and in MAPS.md."""

TRANSFORMS = ("transpose", "reshape")
"""transpose: a 2-D source stored [in, out] (GPT-2 Conv1D) fills a [out, in] target; 1-D sources
pass unchanged. reshape: a source of the same numel fills a target of another shape (ViT's
cls_token [1, 1, E] into class_embedding [E]). Every copy casts to the target's dtype."""


@dataclass(frozen=True)
class Role:
    """What one role of an op fills: `weight` from the module's .weight (or from the tensor itself,
    when `tensor`), `bias` from its .bias. Roles listed in `fused` are concatenated, in that order,
    along dim 0 of the same targets."""

    weight: str
    bias: str | None = None
    fused: tuple[str, ...] = ()
    tensor: bool = False


_QKV, _KV = ("q", "k", "v"), ("k", "v")
_NORM = Role("norm.weight", "norm.bias")

ROLES: dict[str, dict[str, Role]] = {
    "attention": {  # EETSelfAttention, EETSelfMaskedAttention
        "q": Role("qkv_weight", "qkv_bias", fused=_QKV),
        "k": Role("qkv_weight", "qkv_bias", fused=_QKV),
        "v": Role("qkv_weight", "qkv_bias", fused=_QKV),
        "qkv": Role("qkv_weight", "qkv_bias"),
        "out": Role("out_weight", "out_bias"),
        "norm": _NORM,
        "relative_bias": Role("t5_table"),
    },
    "cross_attention": {  # EETCrossAttention
        "q": Role("q_weight", "q_bias"),
        "k": Role("kv_weight", "kv_bias", fused=_KV),
        "v": Role("kv_weight", "kv_bias", fused=_KV),
        "kv": Role("kv_weight", "kv_bias"),
        "out": Role("out_weight", "out_bias"),
        "norm": _NORM,
        "relative_bias": Role("t5_table"),
    },
    "ffn": {  # EETFeedforward: down(act(up(x)) [* gate(x)])
        "up": Role("up_weight", "up_bias"),
        "gate": Role("gate_weight", "gate_bias"),
        "down": Role("down_weight", "down_bias"),
        "norm": _NORM,
    },
    "embeddings": {  # EETBertEmbedding
        "tokens": Role("word_weight"),
        "positions": Role("position_weight"),
        "token_types": Role("type_weight"),
        "norm": _NORM,
    },
    "vision_embeddings": {  # EETVisionEmbedding
        "patch": Role("patch_weight", "patch_bias"),
        "class": Role("class_embedding", tensor=True),
        "positions": Role("position_weight"),
    },
}
"""Per op: role name -> the op attributes it fills. The op sections of a map use these names."""

_PART_OPS = ("embeddings", "vision_embeddings")
_LAYER_OPS = ("attention", "cross_attention", "ffn")
_SECTIONS = (*_PART_OPS, "layers", "modules", "heads", "params")
_TOP_KEYS = {"family", "model_types", "architectures", "prefixes", "ignore", "spec", "parts", *_SECTIONS}
_PART_KEYS = {"target", "source", "config", "spec", *_SECTIONS}
_LAYER_KEYS = {"path", "target", "count", "conv1d", "modules", "params", *_LAYER_OPS}
_PLACEHOLDER = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class Source:
    """One checkpoint tensor (a key template, `{i}` for the layer) and the transform it goes through.
    `alternatives`: other keys for the same tensor in other checkpoints of the family; the first of
    `keys` the checkpoint holds is read (T5 `wi` or v1.1's `wi_0`)."""

    key: str
    transform: str | None = None
    alternatives: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.alternatives)

    def at(self, i: int) -> Source:
        """This source for layer i."""
        return Source(self.key.replace("{i}", str(i)), self.transform,
                      tuple(k.replace("{i}", str(i)) for k in self.alternatives))


@dataclass(frozen=True)
class Rule:
    """One target tensor of the model, filled from `sources` concatenated along dim 0.

    target: dotted path in the model, may hold `{i}`; part: the part whose spec gives the `{i}`
    range, read from spec field `count` (None: no `{i}`); head: the target's module may be absent
    from the model (a head this architecture lacks): its keys are then skipped, not errors;
    entry: where in the map the rule came from, for messages.
    """

    target: str
    sources: tuple[Source, ...]
    part: str | None = None
    count: str | None = None
    head: bool = False
    entry: str = ""


@dataclass(frozen=True)
class Route:
    """A rule with `{i}` filled in: `target` <- `sources` (checkpoint names before prefix matching)."""

    target: str
    sources: tuple[Source, ...]
    head: bool
    entry: str


@dataclass(frozen=True)
class SpecValue:
    """Where a ModelSpec field comes from: a config attribute (dotted for nested dicts), optionally
    with a default when absent, or its length (`len`), or a literal `value`."""

    attr: str | None = None
    value: Any = None
    default: Any = None
    has_default: bool = False
    length: bool = False


@dataclass(frozen=True)
class Part:
    """A sub-model (CLIP's text and vision towers, T5's encoder and decoder): its targets live under
    `target.` in the model, its sources under `source.` in the checkpoint, and its spec fields are
    read from config.json's `config` sub-object, over the top-level spec."""

    name: str
    target: str
    source: str
    config: str | None
    spec: Mapping[str, SpecValue]


@dataclass(frozen=True)
class StructureMap:
    """A parsed structure map. Build with `load_map`; see docs/MAPS.md."""

    family: str
    origin: str
    model_types: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    spec: Mapping[str, SpecValue] = field(default_factory=dict)
    parts: Mapping[str, Part] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def supports(self, config: Mapping) -> bool:
        """The config's model_type is one of the map's, and one of its architectures (if it names any) too."""
        config = _as_dict(config)
        if self.model_types and config.get("model_type") not in self.model_types:
            return False
        archs = config.get("architectures") or []
        return not (archs and self.architectures) or any(a in self.architectures for a in archs)

    def resolve_spec(self, config, part: str | None = None) -> dict[str, Any]:
        """ModelSpec fields from a config (a dict of config.json, or a transformers PretrainedConfig).

        part: a part's fields (over the top-level ones); None: the top-level fields.
        """
        config = _as_dict(config)
        values = {name: self._resolve(name, src, config, config, "spec") for name, src in self.spec.items()}
        if part is None:
            return values
        if part not in self.parts:
            raise MappingError(f"{self.origin}: no part {part!r}; the map has {', '.join(self.parts) or 'none'}.")
        p = self.parts[part]
        sub = config if p.config is None else lookup_config(config, p.config)
        if not isinstance(sub, Mapping):
            what = "nothing" if sub is _ABSENT else f"a {type(sub).__name__}"
            raise MappingError(f"{self.origin}: parts.{part}.config is {p.config!r}, but config.json has {what} "
                               f"there, not an object of attributes: this map does not fit this checkpoint's config.")
        for name, src in p.spec.items():
            values[name] = self._resolve(name, src, sub, config, f"parts.{part}.spec")
        return values

    def _resolve(self, name: str, src: SpecValue, config: Mapping, root: Mapping, where: str) -> Any:
        if src.attr is None:
            return src.value
        found = lookup_config(config, src.attr)
        if found is _ABSENT:
            if src.has_default:
                return src.default
            near = difflib.get_close_matches(src.attr.rsplit(".", 1)[-1], list(config), n=3)
            raise MappingError(
                f"{self.origin}: {where}.{name} reads config attribute {src.attr!r}, which config.json "
                f"(model_type {root.get('model_type')!r}) does not have"
                f"{'; close: ' + ', '.join(near) if near else ''}. Write {{attr: {src.attr}, default: ...}} "
                f"for an optional one, or {{value: ...}} for a literal.")
        if src.length:
            return len(found)
        return found

    def routes(self, config) -> list[Route]:
        """Every rule with `{i}` expanded over its layer count from the config."""
        config = _as_dict(config)
        specs: dict[str | None, dict] = {}
        out = []
        for rule in self.rules:
            if rule.count is None:
                out.append(Route(rule.target, rule.sources, rule.head, rule.entry))
                continue
            if rule.part not in specs:
                specs[rule.part] = self.resolve_spec(config, rule.part)
            n = specs[rule.part][rule.count]
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise MappingError(f"{self.origin}: {rule.entry}: the layer count {rule.count} = {n!r} from "
                                   f"config.json is not a count.")
            for i in range(n):
                out.append(Route(rule.target.replace("{i}", str(i)),
                                 tuple(s.at(i) for s in rule.sources),
                                 rule.head, rule.entry))
        return out

    def ignored(self, name: str) -> bool:
        """The key (before or after prefix stripping) matches an `ignore` glob."""
        return any(_glob(p).fullmatch(name) for p in self.ignore)


_ABSENT = object()


def lookup_config(config: Mapping, dotted: str):
    """config["a"]["b"] for dotted "a.b"; `_ABSENT` (not a Mapping, not None) when a step is missing."""
    node: Any = config
    for name in dotted.split("."):
        if not isinstance(node, Mapping) or name not in node:
            return _ABSENT
        node = node[name]
    return node


def _as_dict(config) -> dict:
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise TypeError(f"config must be a dict of config.json or a PretrainedConfig, got {type(config).__name__}")


def _glob(pattern: str) -> re.Pattern:
    """`*` matches within one dotted name component, `**` across components."""
    out = []
    for piece in re.split(r"(\*\*|\*|\?)", pattern):
        out.append({"**": ".*", "*": r"[^.]*", "?": r"[^.]"}.get(piece, re.escape(piece)))
    return re.compile("".join(out))


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _rooted(prefix: str, path: str) -> str:
    """A section's path under its part's or layer's prefix; a leading "/" starts at the checkpoint root."""
    return path[1:] if path.startswith("/") else _join(prefix, path)


def _under(prefix: str, source: Source | None) -> Source | None:
    if source is None:
        return None
    return Source(_rooted(prefix, source.key), source.transform,
                  tuple(_rooted(prefix, k) for k in source.alternatives))


class _Parser:
    """Turns the YAML data of one map into a StructureMap, failing with the file and the entry."""

    def __init__(self, origin: str):
        self.origin = origin
        self.rules: list[Rule] = []
        self.targets: dict[str, str] = {}
        self.spec_fields: dict[str | None, set[str]] = {}

    def fail(self, entry: str, what: str):
        raise MappingError(f"{self.origin}: {entry}: {what}. See docs/MAPS.md for the map schema.")

    def mapping(self, value, entry: str, allowed: set[str] | None = None) -> dict:
        if not isinstance(value, Mapping):
            self.fail(entry, f"expected a mapping, got {type(value).__name__} {value!r}")
        for key in value:
            if not isinstance(key, str):
                self.fail(entry, f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                self.fail(f"{entry}.{key}" if entry else key,
                          f"unknown entry {key!r}{f' (did you mean {near[0]!r}?)' if near else ''}; "
                          f"allowed: {', '.join(sorted(allowed))}")
        return dict(value)

    def strings(self, value, entry: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(entry, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def parse(self, data) -> StructureMap:
        data = self.mapping(data, "top level", _TOP_KEYS)
        family = data.get("family")
        if not isinstance(family, str) or not family:
            self.fail("family", f"every map needs a family name (a string), got {family!r}")
        spec = self.spec(data.get("spec", {}), "spec")
        self.spec_fields[None] = set(spec)
        parts = {}
        for name, body in self.mapping(data.get("parts", {}), "parts").items():
            body = self.mapping(body, f"parts.{name}", _PART_KEYS)
            part = Part(name=name, target=self.path(body.get("target", name), f"parts.{name}.target"),
                        source=self.path(body.get("source", ""), f"parts.{name}.source"),
                        config=self.path(body.get("config", ""), f"parts.{name}.config") or None,
                        spec=self.spec(body.get("spec", {}), f"parts.{name}.spec"))
            self.spec_fields[name] = set(spec) | set(part.spec)
            parts[name] = part
            self.sections(body, part, f"parts.{name}")
        self.sections(data, None, "")
        return StructureMap(
            family=family, origin=self.origin,
            model_types=self.strings(data.get("model_types", []), "model_types"),
            architectures=self.strings(data.get("architectures", []), "architectures"),
            prefixes=self.strings(data.get("prefixes", []), "prefixes"),
            ignore=self.strings(data.get("ignore", []), "ignore"),
            spec=spec, parts=parts, rules=tuple(self.rules))

    def path(self, value, entry: str) -> str:
        if not isinstance(value, str):
            self.fail(entry, f"expected a dotted path (a string), got {value!r}")
        return value.strip(".")

    def spec(self, value, entry: str) -> dict[str, SpecValue]:
        out = {}
        for name, src in self.mapping(value, entry).items():
            where = f"{entry}.{name}"
            if name not in SPEC_FIELDS:
                near = difflib.get_close_matches(name, list(SPEC_FIELDS), n=1)
                self.fail(where, f"unknown spec field {name!r}{f' (did you mean {near[0]!r}?)' if near else ''}; "
                                 f"ModelSpec fields: {', '.join(SPEC_FIELDS)}")
            if isinstance(src, str):
                out[name] = SpecValue(attr=src)
            elif isinstance(src, Mapping):
                src = self.mapping(src, where, {"value", "attr", "default", "len"})
                if "value" in src and len(src) == 1:
                    out[name] = SpecValue(value=src["value"])
                elif isinstance(src.get("len"), str) and set(src) <= {"len", "default"}:
                    out[name] = SpecValue(attr=src["len"], length=True, default=src.get("default"),
                                          has_default="default" in src)
                elif isinstance(src.get("attr"), str) and set(src) <= {"attr", "default"}:
                    out[name] = SpecValue(attr=src["attr"], default=src.get("default"), has_default="default" in src)
                else:
                    self.fail(where, f"expected an attribute name, {{value: literal}}, {{attr: name, default: "
                                     f"literal}} or {{len: name, default: literal}}, got {src!r}")
            else:
                out[name] = SpecValue(value=src)  # numbers, booleans, null: nothing else they could name
        return out

    def sections(self, body: dict, part: Part | None, entry: str):
        target = part.target if part else ""
        source = part.source if part else ""
        name = part.name if part else None
        for op in _PART_OPS:
            if op in body:
                self.op(op, body[op], _join(target, op), source, name, None, False, _join(entry, op))
        if "layers" in body:
            self.layers(body["layers"], target, source, name, _join(entry, "layers"))
        for section, head in (("modules", False), ("heads", True)):
            if section in body:
                self.modules(body[section], target, source, name, None, False, head, _join(entry, section))
        if "params" in body:
            self.params(body["params"], target, source, name, None, _join(entry, "params"))

    def layers(self, value, target: str, source: str, part: str | None, entry: str):
        block = self.mapping(value, entry, _LAYER_KEYS)
        if "path" not in block:
            self.fail(entry, "a layer block needs `path:`, the checkpoint module of layer {i} "
                             "(e.g. encoder.layer.{i})")
        path = self.path(block["path"], f"{entry}.path")
        if "{i}" not in path:
            self.fail(f"{entry}.path", f"{path!r} has no {{i}}: a layer path names each layer's module by its "
                                       f"index (e.g. encoder.layer.{{i}}); for layers sharing weights keep {{i}} "
                                       f"and set `count:` (see docs/MAPS.md)")
        count = block.get("count", "num_layers")
        if not isinstance(count, str) or count not in self.spec_fields[part]:
            self.fail(f"{entry}.count", f"{count!r} must name a field of this map's spec (the number of distinct "
                                        f"layer modules); the spec has {', '.join(sorted(self.spec_fields[part]))}")
        conv1d = block.get("conv1d", False)
        if not isinstance(conv1d, bool):
            self.fail(f"{entry}.conv1d", f"expected true or false, got {conv1d!r}")
        layer_target = _join(target, self.path(block.get("target", "layers"), f"{entry}.target"), "{i}")
        layer_source = _rooted(source, path)
        for op in _LAYER_OPS:
            if op in block:
                self.op(op, block[op], _join(layer_target, op), layer_source, part, count, conv1d, f"{entry}.{op}")
        if "modules" in block:
            self.modules(block["modules"], layer_target, layer_source, part, count, conv1d, False, f"{entry}.modules")
        if "params" in block:
            self.params(block["params"], layer_target, layer_source, part, count, f"{entry}.params")

    def ref(self, value, entry: str, conv1d: bool, tensor: bool) -> tuple[Source | None, Source | None]:
        """A role's or module's value -> (weight source, bias source), keys relative to the section."""
        if isinstance(value, list):
            return self.alternatives([self.ref(v, f"{entry}[{n}]", conv1d, tensor) for n, v in enumerate(value)],
                                     entry)
        if isinstance(value, str):
            path = self.path(value, entry)
            if tensor:
                return Source(path), None
            return Source(f"{path}.weight", "transpose" if conv1d else None), Source(f"{path}.bias")
        body = self.mapping(value, entry, {"path", "conv1d", "key", "transform", "weight", "bias"})
        transform = body.get("transform")
        if transform is not None and transform not in TRANSFORMS:
            self.fail(f"{entry}.transform", f"unknown transform {transform!r}; known: {', '.join(TRANSFORMS)}")
        if "path" in body:
            if set(body) - {"path", "conv1d"}:
                self.fail(entry, "`path:` takes only `conv1d:` beside it; use {key: ..., transform: ...} for one tensor")
            flag = body.get("conv1d", conv1d)
            if not isinstance(flag, bool):
                self.fail(f"{entry}.conv1d", f"expected true or false, got {flag!r}")
            return self.ref(body["path"], entry, flag, tensor)
        if "key" in body:
            if set(body) - {"key", "transform"}:
                self.fail(entry, "`key:` takes only `transform:` beside it")
            return Source(self.path(body["key"], f"{entry}.key"), transform), None
        if "weight" in body or "bias" in body:
            if "conv1d" in body:
                self.fail(entry, "with explicit weight/bias keys write `transform: transpose` instead of conv1d")
            weight = Source(self.path(body["weight"], f"{entry}.weight"), transform) if "weight" in body else None
            bias = Source(self.path(body["bias"], f"{entry}.bias")) if "bias" in body else None
            return weight, bias
        self.fail(entry, f"expected a module path, {{path: ..., conv1d: ...}}, {{key: ..., transform: ...}} or "
                         f"{{weight: ..., bias: ...}}, got {value!r}")

    def alternatives(self, refs: list[tuple[Source | None, Source | None]], entry: str):
        """One (weight, bias) pair whose sources try each alternative's key in turn."""
        if not refs:
            self.fail(entry, "an empty list; give the module path, or a list of alternative paths")
        out = []
        for sources in zip(*refs):
            if all(s is None for s in sources):
                out.append(None)
                continue
            if any(s is None for s in sources) or len({s.transform for s in sources}) > 1:
                self.fail(entry, "alternatives must all have the same form (weight, bias and transform)")
            keys = [k for s in sources for k in s.keys]
            out.append(Source(keys[0], sources[0].transform, tuple(keys[1:])))
        return tuple(out)

    def op(self, op: str, value, target: str, source: str, part, count, conv1d: bool, entry: str):
        roles = ROLES[op]
        table = self.mapping(value, entry, set(roles))
        refs = {role: self.ref(v, f"{entry}.{role}", conv1d, roles[role].tensor) for role, v in table.items()}
        done = set()
        for role in table:
            if role in done:
                continue
            spec = roles[role]
            group = spec.fused or (role,)
            done.update(group)
            missing = [r for r in group if r not in table]
            if missing:
                self.fail(entry, f"{'/'.join(group)} fill {spec.weight} together (rows in that order); "
                                 f"{', '.join(missing)} is missing")
            whole = next((r for r, s in roles.items() if not s.fused and s.weight == spec.weight and r != role), None)
            if spec.fused and whole in table:
                self.fail(entry, f"{whole} and {'/'.join(group)} both fill {spec.weight}; give one or the other")
            weights = [_under(source, refs[r][0]) for r in group]
            biases = [_under(source, refs[r][1]) for r in group]
            self.add(_join(target, spec.weight), weights, part, count, False, f"{entry}.{role}")
            if spec.bias is None:
                if isinstance(table[role], Mapping) and "bias" in table[role]:
                    self.fail(f"{entry}.{role}", f"role {role} of {op} has no bias to fill")
                continue
            if any(biases):
                if not all(biases):
                    self.fail(entry, f"{'/'.join(group)}: give a bias for all or none of them")
                self.add(_join(target, spec.bias), biases, part, count, False, f"{entry}.{role}")

    def modules(self, value, target: str, source: str, part, count, conv1d: bool, head: bool, entry: str):
        for name, ref in self.mapping(value, entry).items():
            where = f"{entry}.{name}"
            module = _join(target, self.path(name, where))
            weight, bias = self.ref(ref, where, conv1d, False)
            for attr, src in (("weight", weight), ("bias", bias)):
                if src is not None:
                    self.add(f"{module}.{attr}", [_under(source, src)], part, count, head, where)

    def params(self, value, target: str, source: str, part, count, entry: str):
        for name, body in self.mapping(value, entry).items():
            where = f"{entry}.{name}"
            if isinstance(body, str):
                body = {"key": body}
            body = self.mapping(body, where, {"key", "concat", "transform", "count", "head"})
            if ("key" in body) == ("concat" in body):
                self.fail(where, "give exactly one of `key:` (one tensor) or `concat:` (a list, rows in order)")
            transform = body.get("transform")
            if transform is not None and transform not in TRANSFORMS:
                self.fail(f"{where}.transform", f"unknown transform {transform!r}; known: {', '.join(TRANSFORMS)}")
            if "concat" in body:
                keys = [(k,) for k in self.strings(body["concat"], f"{where}.concat")]
            else:
                keys = [self.strings(body["key"], f"{where}.key")]
            head = body.get("head", False)
            if not isinstance(head, bool):
                self.fail(f"{where}.head", f"expected true or false, got {head!r}")
            rule_count = body.get("count", count or "num_layers")
            if "{i}" in name and (not isinstance(rule_count, str) or rule_count not in self.spec_fields[part]):
                self.fail(f"{where}.count", f"{rule_count!r} must name a field of this map's spec (the range of "
                                            f"{{i}}); the spec has {', '.join(sorted(self.spec_fields[part]))}")
            sources = [_under(source, Source(self.path(alts[0], where), transform,
                                             tuple(self.path(k, where) for k in alts[1:]))) for alts in keys]
            self.add(_join(target, self.path(name, where)), sources, part, rule_count, head, where)

    def add(self, target: str, sources: list[Source], part, count, head: bool, entry: str):
        sources = tuple(sources)
        for text in (target, *(k for s in sources for k in s.keys)):
            stray = [p for p in _PLACEHOLDER.findall(text) if p != "{i}"]
            if stray:
                self.fail(entry, f"{text!r} holds {stray[0]}; the only placeholder is {{i}} (the layer index)")
        if "{i}" not in target:
            if any("{i}" in k for s in sources for k in s.keys):
                self.fail(entry, f"the sources hold {{i}} but the target {target!r} does not: every layer's "
                                 f"tensor would land in one parameter")
            count = None
        if len(sources) > 1 and any(s.transform == "reshape" for s in sources):
            self.fail(entry, "reshape works on a single source; concatenated pieces keep their row layout")
        if target in self.targets:
            self.fail(entry, f"target {target!r} is already filled by {self.targets[target]}")
        self.targets[target] = entry
        self.rules.append(Rule(target, sources, part, count, head, entry))


# `{i}` inside a YAML flow mapping ({path: encoder.layer.{i}}) would parse as a nested mapping, so
# it is swapped for a plain-scalar token before parsing and restored in every string after.
_INDEX_TOKEN = "__eet_layer_index__"


def _restore_index(node):
    if isinstance(node, str):
        return node.replace(_INDEX_TOKEN, "{i}")
    if isinstance(node, list):
        return [_restore_index(v) for v in node]
    if isinstance(node, dict):
        return {_restore_index(k): _restore_index(v) for k, v in node.items()}
    return node


def parse_map(text: str, origin: str = "<string>") -> StructureMap:
    """Parse a map from YAML text; `origin` names it in error messages."""
    try:
        data = yaml.safe_load(text.replace("{i}", _INDEX_TOKEN))
    except yaml.YAMLError as exc:
        raise MappingError(f"{origin}: not valid YAML: {str(exc).replace(_INDEX_TOKEN, '{i}')}") from exc
    return _Parser(origin).parse(_restore_index(data))


def load_map(source: str | os.PathLike | Mapping) -> StructureMap:
    """Parse a map: a YAML file path, a built-in family name ("bert"), or already-loaded YAML data."""
    if isinstance(source, Mapping):
        return _Parser("<dict>").parse(source)
    text = os.fspath(source)
    path = Path(text).expanduser()
    builtin = MAPS_DIR / f"{text}.yaml"
    if not path.exists() and not path.suffix and builtin.is_file():
        path = builtin
    if not path.is_file():
        raise MappingError(f"No map file {path}. Pass the path of a YAML map (docs/MAPS.md) or a built-in family "
                           f"name: {', '.join(builtin_maps())}.")
    return parse_map(path.read_text(encoding="utf-8"), str(path))


def builtin_maps() -> dict[str, Path]:
    """Family name -> YAML file of the maps shipped with eet_triton."""
    return {p.stem: p for p in sorted(MAPS_DIR.glob("*.yaml"))}


def select_map(config, mapping: StructureMap | str | os.PathLike | None = None) -> StructureMap:
    """The map for a checkpoint's config: `mapping` when given (a StructureMap, a YAML path or a
    family name), else the built-in map whose model_types hold config's model_type and whose
    architectures hold one of config's architectures."""
    if isinstance(mapping, StructureMap):
        return mapping
    if mapping is not None:
        return load_map(mapping)
    config = _as_dict(config)
    model_type = config.get("model_type")
    maps = [load_map(path) for path in builtin_maps().values()]
    same_type = [m for m in maps if model_type in m.model_types]
    for m in same_type:
        if m.supports(config):
            return m
    if same_type:
        raise UnsupportedModelError(
            f"The {same_type[0].family} map covers model_type {model_type!r} but not the architectures "
            f"{config.get('architectures')} of this checkpoint; it supports {', '.join(same_type[0].architectures)}. "
            f"Pass mapping=<your map.yaml> (docs/MAPS.md) to load it another way.")
    known = sorted({t for m in maps for t in m.model_types})
    raise UnsupportedModelError(
        f"No built-in structure map covers model_type {model_type!r} (covered: {', '.join(known) or 'none'}). "
        f"Write a YAML map for it (docs/MAPS.md) and pass mapping=<path>.")
