"""EETFeedforward against the HF MLPs it lifts: CLIPMLP, GPT2MLP, BERT's (intermediate, output)
pair and BertLayer (post-LN), T5LayerFF (pre-RMSNorm, plain and gated), bare T5 dense modules."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, CLIPTextConfig, GPT2Config, RobertaConfig, T5Config
from transformers.models.bert.modeling_bert import BertIntermediate, BertLayer, BertOutput
from transformers.models.clip.modeling_clip import CLIPMLP
from transformers.models.gpt2.modeling_gpt2 import GPT2MLP
from transformers.models.roberta.modeling_roberta import RobertaLayer
from transformers.models.t5.modeling_t5 import T5DenseActDense, T5DenseGatedActDense, T5LayerFF

from _ops_helpers import check, hf_runs, randomize, same_twice
from eet_triton.errors import DTypeError, ShapeError, UnsupportedModelError
from eet_triton.ops import EETFeedforward, EETLayerNorm, from_torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def t5(gated: bool, act: str) -> T5Config:
    return T5Config(d_model=40, d_ff=72, num_heads=2, feed_forward_proj=f"gated-{act}" if gated else act)


def bert_config(config=BertConfig, act="gelu"):
    return config(hidden_size=40, num_attention_heads=2, intermediate_size=72, hidden_act=act)


# name -> (HF module factory, call(module, x), expected (activation, norm_position, residual, gated))
MODULES = {
    "CLIPMLP": (lambda: CLIPMLP(CLIPTextConfig(hidden_size=40, intermediate_size=72, hidden_act="quick_gelu")),
                lambda m, x: m(x), ("quick_gelu", None, False, False)),
    "GPT2MLP": (lambda: GPT2MLP(72, GPT2Config(n_embd=40, activation_function="gelu_new")),
                lambda m, x: m(x), ("gelu_tanh", None, False, False)),
    "BertPair": (lambda: (BertIntermediate(bert_config()), BertOutput(bert_config())),
                 lambda m, x: m[1](m[0](x), x), ("gelu", "post", True, False)),
    "BertLayer": (lambda: BertLayer(bert_config(act="relu")),
                  lambda m, x: m.feed_forward_chunk(x), ("relu", "post", True, False)),
    "RobertaLayer": (lambda: RobertaLayer(bert_config(RobertaConfig)),
                     lambda m, x: m.feed_forward_chunk(x), ("gelu", "post", True, False)),
    "T5LayerFF": (lambda: T5LayerFF(t5(False, "relu")), lambda m, x: m(x), ("relu", "pre", True, False)),
    "T5LayerFF-gated": (lambda: T5LayerFF(t5(True, "gelu")), lambda m, x: m(x), ("gelu_tanh", "pre", True, True)),
    "T5DenseActDense": (lambda: T5DenseActDense(t5(False, "gelu")), lambda m, x: m(x),
                        ("gelu", None, False, False)),
    "T5DenseGatedActDense": (lambda: T5DenseGatedActDense(t5(True, "silu")), lambda m, x: m(x),
                             ("silu", None, False, True)),
}


def _randomized(hf, device):
    if isinstance(hf, tuple):
        return tuple(randomize(m).to(device) for m in hf)
    return randomize(hf).to(device)


class _Pair(torch.nn.Module):
    """(BertIntermediate, BertOutput) as one module, so hf_runs can copy and cast it."""

    def __init__(self, pair):
        super().__init__()
        self.intermediate, self.output = pair

    def __getitem__(self, i):
        return (self.intermediate, self.output)[i]


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (1, 13)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(MODULES))
def test_feedforward_matches_hf(device, name, dtype, shape):
    make, call, (act, norm_position, residual, gated) = MODULES[name]
    hf = _randomized(make(), device)
    op = EETFeedforward.from_torch(hf, dtype=dtype)
    assert (op.activation, op.norm_position, op.residual, op.gate_weight is not None) == \
        (act, norm_position, residual, gated)
    x = torch.randn(*shape, 40, device=device).to(dtype)
    out = op(x)
    same_twice(out, op(x))
    module = _Pair(hf) if isinstance(hf, tuple) else hf
    ref, base = hf_runs(module, lambda m, dt: call(m, x.to(dt)), dtype)
    check(out, ref, base)


def test_dispatch_and_contract(device):
    assert isinstance(from_torch(CLIPMLP(CLIPTextConfig(hidden_size=40, intermediate_size=72))), EETFeedforward)
    pair = (BertIntermediate(bert_config()), BertOutput(bert_config()))
    op = from_torch(pair)
    assert {k: tuple(v.shape) for k, v in op.state_dict().items()} == {
        "up_weight": (72, 40), "up_bias": (72,), "down_weight": (40, 72), "down_bias": (40,),
        "norm.weight": (40,), "norm.bias": (40,)}
    gated = EETFeedforward.from_torch(T5LayerFF(t5(True, "gelu")))
    assert {k: tuple(v.shape) for k, v in gated.state_dict().items()} == {
        "up_weight": (72, 40), "gate_weight": (72, 40), "down_weight": (40, 72), "norm.weight": (40,)}
    assert gated.up_bias is None and gated.gate_bias is None and gated.down_bias is None and gated.norm.rms

    hf = randomize(T5LayerFF(t5(True, "gelu"))).to(device)
    lifted = EETFeedforward.from_torch(hf)
    skeleton = EETFeedforward.empty(40, 72, "gelu_new", up_bias=False, down_bias=False, gated=True,
                                    norm=EETLayerNorm.empty(40, bias=False, rms=True, eps=1e-6,
                                                            dtype=torch.float32, device=device),
                                    norm_position="pre", residual=True, dtype=torch.float32, device=device)
    skeleton.load_state_dict(lifted.state_dict())
    x = torch.randn(3, 7, 40, device=device)
    same_twice(lifted(x), skeleton(x))


def test_errors(device):
    with pytest.raises(UnsupportedModelError, match="supported: CLIPMLP"):
        EETFeedforward.from_torch(torch.nn.Linear(4, 4))
    with pytest.raises(UnsupportedModelError, match="pair must be"):
        EETFeedforward.from_torch((BertOutput(bert_config()), BertIntermediate(bert_config())))
    with pytest.raises(UnsupportedModelError, match="gelu_10"):
        EETFeedforward.from_torch(CLIPMLP(CLIPTextConfig(hidden_size=40, intermediate_size=72, hidden_act="gelu_10")))
    op = EETFeedforward.from_torch(randomize(CLIPMLP(CLIPTextConfig(hidden_size=40, intermediate_size=72))).to(device))
    with pytest.raises(ShapeError, match="hidden size 40"):
        op(torch.randn(2, 3, 32, device=device))
    with pytest.raises(DTypeError, match="float16"):
        op(torch.randn(2, 3, 40, device=device).half())
    with pytest.raises(ShapeError, match="w_down"):
        EETFeedforward(torch.randn(72, 40), None, torch.randn(40, 71), None, "relu")
