"""EETFeedforward: the transformer MLP as two GEMMs with fused epilogues (bias + activation
[* gate] in the first, bias + residual in the second), with pre- or post-LN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from eet_triton.errors import ShapeError, UnsupportedModelError
from eet_triton.kernels._common import check_same_device, check_same_dtype
from eet_triton.kernels.linear import canonical_activation, linear
from eet_triton.ops._base import EETOp, as_param, copy_of, empty, module_placement, unsupported
from eet_triton.ops.layernorm import EETLayerNorm

_SUPPORTED = ("CLIPMLP, GPT2MLP, (BertIntermediate, BertOutput) pair, BertLayer, RobertaLayer, T5LayerFF, T5DenseActDense, "
              "T5DenseGatedActDense")

HF_CLASSES = frozenset({"CLIPMLP", "GPT2MLP", "BertLayer", "RobertaLayer", "T5LayerFF", "T5DenseActDense",
                        "T5DenseGatedActDense"})
"""Names of the HF MLP classes (and their subclasses) EETFeedforward lifts, besides the Bert pair."""

_FUNCTION_NAMES = {F.gelu: "gelu", F.relu: "relu", F.silu: "silu", torch.relu: "relu"}


class EETFeedforward(EETOp):
    """y = down(act(up(h)) [* gate(h)]) with h = norm(x) for pre-LN, else x;
    then + x when residual; then norm(.) for post-LN. So:
      pre-LN (T5, GPT-2, CLIP):  x + down(act(up(LN(x))))
      post-LN (BERT):            LN(x + down(act(up(x))))
      none:                      down(act(up(x)))
    forward(x [..., hidden]) -> [..., hidden], same dtype as the weights (fp16, bf16, fp32).

    Parameters (the checkpoint-mapping contract, nn.Linear [out, in] layout): up_weight [ffn, hidden],
    up_bias [ffn] or None, gate_weight [ffn, hidden] or None (gated: act(up(x)) * gate(x); in T5's
    DenseGatedActDense wi_0 is up, wi_1 is gate), gate_bias, down_weight [hidden, ffn], down_bias
    [hidden] or None, norm (EETLayerNorm child or None).

    Construction:
      - `EETFeedforward(w_up, b_up, w_down, b_down, activation, w_gate=None, b_gate=None, norm=None,
        norm_position=None, residual=False)` takes the tensors as they are (no copy); activation is a
        HF name ('gelu', 'gelu_new', 'quick_gelu', 'relu', 'silu', ...) or None;
      - `EETFeedforward.empty(hidden_size, ffn_size, activation, *, up_bias=True, down_bias=True,
        gated=False, gate_bias=False, norm=None, norm_position=None, residual=False, dtype, device)`;
      - `EETFeedforward.from_torch(module, dtype=None, device=None)` for CLIPMLP, GPT2MLP (Conv1D),
        a (BertIntermediate, BertOutput) pair or a BertLayer (its FFN half, post-LN), T5LayerFF
        (pre-RMSNorm + residual), T5DenseActDense and T5DenseGatedActDense.
    """

    def __init__(self, w_up: torch.Tensor, b_up: torch.Tensor | None, w_down: torch.Tensor,
                 b_down: torch.Tensor | None, activation: str | None, w_gate: torch.Tensor | None = None,
                 b_gate: torch.Tensor | None = None, norm: EETLayerNorm | None = None,
                 norm_position: str | None = None, residual: bool = False):
        super().__init__()
        if w_up.dim() != 2:
            raise ShapeError(f"EETFeedforward: w_up must be [ffn, hidden], got {list(w_up.shape)}")
        ffn, hidden = w_up.shape
        shapes = dict(b_up=(ffn,), w_down=(hidden, ffn), b_down=(hidden,), w_gate=(ffn, hidden), b_gate=(ffn,))
        given = dict(b_up=b_up, w_down=w_down, b_down=b_down, w_gate=w_gate, b_gate=b_gate)
        for name, t in given.items():
            if t is not None and tuple(t.shape) != shapes[name]:
                raise ShapeError(f"EETFeedforward: {name} must have shape {list(shapes[name])}, got {list(t.shape)}")
        if b_gate is not None and w_gate is None:
            raise ValueError("EETFeedforward: b_gate given without w_gate")
        if norm is not None and norm_position not in ("pre", "post"):
            raise ValueError(f"EETFeedforward: norm_position must be 'pre' or 'post' with a norm, got {norm_position!r}")
        if norm is not None and norm.hidden_size != hidden:
            raise ShapeError(f"EETFeedforward: norm has size {norm.hidden_size}, the hidden size is {hidden}")
        check_same_dtype(w_up=w_up, **given)
        check_same_device(w_up=w_up, **given)
        self.activation = canonical_activation(activation)
        self.hidden_size, self.ffn_size = hidden, ffn
        self.up_weight, self.up_bias = as_param(w_up), as_param(b_up)
        self.gate_weight, self.gate_bias = as_param(w_gate), as_param(b_gate)
        self.down_weight, self.down_bias = as_param(w_down), as_param(b_down)
        self.norm = norm
        self.norm_position = norm_position if norm is not None else None
        self.residual = bool(residual)

    @classmethod
    def empty(cls, hidden_size: int, ffn_size: int, activation: str | None, *, up_bias: bool = True,
              down_bias: bool = True, gated: bool = False, gate_bias: bool = False,
              norm: EETLayerNorm | None = None, norm_position: str | None = None, residual: bool = False,
              dtype: torch.dtype = torch.float16, device="cuda") -> EETFeedforward:
        alloc = dict(dtype=dtype, device=device)
        return cls(empty(ffn_size, hidden_size, **alloc), empty(ffn_size, **alloc) if up_bias else None,
                   empty(hidden_size, ffn_size, **alloc), empty(hidden_size, **alloc) if down_bias else None,
                   activation, empty(ffn_size, hidden_size, **alloc) if gated else None,
                   empty(ffn_size, **alloc) if gated and gate_bias else None,
                   norm=norm, norm_position=norm_position, residual=residual)

    @classmethod
    def from_torch(cls, module, dtype: torch.dtype | None = None, device=None) -> EETFeedforward:
        """module: a supported HF MLP module, or a (BertIntermediate, BertOutput) pair."""
        if isinstance(module, (tuple, list)):
            intermediate, output = module if len(module) == 2 else (None, None)
            if not (_is(intermediate, "BertIntermediate", "RobertaIntermediate")
                    and _is(output, "BertOutput", "RobertaOutput")):
                raise UnsupportedModelError("EETFeedforward.from_torch: a pair must be (BertIntermediate, BertOutput), "
                                            f"got {tuple(type(m).__name__ for m in module)}")
            dtype, device = module_placement(intermediate, dtype, device)
            up, down = intermediate.dense, output.dense
            return cls._lift((up.weight, up.bias), (down.weight, down.bias), _activation_name(intermediate),
                             dtype, device, norm=output.LayerNorm, norm_position="post", residual=True)
        if not isinstance(module, nn.Module):
            raise UnsupportedModelError(f"EETFeedforward.from_torch: expected an nn.Module or a (BertIntermediate, "
                                        f"BertOutput) pair, got {type(module).__name__}")
        dtype, device = module_placement(module, dtype, device)
        names = {c.__name__ for c in type(module).__mro__}
        if names & {"BertLayer", "RobertaLayer"}:
            return cls.from_torch((module.intermediate, module.output), dtype, device)
        if "CLIPMLP" in names:
            return cls._lift(_linear(module.fc1), _linear(module.fc2), _activation_name(module), dtype, device)
        if "GPT2MLP" in names:
            # Conv1D stores [in, out]
            up = (module.c_fc.weight.t(), module.c_fc.bias)
            down = (module.c_proj.weight.t(), module.c_proj.bias)
            return cls._lift(up, down, _activation_name(module), dtype, device)
        if "T5LayerFF" in names:
            up, gate, down = _t5_dense(module.DenseReluDense)
            return cls._lift(up, down, _activation_name(module.DenseReluDense), dtype, device, gate=gate,
                             norm=module.layer_norm, norm_position="pre", residual=True)
        if names & {"T5DenseActDense", "T5DenseGatedActDense"}:
            up, gate, down = _t5_dense(module)
            return cls._lift(up, down, _activation_name(module), dtype, device, gate=gate)
        raise unsupported("EETFeedforward", module, _SUPPORTED)

    @classmethod
    def _lift(cls, up: tuple, down: tuple, activation: str | None, dtype, device, *, gate: tuple = (None, None),
              norm: nn.Module | None = None, norm_position: str | None = None, residual: bool = False):
        def c(t):
            return copy_of(t, dtype, device)

        return cls(c(up[0]), c(up[1]), c(down[0]), c(down[1]), activation, c(gate[0]), c(gate[1]),
                   norm=None if norm is None else EETLayerNorm.from_torch(norm, dtype, device),
                   norm_position=norm_position, residual=residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_hidden("x", x, self.hidden_size, ndim=tuple(range(2, 9)))
        h = self.norm(x) if self.norm_position == "pre" else x
        inner = linear(h, self.up_weight, self.up_bias, activation=self.activation, gate_weight=self.gate_weight,
                       gate_bias=self.gate_bias)
        # residual in the down GEMM's epilogue, also for post-LN: cheaper than layer_norm(residual=),
        # which would write the sum as a second output nobody reads
        y = linear(inner, self.down_weight, self.down_bias, residual=x if self.residual else None)
        return self.norm(y) if self.norm_position == "post" else y

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden_size}, ffn={self.ffn_size}, activation={self.activation}, "
                f"gated={self.gate_weight is not None}, norm_position={self.norm_position}, residual={self.residual}")


def _is(m, *names: str) -> bool:
    """m is an instance of a class named one of `names` (HF classes compared by name: no import)."""
    return any(c.__name__ in names for c in type(m).__mro__)


def _t5_dense(d: nn.Module) -> tuple[tuple, tuple, tuple]:
    """(up, gate, down) of T5DenseActDense (wi, wo) or T5DenseGatedActDense (act(wi_0) * wi_1, wo)."""
    if _is(d, "T5DenseGatedActDense"):
        return _linear(d.wi_0), _linear(d.wi_1), _linear(d.wo)
    return _linear(d.wi), (None, None), _linear(d.wo)


def _linear(m: nn.Module) -> tuple:
    return m.weight, m.bias


def _activation_name(module: nn.Module) -> str | None:
    """The HF name of a module's activation: its config's when it keeps one, else found from the
    activation object (GPT2MLP and the T5 dense modules keep no config)."""
    config = getattr(module, "config", None)
    for attr in ("hidden_act", "activation_function", "dense_act_fn"):
        if isinstance(getattr(config, attr, None), str):
            return getattr(config, attr)
    act = next((getattr(module, a) for a in ("activation_fn", "act", "intermediate_act_fn") if hasattr(module, a)), None)
    if act in _FUNCTION_NAMES:
        return _FUNCTION_NAMES[act]
    from transformers.activations import ACT2CLS  # here: importing eet_triton must not pull in transformers

    for name, entry in ACT2CLS.items():
        cls, kwargs = entry if isinstance(entry, tuple) else (entry, {})
        if type(act) is cls and all(getattr(act, k, v) == v for k, v in kwargs.items()):
            return None if name == "linear" else name
    raise UnsupportedModelError(f"EETFeedforward.from_torch: {type(module).__name__} uses the activation "
                                f"{act!r}, which has no HuggingFace name the kernels know")
