"""The kernel comparisons as pytest-benchmark tests (GPU only), a representative subset of
bench_linear.py / bench_attention.py / bench_layernorm.py (which print the full tables):

    PYTHONPATH=. python3 -m pytest bench/test_bench_kernels.py --benchmark-columns=median,iqr,rounds

Each round launches the call 20 times and synchronises once, after warm-up calls that hold
autotuning and compilation; fp16, random data; per case, ours and torch's in the same run.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from eet_triton.kernels.attention import attention
from eet_triton.kernels.layernorm import layer_norm
from eet_triton.kernels.linear import linear

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CALLS_PER_ROUND = 20


def run(benchmark, fn):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()

    def many():
        for _ in range(CALLS_PER_ROUND):
            fn()
        torch.cuda.synchronize()

    benchmark.pedantic(many, rounds=20, warmup_rounds=1)


def randn(*shape):
    return torch.randn(*shape, device="cuda", dtype=torch.float16)


@pytest.mark.parametrize("contender", ["eet_triton", "cublas"])
@pytest.mark.parametrize("m,k,n", [(6400, 768, 3072), (6400, 3072, 768), (9856, 768, 2304)])
def test_linear_gelu(benchmark, m, k, n, contender):
    x, w, b = randn(m, k), randn(n, k) / k**0.5, randn(n)
    fn = (lambda: linear(x, w, b, activation="gelu")) if contender == "eet_triton" else (
        lambda: F.gelu(F.linear(x, w, b)))
    run(benchmark, fn)


@pytest.mark.parametrize("contender", ["eet_triton", "sdpa_flash"])
@pytest.mark.parametrize("seq", [1024, 4096])
@pytest.mark.parametrize("causal", [False, True])
def test_attention(benchmark, seq, causal, contender):
    b, h, d = 8, 12, 64
    if contender == "eet_triton":
        qkv = randn(b, seq, 3, h, d)
        q, k, v = qkv.unbind(2)
        fn = lambda: attention(q, k, v, causal=causal)  # noqa: E731
    else:
        q, k, v = (randn(b, h, seq, d) for _ in range(3))

        def fn():
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    run(benchmark, fn)


@pytest.mark.parametrize("contender", ["eet_triton", "torch"])
@pytest.mark.parametrize("n", [768, 4096])
def test_layer_norm(benchmark, n, contender):
    x, w, bias = randn(16384, n), randn(n), randn(n)
    fn = (lambda: layer_norm(x, w, bias, eps=1e-5)) if contender == "eet_triton" else (
        lambda: F.layer_norm(x, (n,), w, bias, 1e-5))
    run(benchmark, fn)
