"""layer_norm against a float64 torch reference (F.layer_norm; T5LayerNorm's formula for RMS)."""

import pytest
import torch
import torch.nn.functional as F

from eet_triton.errors import DeviceError, DTypeError, ShapeError
from eet_triton.kernels.layernorm import l2_normalize, layer_norm
from tests.oracle import assert_oracle, nan_like

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
EPS = 1e-5


def reference(x, weight, bias, rms, eps=EPS):
    """The norm in x's dtype, statistics as torch / transformers compute them there. Called on
    float64 inputs it is the reference; on low-dtype inputs, the oracle's baseline."""
    n = x.shape[-1]
    if not rms:
        return F.layer_norm(x, (n,), weight, bias, eps)
    # transformers' T5LayerNorm: fp32 (or wider) statistics, scaled value rounded to x's dtype before the weight
    xs = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    y = (xs * torch.rsqrt(xs.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


def make(shape, dtype, device, affine="both"):
    n = shape[-1]
    # an offset mean and a non-unit spread, so centring and scaling both matter
    x = (torch.randn(shape, device=device) * 1.7 + 0.6).to(dtype)
    weight = (torch.randn(n, device=device) * 0.5 + 1).to(dtype) if affine in ("both", "weight") else None
    bias = torch.randn(n, device=device).to(dtype) if affine in ("both", "bias") else None
    return x, weight, bias


def f64(t):
    return None if t is None else t.double()


def check(x, weight, bias, rms, **kw):
    """Run twice into NaN-poisoned buffers; both runs must agree bit for bit and meet the oracle."""
    y1 = layer_norm(x, weight, bias, rms=rms, out=nan_like(x), **kw)
    y2 = layer_norm(x, weight, bias, rms=rms, out=nan_like(x), **kw)
    assert torch.equal(y1, y2), "two runs differ: a race or an unwritten element"
    ref = reference(x.double(), f64(weight), f64(bias), rms)
    assert_oracle(y1, ref, reference(x, weight, bias, rms), what="y")
    return y1


@pytest.mark.parametrize("rows,affine", [((1,), "both"), ((7,), "weight"), ((7, 11), "none"), ((77,), "bias")])
@pytest.mark.parametrize("n", [384, 768, 100])
@pytest.mark.parametrize("rms", [False, True], ids=["ln", "rms"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_layer_norm(rows, affine, n, rms, dtype, device):
    x, weight, bias = make((*rows, n), dtype, device, affine)
    y = check(x, weight, bias, rms)
    assert y.dtype == dtype and y.shape == x.shape


@pytest.mark.parametrize("n", [768, 100])
@pytest.mark.parametrize("rms", [False, True], ids=["ln", "rms"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_residual(n, rms, dtype, device):
    x, weight, bias = make((3, 7, n), dtype, device)
    residual = torch.randn_like(x)
    outs = [layer_norm(x, weight, bias, rms=rms, residual=residual, out=nan_like(x), residual_out=nan_like(x))
            for _ in range(2)]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1]), "two runs differ"
    y, s = outs[0]
    s_ref = x.double() + residual.double()
    assert_oracle(s, s_ref, x + residual, what="s")
    ref = reference(s_ref, f64(weight), f64(bias), rms)
    assert_oracle(y, ref, reference(x + residual, weight, bias, rms), what="y")


def test_fused_residual_in_place(device):
    """A post-LN block updating its residual stream in place: residual_out=residual, out=x."""
    x, weight, bias = make((5, 96), torch.float16, device)
    residual = torch.randn_like(x)
    s_ref = x.double() + residual.double()
    y_ref = reference(s_ref, f64(weight), f64(bias), False)
    baseline = reference(x + residual, weight, bias, False)
    y, s = layer_norm(x, weight, bias, residual=residual, out=x, residual_out=residual)
    assert y.data_ptr() == x.data_ptr() and s.data_ptr() == residual.data_ptr()
    assert_oracle(s, s_ref, baseline=s_ref.half(), what="s")
    assert_oracle(y, y_ref, baseline, what="y")


def test_fused_residual_allocates_sum(device):
    x, weight, bias = make((4, 100), torch.float32, device)
    residual = torch.randn_like(x)
    y, s = layer_norm(x, weight, bias, residual=residual)
    assert s.data_ptr() not in (x.data_ptr(), residual.data_ptr())
    assert_oracle(s, x.double() + residual.double(), x + residual, what="s")
    assert_oracle(y, reference(s.double(), weight.double(), bias.double(), False), reference(s, weight, bias, False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_strided_rows(dtype, device):
    """Views whose rows are not packed: a [B, L] window of a wider tensor (misaligned start), a
    strided output window, and the first-token slice hidden[:, 0]."""
    base = torch.randn(3, 9, 130, device=device).to(dtype)
    x = base[:, 1:8, 3:103]
    residual = torch.randn(3, 7, 100, device=device).to(dtype).transpose(0, 1).contiguous().transpose(0, 1)
    weight, bias = make((100,), dtype, device)[1:]
    out_base = torch.full((3, 8, 120), float("nan"), device=device, dtype=dtype)
    y, s = layer_norm(x, weight, bias, residual=residual, out=out_base[:, :7, 5:105])
    s_ref = x.double() + residual.double()
    assert_oracle(s, s_ref, x + residual, what="s")
    assert_oracle(y, reference(s_ref, weight.double(), bias.double(), False),
                  reference(x + residual, weight, bias, False), what="y")
    assert torch.isnan(out_base[:, 7]).all() and torch.isnan(out_base[..., :5]).all(), "wrote outside the view"

    first = base[:, 0, :77]
    check(first, weight[:77], bias[:77], rms=False)

    four_d = torch.randn(2, 3, 5, 64, device=device).to(dtype)[:, :, 1:4, :50]
    check(four_d, weight[:50], None, rms=True)


@pytest.mark.parametrize("shape", [(1, 512), (7, 100), (3, 5, 768)])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_l2_normalize(shape, dtype, device):
    """CLIP's unit embeddings: against float64 x / ||x||, beside the fp32-norm formula in x's dtype."""
    x = make(shape, dtype, device)[0] * 40  # fp16 squares of these would overflow a fp16 sum
    y = l2_normalize(x, out=nan_like(x))
    assert y.dtype == dtype and y.shape == x.shape
    xd = x.double()
    baseline = (x.float() / x.float().norm(dim=-1, keepdim=True)).to(dtype)
    assert_oracle(y, xd / xd.norm(dim=-1, keepdim=True), baseline, what="unit rows")
    assert torch.allclose(y.double().norm(dim=-1), torch.ones(shape[:-1], dtype=torch.float64, device=device),
                          atol=2 * torch.finfo(dtype).eps)
    strided = torch.randn(4, 9, 130, device=device).to(dtype)[:, 2:7, 3:103]
    assert_oracle(l2_normalize(strided), strided.double() / strided.double().norm(dim=-1, keepdim=True),
                  (strided.float() / strided.float().norm(dim=-1, keepdim=True)).to(dtype), what="strided rows")
    zero = torch.zeros(2, 64, device=device, dtype=dtype)
    assert torch.isnan(l2_normalize(zero)).all(), "a zero row is 0/0, as x / x.norm() gives"


def test_empty_rows(device):
    x = torch.empty(0, 64, device=device)
    assert layer_norm(x).shape == (0, 64)


def test_errors(device):
    x = torch.randn(4, 32, device=device)
    with pytest.raises(ShapeError, match="weight"):
        layer_norm(x, torch.ones(31, device=device))
    with pytest.raises(ShapeError, match="bias"):
        layer_norm(x, None, torch.ones(1, 32, device=device))
    with pytest.raises(DTypeError, match="x"):
        layer_norm(x.to(torch.int32))
    with pytest.raises(ShapeError, match="residual"):
        layer_norm(x, residual=torch.randn(4, 31, device=device))
    with pytest.raises(DTypeError):
        layer_norm(x, residual=x.half())
    with pytest.raises(ShapeError, match="residual_out"):
        layer_norm(x, residual_out=torch.empty_like(x))
    with pytest.raises(DTypeError):
        layer_norm(x, out=torch.empty_like(x, dtype=torch.float16))
    with pytest.raises(ShapeError, match="contiguous"):
        layer_norm(torch.randn(32, 4, device=device).t())
    with pytest.raises(ShapeError, match="leading dims"):
        layer_norm(torch.randn(4, 5, 6, 32, device=device).transpose(0, 1))
    with pytest.raises(DeviceError):
        layer_norm(x, torch.ones(32, device="meta"))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(16384, 768), (4096, 4096)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("rms", [False, True], ids=["ln", "rms"])
def test_real_size(shape, dtype, rms):
    x, weight, bias = make(shape, dtype, "cuda")
    bias = None if rms else bias
    check(x, weight, bias, rms)
    residual = torch.randn_like(x)
    y, s = layer_norm(x, weight, bias, rms=rms, residual=residual, out=nan_like(x), residual_out=nan_like(x))
    s_ref = x.double() + residual.double()
    assert_oracle(s, s_ref, x + residual, what="s")
    assert_oracle(y, reference(s_ref, f64(weight), f64(bias), rms), reference(x + residual, weight, bias, rms))
