"""KVCache: appends land after each layer's past tokens, reads are views of the preallocated
buffers, and misuse raises before anything is written."""

from __future__ import annotations

import pytest
import torch

from eet_triton.errors import DeviceError, DTypeError, SequenceTooLongError, ShapeError
from eet_triton.runtime import KVCache


def test_append_stores_and_returns_views(device):
    cache = KVCache(2, 3, 8, 2, 20, dtype=torch.float16, device=device)
    k1, v1 = (torch.randn(3, 5, 2, 20, device=device).half() for _ in range(2))
    k2, v2 = (torch.randn(3, 1, 2, 20, device=device).half() for _ in range(2))
    keys, values = cache.append(1, k1, v1)
    assert keys.shape == (3, 5, 2, 20) and cache.length(1) == 5 and cache.length(0) == 0
    keys, values = cache.append(1, k2, v2)
    assert torch.equal(keys, torch.cat([k1, k2], 1)) and torch.equal(values, torch.cat([v1, v2], 1))
    assert keys.data_ptr() == cache.k[1].data_ptr(), "reads must be views of the buffer, not copies"
    assert cache.seq_length == 0 and cache.lengths == [0, 6]
    cross = torch.randn(3, 9, 2, 2, 20, device=device).half()
    cache.set_cross(0, cross)
    assert cache.get_cross(0) is cross and cache.get_cross(1) is None
    with pytest.raises(ShapeError, match="set_cross"):
        cache.set_cross(1, cross[:2])
    cache.reset()
    assert cache.lengths == [0, 0] and cache.cross_kv == [None, None]


def test_misuse_raises_and_writes_nothing(device):
    cache = KVCache(1, 2, 4, 2, 16, dtype=torch.float32, device=device)
    k = torch.randn(2, 3, 2, 16, device=device)
    cache.append(0, k, k)
    with pytest.raises(SequenceTooLongError, match="max_len is 4"):
        cache.append(0, k, k)
    with pytest.raises(ShapeError, match="heads=2"):
        cache.append(0, torch.randn(2, 1, 3, 16, device=device), torch.randn(2, 1, 3, 16, device=device))
    with pytest.raises(ShapeError, match="k has 1 tokens but v has 0"):
        cache.append(0, k[:, :1], k[:, :0])
    with pytest.raises(DTypeError, match="float16"):
        cache.append(0, k[:, :1].half(), k[:, :1].half())
    with pytest.raises(ShapeError, match="out of range"):
        cache.append(1, k[:, :1], k[:, :1])
    with pytest.raises(ShapeError, match="positive"):
        KVCache(1, 0, 4, 2, 16, dtype=torch.float32, device=device)
    if device == "cuda":
        with pytest.raises(DeviceError):
            cache.append(0, k[:, :1].cpu(), k[:, :1].cpu())
    assert cache.length(0) == 3
