"""The YAML map schema: parsing, spec resolution, map selection, and MappingError for malformed maps."""

import textwrap

import pytest

from eet_triton.errors import MappingError, UnsupportedModelError
from eet_triton.mapping import SPEC_FIELDS, Source, builtin_maps, load_map, parse_map, select_map

BERT_CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 32, "num_attention_heads": 2,
               "num_hidden_layers": 3, "intermediate_size": 64, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
               "vocab_size": 99, "max_position_embeddings": 64, "type_vocab_size": 2}

GOOD = """
family: toy
model_types: [toy]
spec:
  hidden_size: hidden_size
  num_layers: num_hidden_layers
layers:
  path: encoder.layer.{i}
  attention: {q: attn.q, k: attn.k, v: attn.v, out: attn.o}
"""


def parse(text, origin="toy.yaml"):
    return parse_map(textwrap.dedent(text), origin)


def test_bert_map_is_builtin_and_parses():
    assert "bert" in builtin_maps()
    smap = load_map("bert")
    assert smap.family == "bert" and smap.model_types == ("bert",) and smap.prefixes == ("bert.",)
    assert "BertForSequenceClassification" in smap.architectures
    assert set(smap.spec) <= set(SPEC_FIELDS)
    qkv = next(r for r in smap.rules if r.target == "layers.{i}.attention.qkv_weight")
    assert [s.key for s in qkv.sources] == [f"encoder.layer.{{i}}.attention.self.{n}.weight"
                                            for n in ("query", "key", "value")]
    assert qkv.count == "num_layers"
    assert load_map(builtin_maps()["bert"]).rules == smap.rules


def test_bert_spec_from_config():
    spec = load_map("bert").resolve_spec(BERT_CONFIG)
    assert spec["hidden_size"] == 32 and spec["num_heads"] == 2 and spec["num_layers"] == 3
    assert spec["norm_position"] == "post" and spec["norm_kind"] == "layernorm"
    assert spec["activation"] == "gelu" and spec["norm_eps"] == 1e-12
    assert spec["pad_token_id"] == 0 and spec["num_labels"] == 2  # defaults: absent from this config
    assert load_map("bert").resolve_spec({**BERT_CONFIG, "id2label": {"0": "a", "1": "b", "2": "c"}})["num_labels"] == 3


def test_routes_expand_layers():
    smap = parse(GOOD)
    routes = smap.routes({"hidden_size": 8, "num_hidden_layers": 3})
    targets = [r.target for r in routes]
    assert targets.count("layers.2.attention.qkv_weight") == 1 and "layers.3.attention.qkv_weight" not in targets
    qkv = next(r for r in routes if r.target == "layers.1.attention.qkv_bias")
    assert qkv.sources == tuple(Source(f"encoder.layer.1.attn.{n}.bias") for n in "qkv")


def test_spec_value_forms():
    smap = parse("""
        family: toy
        spec:
          hidden_size: dims.width
          num_heads: {value: 4}
          norm_eps: 1.0e-6
          activation: {attr: act, default: relu}
          num_labels: {len: id2label}
          causal: {value: null}
    """)
    spec = smap.resolve_spec({"dims": {"width": 48}, "id2label": {"0": "x", "1": "y"}})
    assert spec == {"hidden_size": 48, "num_heads": 4, "norm_eps": 1e-6, "activation": "relu", "num_labels": 2,
                    "causal": None}


def test_spec_missing_attribute_names_it():
    smap = load_map("bert")
    config = dict(BERT_CONFIG)
    del config["intermediate_size"]
    with pytest.raises(MappingError, match="intermediate_size") as err:
        smap.resolve_spec(config)
    assert "ffn_size" in str(err.value) and "bert.yaml" in str(err.value)


def test_parts_spec_reads_sub_config_over_top_level():
    smap = parse("""
        family: dual
        spec: {projection_dim: projection_dim, norm_eps: {value: 1.0e-5}}
        parts:
          text:
            config: text_config
            source: text_model
            spec: {hidden_size: hidden_size, num_layers: num_hidden_layers}
            layers: {path: encoder.layers.{i}, ffn: {up: fc1, down: fc2}}
          vision:
            config: vision_config
            source: vision_model
            target: visual
            spec: {hidden_size: hidden_size, num_layers: num_hidden_layers, norm_eps: layer_norm_eps}
            layers: {path: encoder.layers.{i}, ffn: {up: fc1, down: fc2}}
    """)
    config = {"projection_dim": 16, "text_config": {"hidden_size": 32, "num_hidden_layers": 1},
              "vision_config": {"hidden_size": 48, "num_hidden_layers": 2, "layer_norm_eps": 1e-6}}
    assert smap.resolve_spec(config) == {"projection_dim": 16, "norm_eps": 1e-5}
    assert smap.resolve_spec(config, "text") == {"projection_dim": 16, "norm_eps": 1e-5, "hidden_size": 32,
                                                  "num_layers": 1}
    assert smap.resolve_spec(config, "vision")["norm_eps"] == 1e-6
    targets = {r.target: r.sources[0].key for r in smap.routes(config)}
    assert targets["text.layers.0.ffn.up_weight"] == "text_model.encoder.layers.0.fc1.weight"
    assert targets["visual.layers.1.ffn.down_bias"] == "vision_model.encoder.layers.1.fc2.bias"
    assert "text.layers.1.ffn.up_weight" not in targets


def test_conv1d_and_explicit_forms():
    smap = parse("""
        family: gptish
        spec: {num_layers: n_layer}
        layers:
          path: h.{i}
          conv1d: true
          attention: {qkv: attn.c_attn, out: attn.c_proj, norm: ln_1}
          ffn: {up: {path: mlp.c_fc, conv1d: false}, down: {key: mlp.w2, transform: transpose}}
        vision_embeddings:
          class: {key: emb.cls_token, transform: reshape}
          positions: emb.pos
          patch: emb.proj
        modules: {final_norm: ln_f}
        params:
          logit_scale: logit_scale
          layers.{i}.extra: {concat: [h.{i}.a, h.{i}.b]}
    """)
    rules = {r.target: r for r in smap.rules}
    assert rules["layers.{i}.attention.qkv_weight"].sources == (Source("h.{i}.attn.c_attn.weight", "transpose"),)
    assert rules["layers.{i}.attention.qkv_bias"].sources == (Source("h.{i}.attn.c_attn.bias"),)
    assert rules["layers.{i}.ffn.up_weight"].sources == (Source("h.{i}.mlp.c_fc.weight"),)
    assert rules["layers.{i}.ffn.down_weight"].sources == (Source("h.{i}.mlp.w2", "transpose"),)
    assert "layers.{i}.ffn.down_bias" not in rules
    assert rules["vision_embeddings.class_embedding"].sources == (Source("emb.cls_token", "reshape"),)
    assert rules["vision_embeddings.position_weight"].sources == (Source("emb.pos.weight"),)
    assert rules["vision_embeddings.patch_bias"].sources == (Source("emb.proj.bias"),)
    assert rules["final_norm.bias"].sources == (Source("ln_f.bias"),) and rules["final_norm.bias"].count is None
    assert rules["logit_scale"].count is None
    assert [s.key for s in rules["layers.{i}.extra"].sources] == ["h.{i}.a", "h.{i}.b"]


def test_ignore_globs_stay_within_a_name_component():
    smap = parse("""
        family: g
        ignore: ["h.*.attn.bias", "cls.seq_relationship.**", "x.?"]
    """)
    assert smap.ignored("h.11.attn.bias")
    assert not smap.ignored("h.11.attn.c_attn.bias")
    assert not smap.ignored("h.1.2.attn.bias")
    assert smap.ignored("cls.seq_relationship.weight") and smap.ignored("cls.seq_relationship.a.b")
    assert smap.ignored("x.1") and not smap.ignored("x.12")


def test_select_map():
    assert select_map(BERT_CONFIG).family == "bert"
    assert select_map({**BERT_CONFIG, "architectures": None}).family == "bert"
    assert select_map({"model_type": "whatever"}, mapping="bert").family == "bert"
    custom = parse(GOOD)
    assert select_map(BERT_CONFIG, mapping=custom) is custom


def test_select_map_unsupported():
    with pytest.raises(UnsupportedModelError, match="model_type 'mamba'") as err:
        select_map({"model_type": "mamba"})
    assert "bert" in str(err.value) and "mapping=" in str(err.value)
    with pytest.raises(UnsupportedModelError, match="BertLMHeadModel"):
        select_map({**BERT_CONFIG, "architectures": ["BertLMHeadModel"]})


def test_load_map_missing_file(tmp_path):
    with pytest.raises(MappingError, match="No map file"):
        load_map(tmp_path / "nope.yaml")


def test_malformed_map_file_names_file_and_entry(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD.replace("out: attn.o", "output: attn.o"))
    with pytest.raises(MappingError) as err:
        load_map(path)
    msg = str(err.value)
    assert str(path) in msg and "layers.attention.output" in msg and "unknown entry 'output'" in msg
    assert "did you mean 'out'" in msg


MALFORMED = {
    "invalid-yaml": ("family: [toy", "not valid YAML"),
    "not-a-mapping": ("- a\n- b", "top level: expected a mapping"),
    "no-family": ("model_types: [x]", "family"),
    "unknown-top-key": ("family: t\nlayer: {path: a.{i}}", "unknown entry 'layer'"),
    "unknown-role": (GOOD.replace("q: attn.q", "query: attn.q"), "layers.attention.query: unknown entry 'query'"),
    "missing-i": (GOOD.replace("encoder.layer.{i}", "encoder.layer"), "layers.path: 'encoder.layer' has no {i}"),
    "unknown-spec-field": (GOOD.replace("hidden_size: hidden_size", "hidden: hidden_size"),
                           "spec.hidden: unknown spec field 'hidden'"),
    "bad-spec-form": (GOOD.replace("hidden_size: hidden_size", "hidden_size: {value: 1, attr: x}"),
                      "spec.hidden_size: expected"),
    "partial-qkv": (GOOD.replace("v: attn.v, ", ""), "q/k/v fill qkv_weight together"),
    "qkv-and-q": (GOOD.replace("out: attn.o", "out: attn.o, qkv: attn.c"), "qkv and q/k/v both fill qkv_weight"),
    "unknown-transform": (GOOD.replace("out: attn.o", "out: {key: attn.o.w, transform: flip}"),
                          "unknown transform 'flip'"),
    "count-not-in-spec": (GOOD.replace("path: encoder.layer.{i}", "path: encoder.layer.{i}\n  count: groups"),
                          "layers.count: 'groups' must name a field"),
    "no-layer-count-in-spec": (GOOD.replace("num_layers: num_hidden_layers", "num_heads: n"),
                               "layers.count: 'num_layers' must name a field"),
    "stray-placeholder": (GOOD + "params:\n  x.{j}: y.{j}\n", "the only placeholder is {i}"),
    "i-only-in-source": (GOOD + "params:\n  x: y.{i}\n", "every layer's tensor would land in one parameter"),
    "duplicate-target": (GOOD + "params:\n  layers.{i}.attention.out_weight: z\n", "already filled by"),
    "key-and-concat": (GOOD + "params:\n  x: {key: a, concat: [b]}\n", "exactly one of"),
    "reshape-in-concat": (GOOD + "params:\n  x: {concat: [a, b], transform: reshape}\n", "reshape works on a single"),
    "bias-on-biasless-role": ("family: t\nembeddings: {tokens: {weight: a, bias: b}}", "has no bias to fill"),
    "spec-not-mapping": ("family: t\nspec: [a]", "spec: expected a mapping"),
    "part-unknown-key": ("family: t\nparts: {text: {sauce: x}}", "parts.text.sauce: unknown entry"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_maps_raise_mapping_error(name):
    text, expected = MALFORMED[name]
    with pytest.raises(MappingError) as err:
        parse(text, origin=f"{name}.yaml")
    msg = str(err.value)
    assert msg.startswith(f"{name}.yaml: "), msg
    assert expected in msg, msg


def test_layer_count_not_a_count():
    with pytest.raises(MappingError, match="is not a count"):
        parse(GOOD).routes({"hidden_size": 8, "num_hidden_layers": "three"})


def test_rooted_paths_and_alternatives():
    smap = parse("""
        family: encdec
        spec: {num_layers: n}
        parts:
          decoder:
            source: model.decoder
            embeddings: {tokens: /model.shared, positions: embed_positions}
            layers:
              path: layers.{i}
              ffn: {up: [fc1, /legacy.fc1.{i}], down: fc2}
    """)
    rules = {r.target: r for r in smap.rules}
    assert rules["decoder.embeddings.word_weight"].sources == (Source("model.shared.weight"),)
    assert rules["decoder.embeddings.position_weight"].sources == (Source("model.decoder.embed_positions.weight"),)
    up = smap.routes({"n": 2})[2]
    assert up.target == "decoder.layers.0.ffn.up_weight"
    assert up.sources[0].keys == ("model.decoder.layers.0.fc1.weight", "legacy.fc1.0.weight")


def test_alternatives_must_have_one_form():
    with pytest.raises(MappingError, match="alternatives must all have the same form"):
        parse("""
            family: t
            spec: {num_layers: n}
            layers: {path: "b.{i}", ffn: {up: [wi, {key: wi_0.weight}]}}
        """)


@pytest.mark.parametrize("family", list(builtin_maps()))
def test_every_shipped_map_parses(family):
    smap = load_map(family)
    assert smap.family == family and smap.model_types
    assert set(smap.spec) <= set(SPEC_FIELDS)
    assert all(set(p.spec) <= set(SPEC_FIELDS) for p in smap.parts.values())
