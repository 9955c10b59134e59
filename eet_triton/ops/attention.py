"""Attention ops: EETSelfAttention (bidirectional), EETSelfMaskedAttention (causal, KV cache),
EETCrossAttention (decoder -> encoder).

Each is one fused projection GEMM, one flash-attention kernel that reads q/k/v as strided
views of the GEMM's output (no copy), and one output GEMM that adds the residual in its
epilogue; a norm runs before (pre-LN) or after (post-LN) as the model needs.

Masks are HuggingFace's 2-D [batch, key_len] 1 = attend / 0 = padding. A query row that can
see no key at all (a left-padded row under a causal mask, say) comes out as zeros here, where
HuggingFace's additive mask gives it uniform attention over the masked keys: such rows belong
to padding tokens and are never read.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from eet_triton.errors import ShapeError, UnsupportedModelError
from eet_triton.kernels._common import check_same_device, check_same_dtype
from eet_triton.kernels.attention import attention
from eet_triton.kernels.linear import linear
from eet_triton.ops._base import EETOp, as_param, copy_of, empty, module_placement, unsupported
from eet_triton.ops.layernorm import EETLayerNorm
from eet_triton.runtime.kv_cache import KVCache

_SUPPORTED_SELF = ("CLIPAttention (vision; text with causal=True), BertAttention, RobertaAttention, GPT2Attention, "
                   "T5Attention, T5LayerSelfAttention, BartAttention")
_SUPPORTED_CROSS = ("BartAttention, T5Attention, T5LayerCrossAttention, BertAttention(is_cross_attention=True), "
                    "GPT2Attention(is_cross_attention=True)")


class _Attention(EETOp):
    """What the three attention ops share: sizes, scale, norm placement, residual, T5 bias."""

    def _setup(self, *, hidden_size: int, num_heads: int, head_dim: int, scale: float | None,
               norm: EETLayerNorm | None, norm_position: str | None, residual: bool,
               t5_table: torch.Tensor | None, t5_bidirectional: bool, t5_max_distance: int, layer_idx: int):
        op = type(self).__name__
        if norm is not None and norm_position not in ("pre", "post"):
            raise ValueError(f"{op}: norm_position must be 'pre' or 'post' when a norm is given, got {norm_position!r}")
        if norm is not None and norm.hidden_size != hidden_size:
            raise ShapeError(f"{op}: norm has size {norm.hidden_size}, the op's hidden size is {hidden_size}")
        if t5_table is not None and (t5_table.dim() != 2 or t5_table.shape[1] != num_heads):
            raise ShapeError(f"{op}: t5_table must be [num_buckets, num_heads={num_heads}], got {list(t5_table.shape)}")
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, head_dim
        self.scale = float(scale) if scale is not None else head_dim ** -0.5
        self.norm = norm
        self.norm_position = norm_position if norm is not None else None
        self.residual = bool(residual)
        self.register_buffer("t5_table", None if t5_table is None else t5_table.detach().contiguous())
        self.t5_bidirectional, self.t5_max_distance = bool(t5_bidirectional), int(t5_max_distance)
        self.layer_idx = int(layer_idx)

    def _set_out(self, out_weight: torch.Tensor, out_bias: torch.Tensor | None) -> None:
        inner = self.num_heads * self.head_dim
        _check_weight(type(self).__name__, "out_weight", out_weight, (self.hidden_size, inner))
        _check_weight(type(self).__name__, "out_bias", out_bias, (self.hidden_size,))
        self.out_weight = as_param(out_weight)
        self.out_bias = as_param(out_bias)

    def _normed_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if self.norm_position == "pre" else x

    def _attend(self, q, k, v, key_padding_mask, causal: bool) -> torch.Tensor:
        return attention(q, k, v, scale=self.scale, causal=causal, key_padding_mask=key_padding_mask,
                         t5_table=self.t5_table, t5_bidirectional=self.t5_bidirectional,
                         t5_max_distance=self.t5_max_distance)

    def _project_out(self, ctx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ctx [B, L, H, D] -> [B, L, hidden]: output GEMM with the residual x in its epilogue.
        Post-LN normalises that sum; adding it in the GEMM rather than in layer_norm(residual=)
        spares writing the sum as a second output nobody reads."""
        batch, length = ctx.shape[:2]
        out = linear(ctx.view(batch, length, self.num_heads * self.head_dim), self.out_weight, self.out_bias,
                     residual=x if self.residual else None)
        return self.norm(out) if self.norm_position == "post" else out

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden_size}, heads={self.num_heads}, head_dim={self.head_dim}, scale={self.scale:.4g}, "
                f"norm_position={self.norm_position}, residual={self.residual}, t5_bias={self.t5_table is not None}")


class EETSelfAttention(_Attention):
    """Bidirectional multi-head self attention (BERT, CLIP vision, T5 encoder, BART encoder).

    forward(hidden_states [B, L, hidden], attention_mask=None [B, L] 1/0) -> [B, L, hidden], same
    dtype as the weights (fp16, bf16, fp32):
        h = norm(x) if pre-LN else x
        y = out(attention(qkv(h))) (+ x when residual)
        y = norm(y) if post-LN
    A query with no visible key gives zeros before the output projection (HF: uniform attention).

    Parameters (the checkpoint-mapping contract, nn.Linear [out, in] layout):
      qkv_weight [3*H*D, hidden] (rows q, then k, then v; head-major within each), qkv_bias [3*H*D]
      or None, out_weight [hidden, H*D], out_bias [hidden] or None, norm (EETLayerNorm child or
      None), t5_table [num_buckets, H] buffer (T5 relative position bias) or None.

    Construction:
      - `EETSelfAttention(qkv_weight, qkv_bias, out_weight, out_bias, *, num_heads, scale=None,
        norm=None, norm_position=None, residual=False, t5_table=None, t5_bidirectional=True,
        t5_max_distance=128, layer_idx=0)` takes the tensors as they are (no copy); head_dim is
        qkv_weight.shape[0] // (3 * num_heads); scale defaults to head_dim ** -0.5 (T5: 1.0);
      - `EETSelfAttention.empty(hidden_size, num_heads, head_dim=None, *, qkv_bias=True,
        out_bias=True, ..., t5_num_buckets=None, dtype, device)` allocates uninitialised parameters;
      - `EETSelfAttention.from_torch(module, dtype=None, device=None, *, causal=None)` copies a HF
        module (CLIPAttention, BertAttention, RobertaAttention, GPT2Attention, T5Attention,
        T5LayerSelfAttention, BartAttention). A causal module (GPT-2, a T5/BART decoder, or
        causal=True for CLIP text, which does not record it) comes back as EETSelfMaskedAttention.
    """

    def __init__(self, qkv_weight: torch.Tensor, qkv_bias: torch.Tensor | None, out_weight: torch.Tensor,
                 out_bias: torch.Tensor | None, *, num_heads: int, scale: float | None = None,
                 norm: EETLayerNorm | None = None, norm_position: str | None = None, residual: bool = False,
                 t5_table: torch.Tensor | None = None, t5_bidirectional: bool = True, t5_max_distance: int = 128,
                 layer_idx: int = 0):
        super().__init__()
        op = type(self).__name__
        if qkv_weight.dim() != 2 or qkv_weight.shape[0] % (3 * num_heads):
            raise ShapeError(f"{op}: qkv_weight must be [3 * num_heads * head_dim, hidden] with num_heads={num_heads}, "
                             f"got {list(qkv_weight.shape)}")
        head_dim = qkv_weight.shape[0] // (3 * num_heads)
        _check_weight(op, "qkv_bias", qkv_bias, (qkv_weight.shape[0],))
        check_same_dtype(qkv_weight=qkv_weight, qkv_bias=qkv_bias, out_weight=out_weight, out_bias=out_bias,
                         t5_table=t5_table)
        check_same_device(qkv_weight=qkv_weight, qkv_bias=qkv_bias, out_weight=out_weight, out_bias=out_bias,
                          t5_table=t5_table)
        self._setup(hidden_size=qkv_weight.shape[1], num_heads=num_heads, head_dim=head_dim, scale=scale, norm=norm,
                    norm_position=norm_position, residual=residual, t5_table=t5_table,
                    t5_bidirectional=t5_bidirectional, t5_max_distance=t5_max_distance, layer_idx=layer_idx)
        self.qkv_weight = as_param(qkv_weight)
        self.qkv_bias = as_param(qkv_bias)
        self._set_out(out_weight, out_bias)

    @classmethod
    def empty(cls, hidden_size: int, num_heads: int, head_dim: int | None = None, *, qkv_bias: bool = True,
              out_bias: bool = True, scale: float | None = None, norm: EETLayerNorm | None = None,
              norm_position: str | None = None, residual: bool = False, t5_num_buckets: int | None = None,
              t5_bidirectional: bool = True, t5_max_distance: int = 128, layer_idx: int = 0,
              dtype: torch.dtype = torch.float16, device="cuda"):
        head_dim = head_dim or hidden_size // num_heads
        inner = num_heads * head_dim
        alloc = dict(dtype=dtype, device=device)
        return cls(empty(3 * inner, hidden_size, **alloc), empty(3 * inner, **alloc) if qkv_bias else None,
                   empty(hidden_size, inner, **alloc), empty(hidden_size, **alloc) if out_bias else None,
                   num_heads=num_heads, scale=scale, norm=norm, norm_position=norm_position, residual=residual,
                   t5_table=empty(t5_num_buckets, num_heads, **alloc) if t5_num_buckets else None,
                   t5_bidirectional=t5_bidirectional, t5_max_distance=t5_max_distance, layer_idx=layer_idx)

    @classmethod
    def from_torch(cls, module: nn.Module, dtype: torch.dtype | None = None, device=None, *,
                   causal: bool | None = None):
        parts = hf_parts(module, cls.__name__, _SUPPORTED_SELF)
        if parts.cross:
            raise UnsupportedModelError(f"{cls.__name__}.from_torch: this {type(module).__name__} is a cross "
                                        "attention; lift it with EETCrossAttention.from_torch")
        if cls is EETSelfMaskedAttention and causal is False:
            raise UnsupportedModelError("EETSelfMaskedAttention.from_torch: causal=False asked of the causal op; "
                                        "use EETSelfAttention.from_torch for bidirectional attention")
        if cls is EETSelfAttention and (parts.causal if causal is None else causal):
            cls = EETSelfMaskedAttention
        dtype, device = module_placement(module, dtype, device)
        qkv_w = torch.cat([parts.q[0], parts.k[0], parts.v[0]])
        qkv_b = _cat_biases([parts.q, parts.k, parts.v])
        return cls(copy_of(qkv_w, dtype, device), copy_of(qkv_b, dtype, device), copy_of(parts.o[0], dtype, device),
                   copy_of(parts.o[1], dtype, device), **parts.op_kwargs(dtype, device))

    def _qkv(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v [B, L, H, D]: strided views of one GEMM's [B, L, 3, H, D] output."""
        batch, length, _ = hidden_states.shape
        h = self._normed_input(hidden_states)
        qkv = linear(h, self.qkv_weight, self.qkv_bias).view(batch, length, 3, self.num_heads, self.head_dim)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check_hidden("hidden_states", hidden_states, self.hidden_size)
        batch, length, _ = hidden_states.shape
        self._check_mask("attention_mask", attention_mask, batch, length)
        q, k, v = self._qkv(hidden_states)
        return self._project_out(self._attend(q, k, v, attention_mask, causal=False), hidden_states)


class EETSelfMaskedAttention(EETSelfAttention):
    """Causal multi-head self attention with an optional KV cache (GPT-2, CLIP text, decoders).

    forward(hidden_states [B, L, hidden], attention_mask=None, kv_cache=None) -> (out [B, L, hidden],
    kv_cache). Without a cache: causal attention over the L tokens. With a `KVCache`, the L new
    keys/values are appended to layer `layer_idx`'s buffers and the queries attend to all
    past + L keys (query i sees key j iff j <= past + i); attention_mask then covers past and
    current keys, [B, past + L]. The cache is updated in place and returned for convenience.
    Everything else (parameters, norm, residual, T5 bias, construction) is as in EETSelfAttention;
    from_torch always gives the causal op (it does not dispatch).
    """

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                kv_cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        self._check_hidden("hidden_states", hidden_states, self.hidden_size)
        batch, length, _ = hidden_states.shape
        past = kv_cache.length(self.layer_idx) if kv_cache is not None else 0
        # checked before the cache is touched, so a bad mask leaves the cache as it was
        self._check_mask("attention_mask", attention_mask, batch, past + length)
        q, k, v = self._qkv(hidden_states)
        if kv_cache is not None:
            k, v = kv_cache.append(self.layer_idx, k, v)
        out = self._project_out(self._attend(q, k, v, attention_mask, causal=True), hidden_states)
        return out, kv_cache

    def new_cache(self, num_layers: int, batch_size: int, max_len: int) -> KVCache:
        """A KVCache sized for this op's heads, dtype and device."""
        return KVCache(num_layers, batch_size, max_len, self.num_heads, self.head_dim, dtype=self.dtype,
                       device=self.device)


class EETCrossAttention(_Attention):
    """Decoder-to-encoder multi-head attention (T5, BART): queries from the decoder states, keys
    and values from the encoder states, no causal mask.

    forward(hidden_states [B, Lq, hidden], encoder_hidden_states [B, Lk, encoder_hidden] or None,
    encoder_attention_mask=None [B, Lk] 1/0, kv_cache=None) -> [B, Lq, hidden]:
        h = norm(x) if pre-LN else x
        y = out(attention(q(h), kv(encoder_hidden_states))) (+ x when residual); norm(y) if post-LN.
    The encoder keys/values do not change while decoding: with a `KVCache`, the first call
    stores them as the cache's cross entry for `layer_idx` ([B, Lk, 2, H, D]) and later calls reuse them
    (encoder_hidden_states may then be None). `project_kv(encoder_hidden_states)` gives the same
    tensor for callers that keep it themselves (`encoder_kv=`).

    Parameters (the checkpoint-mapping contract, nn.Linear [out, in] layout):
      q_weight [H*D, hidden], q_bias [H*D] or None, kv_weight [2*H*D, encoder_hidden] (k rows then
      v rows), kv_bias [2*H*D] or None, out_weight [hidden, H*D], out_bias [hidden] or None,
      norm (EETLayerNorm or None), t5_table [num_buckets, H] buffer or None.

    Construction: `EETCrossAttention(q_weight, q_bias, kv_weight, kv_bias, out_weight, out_bias, *,
    num_heads, scale=None, norm=None, norm_position=None, residual=False, t5_table=None,
    t5_bidirectional=True, t5_max_distance=128, layer_idx=0)` (no copy);
    `EETCrossAttention.empty(hidden_size, num_heads, head_dim=None, *, encoder_hidden_size=None,
    q_bias=True, kv_bias=True, out_bias=True, ..., dtype, device)`;
    `EETCrossAttention.from_torch(module, dtype=None, device=None)` for BartAttention, T5Attention,
    T5LayerCrossAttention, BertAttention(is_cross_attention=True), GPT2Attention(is_cross_attention=True).
    """

    def __init__(self, q_weight: torch.Tensor, q_bias: torch.Tensor | None, kv_weight: torch.Tensor,
                 kv_bias: torch.Tensor | None, out_weight: torch.Tensor, out_bias: torch.Tensor | None, *,
                 num_heads: int, scale: float | None = None, norm: EETLayerNorm | None = None,
                 norm_position: str | None = None, residual: bool = False, t5_table: torch.Tensor | None = None,
                 t5_bidirectional: bool = True, t5_max_distance: int = 128, layer_idx: int = 0):
        super().__init__()
        op = type(self).__name__
        if q_weight.dim() != 2 or q_weight.shape[0] % num_heads:
            raise ShapeError(f"{op}: q_weight must be [num_heads * head_dim, hidden] with num_heads={num_heads}, "
                             f"got {list(q_weight.shape)}")
        inner = q_weight.shape[0]
        if kv_weight.dim() != 2 or kv_weight.shape[0] != 2 * inner:
            raise ShapeError(f"{op}: kv_weight must be [2 * {inner}, encoder_hidden], got {list(kv_weight.shape)}")
        _check_weight(op, "q_bias", q_bias, (inner,))
        _check_weight(op, "kv_bias", kv_bias, (2 * inner,))
        tensors = dict(q_weight=q_weight, q_bias=q_bias, kv_weight=kv_weight, kv_bias=kv_bias, out_weight=out_weight,
                       out_bias=out_bias, t5_table=t5_table)
        check_same_dtype(**tensors)
        check_same_device(**tensors)
        self._setup(hidden_size=q_weight.shape[1], num_heads=num_heads, head_dim=inner // num_heads, scale=scale,
                    norm=norm, norm_position=norm_position, residual=residual, t5_table=t5_table,
                    t5_bidirectional=t5_bidirectional, t5_max_distance=t5_max_distance, layer_idx=layer_idx)
        self.encoder_hidden_size = kv_weight.shape[1]
        self.q_weight, self.q_bias = as_param(q_weight), as_param(q_bias)
        self.kv_weight, self.kv_bias = as_param(kv_weight), as_param(kv_bias)
        self._set_out(out_weight, out_bias)

    @classmethod
    def empty(cls, hidden_size: int, num_heads: int, head_dim: int | None = None, *,
              encoder_hidden_size: int | None = None, q_bias: bool = True, kv_bias: bool = True,
              out_bias: bool = True, scale: float | None = None, norm: EETLayerNorm | None = None,
              norm_position: str | None = None, residual: bool = False, t5_num_buckets: int | None = None,
              t5_bidirectional: bool = True, t5_max_distance: int = 128, layer_idx: int = 0,
              dtype: torch.dtype = torch.float16, device="cuda") -> EETCrossAttention:
        head_dim = head_dim or hidden_size // num_heads
        inner = num_heads * head_dim
        alloc = dict(dtype=dtype, device=device)
        return cls(empty(inner, hidden_size, **alloc), empty(inner, **alloc) if q_bias else None,
                   empty(2 * inner, encoder_hidden_size or hidden_size, **alloc),
                   empty(2 * inner, **alloc) if kv_bias else None,
                   empty(hidden_size, inner, **alloc), empty(hidden_size, **alloc) if out_bias else None,
                   num_heads=num_heads, scale=scale, norm=norm, norm_position=norm_position, residual=residual,
                   t5_table=empty(t5_num_buckets, num_heads, **alloc) if t5_num_buckets else None,
                   t5_bidirectional=t5_bidirectional, t5_max_distance=t5_max_distance, layer_idx=layer_idx)

    @classmethod
    def from_torch(cls, module: nn.Module, dtype: torch.dtype | None = None, device=None) -> EETCrossAttention:
        parts = hf_parts(module, cls.__name__, _SUPPORTED_CROSS)
        if parts.cross is False:
            raise UnsupportedModelError(f"EETCrossAttention.from_torch: this {type(module).__name__} is a self "
                                        "attention; lift it with EETSelfAttention.from_torch")
        dtype, device = module_placement(module, dtype, device)
        kv_w = torch.cat([parts.k[0], parts.v[0]])
        kv_b = _cat_biases([parts.k, parts.v])
        kwargs = parts.op_kwargs(dtype, device)
        # cross attention has no relative positions: HF T5 gives EncDecAttention no bias table
        kwargs["t5_table"] = None
        return cls(copy_of(parts.q[0], dtype, device), copy_of(parts.q[1], dtype, device), copy_of(kv_w, dtype, device),
                   copy_of(kv_b, dtype, device), copy_of(parts.o[0], dtype, device), copy_of(parts.o[1], dtype, device),
                   **kwargs)

    def project_kv(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """[B, Lk, encoder_hidden] -> the encoder keys and values, [B, Lk, 2, H, D]."""
        self._check_hidden("encoder_hidden_states", encoder_hidden_states, self.encoder_hidden_size)
        batch, length, _ = encoder_hidden_states.shape
        kv = linear(encoder_hidden_states, self.kv_weight, self.kv_bias)
        return kv.view(batch, length, 2, self.num_heads, self.head_dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, kv_cache: KVCache | None = None, *,
                encoder_kv: torch.Tensor | None = None) -> torch.Tensor:
        self._check_hidden("hidden_states", hidden_states, self.hidden_size)
        batch, length, _ = hidden_states.shape
        if encoder_kv is None and kv_cache is not None:
            encoder_kv = kv_cache.get_cross(self.layer_idx)
        fresh = encoder_kv is None
        if fresh:
            if encoder_hidden_states is None:
                raise ValueError("EETCrossAttention: pass encoder_hidden_states (or encoder_kv, or a kv_cache "
                                 "already filled by a first call)")
            encoder_kv = self.project_kv(encoder_hidden_states)
        if encoder_kv.dim() != 5 or encoder_kv.shape[0] != batch \
                or tuple(encoder_kv.shape[2:]) != (2, self.num_heads, self.head_dim):
            raise ShapeError(f"EETCrossAttention: the encoder keys/values must be [{batch}, Lk, 2, {self.num_heads}, "
                             f"{self.head_dim}], got {list(encoder_kv.shape)}; give encoder_hidden_states of the "
                             "decoder's batch size, or encoder_kv as project_kv returns it")
        if fresh and kv_cache is not None:
            kv_cache.set_cross(self.layer_idx, encoder_kv)
        self._check_mask("encoder_attention_mask", encoder_attention_mask, batch, encoder_kv.shape[1])
        h = self._normed_input(hidden_states)
        q = linear(h, self.q_weight, self.q_bias).view(batch, length, self.num_heads, self.head_dim)
        ctx = self._attend(q, encoder_kv[:, :, 0], encoder_kv[:, :, 1], encoder_attention_mask, causal=False)
        return self._project_out(ctx, hidden_states)


@dataclasses.dataclass
class _HFParts:
    """A HF attention module taken apart: (weight [out, in], bias or None) per projection."""

    q: tuple
    k: tuple
    v: tuple
    o: tuple
    num_heads: int
    scale: float
    causal: bool | None = None  # what the module records; None when it does not say
    cross: bool | None = None  # True/False when the module records it
    norm: nn.Module | None = None
    norm_position: str | None = None
    residual: bool = False
    t5_table: torch.Tensor | None = None
    t5_bidirectional: bool = True
    t5_max_distance: int = 128
    layer_idx: int = 0

    def op_kwargs(self, dtype, device) -> dict:
        return dict(num_heads=self.num_heads, scale=self.scale,
                    norm=None if self.norm is None else EETLayerNorm.from_torch(self.norm, dtype, device),
                    norm_position=self.norm_position, residual=self.residual,
                    t5_table=copy_of(self.t5_table, dtype, device), t5_bidirectional=self.t5_bidirectional,
                    t5_max_distance=self.t5_max_distance, layer_idx=self.layer_idx)


def _linear_parts(m: nn.Module) -> tuple:
    return m.weight, m.bias


def _from_proj(m: nn.Module) -> _HFParts:
    """CLIPAttention / BartAttention: q_proj, k_proj, v_proj, out_proj."""
    scale = getattr(m, "scaling", getattr(m, "scale", m.head_dim ** -0.5))
    return _HFParts(_linear_parts(m.q_proj), _linear_parts(m.k_proj), _linear_parts(m.v_proj),
                    _linear_parts(m.out_proj), m.num_heads, scale, causal=bool(getattr(m, "is_causal", False)),
                    layer_idx=getattr(m, "layer_idx", None) or 0)


def _from_bert(m: nn.Module) -> _HFParts:
    """BertAttention: self (query/key/value) + output (dense, LayerNorm): LN(x + dense(attn))."""
    s = m.self
    if getattr(s, "position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModelError(f"{type(m).__name__}: position_embedding_type="
                                    f"{s.position_embedding_type!r} is not supported, only 'absolute'")
    cross = bool(getattr(m, "is_cross_attention", False)) or "Cross" in type(s).__name__
    return _HFParts(_linear_parts(s.query), _linear_parts(s.key), _linear_parts(s.value),
                    _linear_parts(m.output.dense), s.num_attention_heads,
                    getattr(s, "scaling", s.attention_head_size ** -0.5),
                    causal=bool(getattr(s, "is_causal", False)), cross=cross, norm=m.output.LayerNorm,
                    norm_position="post", residual=True, layer_idx=getattr(s, "layer_idx", None) or 0)


def _from_gpt2(m: nn.Module) -> _HFParts:
    """GPT2Attention: Conv1D weights are [in, out], transposed here; c_attn fuses q, k, v."""
    e = m.embed_dim
    scale = m.head_dim ** -0.5 if m.scale_attn_weights else 1.0
    layer_idx = getattr(m, "layer_idx", None) or 0
    if m.scale_attn_by_inverse_layer_idx:
        scale /= float(layer_idx + 1)
    w, b = m.c_attn.weight.t(), m.c_attn.bias
    if m.is_cross_attention:
        q = (m.q_attn.weight.t(), m.q_attn.bias)
        k, v = (w[:e], b[:e]), (w[e:], b[e:])
    else:
        q, k, v = (w[:e], b[:e]), (w[e:2 * e], b[e:2 * e]), (w[2 * e:], b[2 * e:])
    return _HFParts(q, k, v, (m.c_proj.weight.t(), m.c_proj.bias), m.num_heads, scale,
                    causal=not m.is_cross_attention, cross=bool(m.is_cross_attention), layer_idx=layer_idx)


def _from_t5(m: nn.Module) -> _HFParts:
    """T5Attention: no biases, no scaling, relative position bias table on the layers that have one."""
    table = m.relative_attention_bias.weight if m.has_relative_attention_bias else None
    return _HFParts(_linear_parts(m.q), _linear_parts(m.k), _linear_parts(m.v), _linear_parts(m.o), m.n_heads,
                    getattr(m, "scaling", 1.0), causal=bool(m.is_decoder), t5_table=table,
                    t5_bidirectional=not m.is_decoder, t5_max_distance=m.relative_attention_max_distance,
                    layer_idx=getattr(m, "layer_idx", None) or 0)


def _from_t5_self_layer(m: nn.Module) -> _HFParts:
    """T5LayerSelfAttention: x + SelfAttention(RMSNorm(x))."""
    parts = _from_t5(m.SelfAttention)
    return dataclasses.replace(parts, norm=m.layer_norm, norm_position="pre", residual=True, cross=False)


def _from_t5_cross_layer(m: nn.Module) -> _HFParts:
    """T5LayerCrossAttention: x + EncDecAttention(RMSNorm(x), encoder states)."""
    parts = _from_t5(m.EncDecAttention)
    return dataclasses.replace(parts, norm=m.layer_norm, norm_position="pre", residual=True, cross=True,
                               causal=False)


_HF_HANDLERS = {
    "CLIPAttention": _from_proj,
    "BartAttention": _from_proj,
    "BertAttention": _from_bert,
    "RobertaAttention": _from_bert,
    "GPT2Attention": _from_gpt2,
    "T5Attention": _from_t5,
    "T5LayerSelfAttention": _from_t5_self_layer,
    "T5LayerCrossAttention": _from_t5_cross_layer,
}


HF_CLASSES = frozenset(_HF_HANDLERS)
"""Names of the HF attention classes (and their subclasses) the ops lift."""


def hf_parts(module: nn.Module, op: str, supported: str = _SUPPORTED_SELF) -> _HFParts:
    """`module` taken apart, or UnsupportedModelError naming `op` and what is supported."""
    handler = next((_HF_HANDLERS[c.__name__] for c in type(module).__mro__ if c.__name__ in _HF_HANDLERS), None)
    if handler is None:
        raise unsupported(op, module, supported)
    parts = handler(module)
    inner = parts.q[0].shape[0]
    if inner % parts.num_heads or parts.k[0].shape[0] != inner or parts.v[0].shape[0] != inner:
        raise UnsupportedModelError(
            f"{op}.from_torch: {type(module).__name__} has q/k/v projections of {parts.q[0].shape[0]}/"
            f"{parts.k[0].shape[0]}/{parts.v[0].shape[0]} rows for {parts.num_heads} heads; only equal-size "
            "multi-head attention is supported (no grouped-query attention)"
        )
    return parts


def _cat_biases(projections: list[tuple]) -> torch.Tensor | None:
    """Concatenated biases of the fused projections; a missing one among present ones is zeros."""
    biases = [b for _, b in projections]
    if all(b is None for b in biases):
        return None
    like = next(b for b in biases if b is not None)
    return torch.cat([b if b is not None else like.new_zeros(w.shape[0]) for w, b in projections])


def _check_weight(op: str, name: str, t: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if t is not None and tuple(t.shape) != shape:
        raise ShapeError(f"{op}: {name} must have shape {list(shape)}, got {list(t.shape)}")
