"""Test skeletons with the ops' parameter names, and tiny HuggingFace checkpoints.

The skeletons stand in for eet_triton/models: plain nn.Modules holding NaN-filled tensors under
the exact attribute names of the ops (EETSelfAttention.qkv_weight, EETFeedforward.up_weight, ...)
and the model-level names of docs/MAPS.md, so a tensor the loader forgets stays NaN.
"""

from __future__ import annotations

import torch
from torch import nn


def nan_param(*shape, dtype=torch.float32, device="cpu") -> nn.Parameter:
    return nn.Parameter(torch.full(shape, float("nan"), dtype=dtype, device=device), requires_grad=False)


class Alloc:
    """Allocates NaN parameters in one dtype on one device ("meta": no memory)."""

    def __init__(self, dtype=torch.float32, device="cpu"):
        self.dtype, self.device = dtype, device

    def __call__(self, *shape) -> nn.Parameter:
        if self.device == "meta":
            return nn.Parameter(torch.empty(shape, dtype=self.dtype, device="meta"), requires_grad=False)
        return nan_param(*shape, dtype=self.dtype, device=self.device)


class Norm(nn.Module):
    def __init__(self, a: Alloc, n: int, bias: bool = True):
        super().__init__()
        self.weight = a(n)
        self.bias = a(n) if bias else None


class SelfAttention(nn.Module):
    def __init__(self, a: Alloc, hidden: int, heads: int, head_dim: int, *, bias=True, out_bias=True,
                 norm_bias=True, t5_buckets: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.qkv_weight, self.qkv_bias = a(3 * inner, hidden), a(3 * inner) if bias else None
        self.out_weight, self.out_bias = a(hidden, inner), a(hidden) if out_bias else None
        self.norm = Norm(a, hidden, norm_bias)
        # the ops hold the T5 table as a (persistent) buffer
        self.register_buffer("t5_table", a(t5_buckets, heads).data if t5_buckets else None)


class CrossAttention(nn.Module):
    def __init__(self, a: Alloc, hidden: int, heads: int, head_dim: int, *, bias=True, norm_bias=True):
        super().__init__()
        inner = heads * head_dim
        self.q_weight, self.q_bias = a(inner, hidden), a(inner) if bias else None
        self.kv_weight, self.kv_bias = a(2 * inner, hidden), a(2 * inner) if bias else None
        self.out_weight, self.out_bias = a(hidden, inner), a(hidden) if bias else None
        self.norm = Norm(a, hidden, norm_bias)
        self.t5_table = None


class Feedforward(nn.Module):
    def __init__(self, a: Alloc, hidden: int, ffn: int, *, bias=True, gated=False, norm_bias=True):
        super().__init__()
        self.up_weight, self.up_bias = a(ffn, hidden), a(ffn) if bias else None
        self.gate_weight, self.gate_bias = (a(ffn, hidden) if gated else None), None
        self.down_weight, self.down_bias = a(hidden, ffn), a(hidden) if bias else None
        self.norm = Norm(a, hidden, norm_bias)


class BertEmbedding(nn.Module):
    def __init__(self, a: Alloc, vocab: int, width: int, positions: int | None, types: int | None, norm=True,
                 norm_bias=True):
        super().__init__()
        self.word_weight = a(vocab, width)
        self.position_weight = a(positions, width) if positions else None
        self.type_weight = a(types, width) if types else None
        self.norm = Norm(a, width, norm_bias) if norm else None


class VisionEmbedding(nn.Module):
    def __init__(self, a: Alloc, width: int, channels: int, patch: int, tokens: int, patch_bias: bool):
        super().__init__()
        self.patch_weight = a(width, channels, patch, patch)
        self.patch_bias = a(width) if patch_bias else None
        self.class_embedding = a(width)
        self.position_weight = a(tokens, width)


class Linear(nn.Module):
    def __init__(self, a: Alloc, out: int, inp: int, bias=True):
        super().__init__()
        self.weight = a(out, inp)
        self.bias = a(out) if bias else None


class Layer(nn.Module):
    def __init__(self, attention, ffn, cross_attention=None):
        super().__init__()
        self.attention, self.ffn = attention, ffn
        if cross_attention is not None:
            self.cross_attention = cross_attention


class Model(nn.Module):
    """A container taking its children as keyword arguments (embeddings=..., layers=..., ...)."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)


def bert_skeleton(cfg, a: Alloc, *, pooler=True, classifier: int | None = None, lm_head=False) -> Model:
    h, heads = cfg.hidden_size, cfg.num_attention_heads
    layers = nn.ModuleList(
        Layer(SelfAttention(a, h, heads, h // heads), Feedforward(a, h, cfg.intermediate_size))
        for _ in range(cfg.num_hidden_layers))
    children = dict(embeddings=BertEmbedding(a, cfg.vocab_size, h, cfg.max_position_embeddings, cfg.type_vocab_size),
                    layers=layers)
    if pooler:
        children["pooler"] = Linear(a, h, h)
    if classifier:
        children["classifier"] = Linear(a, classifier, h)
    model = Model(**children)
    if lm_head:
        model.lm_head = Model(dense=Linear(a, h, h), norm=Norm(a, h))
        model.lm_head.weight = model.embeddings.word_weight  # tied, as the models will tie it
        model.lm_head.bias = a(cfg.vocab_size)
    return model


def tiny_bert_config(**kw):
    from transformers import BertConfig

    args = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=99,
                max_position_embeddings=64)
    args.update(kw)
    return BertConfig(**args)
