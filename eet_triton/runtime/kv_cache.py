"""KVCache: preallocated key/value buffers for incremental (autoregressive) decoding.

Each layer owns k and v buffers of shape [batch, max_len, num_heads, head_dim], allocated
once. A step appends its L new keys/values at position `length(layer)` and the attention
kernel reads `k[:, :length]` as a strided view: nothing is reallocated or copied whole, and
the length is a host int, so no step ever waits on the GPU.

Cross attention (decoder -> encoder) keys/values do not change between steps: the first
step stores the projected encoder states per layer (`cross_kv`), later steps reuse them.
"""

from __future__ import annotations

import torch

from eet_triton.errors import DeviceError, DTypeError, SequenceTooLongError, ShapeError


class KVCache:
    """Per-layer k/v buffers [batch, max_len, num_heads, head_dim] plus host-int lengths.

    Attributes:
      k, v: lists (one per layer) of [batch, max_len, num_heads, head_dim] tensors.
      lengths: list of host ints, tokens held by each layer.
      cross_kv: list (one per layer) of [batch, enc_len, 2, num_heads, head_dim] or None.

    `EETSelfMaskedAttention(..., kv_cache=cache)` appends through `append(layer_idx, k, v)`;
    `EETCrossAttention(..., kv_cache=cache)` fills and reuses `cross_kv[layer_idx]` through
    `set_cross` / `get_cross`.
    """

    def __init__(self, num_layers: int, batch_size: int, max_len: int, num_heads: int, head_dim: int, *,
                 dtype: torch.dtype = torch.float16, device="cuda"):
        if min(num_layers, batch_size, max_len, num_heads, head_dim) < 1:
            raise ShapeError(
                f"KVCache: sizes must be positive, got num_layers={num_layers}, batch_size={batch_size}, "
                f"max_len={max_len}, num_heads={num_heads}, head_dim={head_dim}"
            )
        shape = (batch_size, max_len, num_heads, head_dim)
        self.k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.lengths = [0] * num_layers
        self.cross_kv: list[torch.Tensor | None] = [None] * num_layers
        self.batch_size, self.max_len, self.num_heads, self.head_dim = batch_size, max_len, num_heads, head_dim
        self.dtype, self.device = dtype, self.k[0].device

    @property
    def num_layers(self) -> int:
        return len(self.k)

    @property
    def seq_length(self) -> int:
        """Tokens held (by layer 0, which every step reaches first): HF's get_seq_length()."""
        return self.lengths[0]

    def length(self, layer: int) -> int:
        self._check_layer(layer)
        return self.lengths[layer]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [batch, L, num_heads, head_dim] after the layer's past tokens; returns
        views [batch, past + L, num_heads, head_dim] of everything the layer now holds."""
        self._check_layer(layer)
        for name, t in (("k", k), ("v", v)):
            if t.dim() != 4 or (t.shape[0], t.shape[2], t.shape[3]) != (self.batch_size, self.num_heads, self.head_dim):
                raise ShapeError(
                    f"KVCache.append: {name} must be [batch={self.batch_size}, L, heads={self.num_heads}, "
                    f"head_dim={self.head_dim}], got {list(t.shape)}; build the cache with the model's sizes"
                )
            if t.dtype != self.dtype:
                raise DTypeError(f"KVCache.append: {name} is {t.dtype}, the cache holds {self.dtype}; build it with dtype={t.dtype}")
            if t.device != self.device:
                raise DeviceError(f"KVCache.append: {name} is on {t.device}, the cache on {self.device}; build it on {t.device}")
        if k.shape[1] != v.shape[1]:
            raise ShapeError(f"KVCache.append: k has {k.shape[1]} tokens but v has {v.shape[1]}")
        start = self.lengths[layer]
        end = start + k.shape[1]
        if end > self.max_len:
            raise SequenceTooLongError(
                f"KVCache: layer {layer} would hold {end} tokens but max_len is {self.max_len}; "
                "build the cache with a larger max_len"
            )
        self.k[layer][:, start:end].copy_(k)
        self.v[layer][:, start:end].copy_(v)
        self.lengths[layer] = end
        return self.k[layer][:, :end], self.v[layer][:, :end]

    def get_cross(self, layer: int) -> torch.Tensor | None:
        """The layer's stored cross-attention keys/values [batch, enc_len, 2, heads, head_dim], or None."""
        self._check_layer(layer)
        return self.cross_kv[layer]

    def set_cross(self, layer: int, kv: torch.Tensor) -> None:
        """Keep the layer's projected encoder keys/values for the following decoding steps."""
        self._check_layer(layer)
        if kv.dim() != 5 or kv.shape[0] != self.batch_size or tuple(kv.shape[2:]) != (2, self.num_heads, self.head_dim):
            raise ShapeError(f"KVCache.set_cross: expected [batch={self.batch_size}, enc_len, 2, heads={self.num_heads}, "
                             f"head_dim={self.head_dim}], got {list(kv.shape)}")
        self.cross_kv[layer] = kv

    def reset(self) -> None:
        """Forget every token and the cross-attention states (buffers are kept)."""
        self.lengths = [0] * self.num_layers
        self.cross_kv = [None] * self.num_layers

    def _check_layer(self, layer: int) -> None:
        if not 0 <= layer < self.num_layers:
            raise ShapeError(f"KVCache: layer index {layer} out of range for a cache of {self.num_layers} layers; "
                             "build it with num_layers = the model's layer count")

    def __repr__(self) -> str:
        return (f"KVCache(num_layers={self.num_layers}, batch_size={self.batch_size}, max_len={self.max_len}, "
                f"num_heads={self.num_heads}, head_dim={self.head_dim}, dtype={self.dtype}, device={self.device}, "
                f"lengths={self.lengths})")
