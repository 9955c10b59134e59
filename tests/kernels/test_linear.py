"""linear(): GEMM with bias / activation / gate / residual epilogue, against a float64 torch reference."""

import gc
import math

import pytest
import torch
import torch.nn.functional as F

from eet_triton._backend import INTERPRET
from eet_triton.errors import DTypeError, ShapeError, UnsupportedModelError
from eet_triton.kernels.activations import kernel_activation
from eet_triton.kernels.linear import ACTIVATIONS, canonical_activation, linear
from tests.oracle import assert_oracle, nan_like

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
CANONICAL = [None, "gelu", "gelu_tanh", "quick_gelu", "relu", "silu", "tanh"]

_TORCH_ACT = {
    None: lambda t: t,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "quick_gelu": lambda t: t * torch.sigmoid(1.702 * t),
    "relu": F.relu,
    "silu": F.silu,
    "tanh": torch.tanh,
}


def _linear_module():
    import importlib

    return importlib.import_module("eet_triton.kernels.linear")


@pytest.fixture(params=["tma", "pointer"])
def path(request, monkeypatch):
    """Runs a test through each GEMM kernel: the TMA kernel (Hopper; forced on in the interpreter,
    which emulates tensor descriptors) and the pointer kernel (everything else)."""
    lin = _linear_module()
    if request.param == "pointer":
        monkeypatch.setattr(lin, "TMA_ENABLED", False)
    elif INTERPRET:
        monkeypatch.setattr(lin, "_has_tma", lambda device_index: True)
    elif not lin._has_tma(torch.cuda.current_device()):
        pytest.skip("the TMA kernel needs compute capability 9.0 or newer")
    return request.param


def _torch_linear(x, weight, bias=None, *, activation=None, residual=None, gate_weight=None, gate_bias=None, dtype):
    """The same computation in plain torch, every tensor cast to `dtype` first."""

    def cast(t):
        return None if t is None else t.to(dtype)

    y = _TORCH_ACT[canonical_activation(activation)](F.linear(cast(x), cast(weight), cast(bias)))
    if gate_weight is not None:
        y = y * F.linear(cast(x), cast(gate_weight), cast(gate_bias))
    if residual is not None:
        y = y + cast(residual)
    return y


def _check(x, weight, bias=None, *, out_like=None, **kwargs):
    """Run linear() twice into NaN-poisoned buffers; both runs must match the oracle and each other."""
    shape = (*x.shape[:-1], weight.shape[0])
    out_like = torch.empty(shape, dtype=x.dtype, device=x.device) if out_like is None else out_like
    outs = []
    for _ in range(2):
        out = nan_like(out_like)
        assert linear(x, weight, bias, out=out, **kwargs) is out
        outs.append(out)
    ref = _torch_linear(x, weight, bias, dtype=torch.float64, **kwargs)
    baseline = _torch_linear(x, weight, bias, dtype=x.dtype, **kwargs)
    assert_oracle(outs[0], ref, baseline)
    assert torch.equal(outs[0], outs[1]), "two runs differ: a race"
    return outs[0]


def _inputs(lead, K, N, dtype, device, *, bias=True):
    x = torch.randn(*lead, K, device=device).to(dtype)
    weight = (torch.randn(N, K, device=device) / math.sqrt(K)).to(dtype)
    b = torch.randn(N, device=device).to(dtype) if bias else None
    return x, weight, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", CANONICAL)
def test_every_activation(activation, dtype, device, path):
    x, w, b = _inputs((7, 11), 48, 40, dtype, device)
    _check(x, w, b, activation=activation)


@pytest.mark.parametrize("dtype", DTYPES)
def test_erf_gelu_tails(dtype, device):
    """The erf gelu over inputs that reach both tails (|x W^T| up to ~12, where erfc underflows)
    and zero."""
    x, w, b = _inputs((64,), 48, 40, dtype, device)
    x = x * 4
    x[0] = 0
    _check(x, w, b, activation="gelu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lean_gelu_within_an_ulp(dtype, device):
    """The erf gelu of fp16/bf16 outputs (gelu_lean) against float64's y erfc(-y / sqrt 2) / 2 rounded
    to the output dtype: every one of 4096 values over [-13, 13] (both tails, zero) is within one ulp.
    (Below -13 the fp32 result is subnormal, which the interpreter rounds to bf16 wrongly.)
    (torch's 0.5 y (1 + erf(y / sqrt 2)) cancels in the negative tail, even in float64: F.gelu of
    -8.4 is -0.0 there, where the true value is -2.3e-16, a normal bf16.) x W^T with W the identity is
    x exactly, so this measures the epilogue alone."""
    assert kernel_activation("gelu", dtype) == "gelu_lean"
    x = torch.linspace(-13, 13, 4096, dtype=torch.float64).to(dtype).reshape(256, 16).to(device)
    x[0, 0] = 0
    y = linear(x, torch.eye(16, dtype=dtype, device=device), activation="gelu")
    exact = x.double() * 0.5 * torch.special.erfc(-x.double() / math.sqrt(2))
    rounded = exact.to(dtype).double()
    info = torch.finfo(dtype)
    ulp = (torch.exp2(torch.floor(torch.log2(rounded.abs()))) * info.eps).clamp_min(info.smallest_normal * info.eps)
    off = (y.double() - rounded).abs() / ulp
    assert off.max().item() <= 1.0, f"{int((off > 1).sum())} values off by more than an ulp (worst {off.max().item():.1f})"


def test_tuning_is_per_epilogue(device, monkeypatch):
    """One shape with four epilogues gets four tuned configs: the epilogue changes register
    pressure (libdevice's erff and a residual load change which configs spill), so a pick made for
    one must not serve another."""
    lin = _linear_module()
    monkeypatch.setattr(lin, "_TUNED", {})
    x, w, b = _inputs((64,), 48, 40, torch.float16, device)
    residual = torch.randn(64, 40, device=device).to(torch.float16)
    lin.linear(x, w, b)
    lin.linear(x, w, b, residual=residual)
    lin.linear(x, w, b, activation="gelu")
    lin.linear(x, w, b, activation="gelu_new")  # a HuggingFace spelling of gelu_tanh
    assert sorted((k.activation or "", k.residual) for k in lin._TUNED) == [
        ("", False), ("", True), ("gelu_lean", False), ("gelu_tanh", False)]


@pytest.mark.parametrize("K, N", [(48, 40), (40, 24)])
@pytest.mark.parametrize("lead", [(1,), (7,), (7, 11), (113,)])
@pytest.mark.parametrize("bias", [True, False])
def test_odd_shapes(lead, K, N, bias, device, path):
    x, w, b = _inputs(lead, K, N, torch.float16, device, bias=bias)
    _check(x, w, b, activation="gelu_tanh")


@pytest.mark.parametrize("dtype", DTYPES)
def test_persistent_grid(dtype, device, path, monkeypatch):
    """On a persistent grid (PERSISTENT; off by default) each program walks several tiles: the
    interpreter runs 4 programs, so here every program runs the tile loop more than once."""
    monkeypatch.setattr(_linear_module(), "PERSISTENT", True)
    x, w, b = _inputs((70,), 40, 72, dtype, device)
    residual = torch.randn(70, 72, device=device).to(dtype)
    _check(x, w, b, activation="gelu", residual=residual)


def _force_tma_config(monkeypatch, M, N, K, dtype, gated, **kwargs):
    """Make linear() launch the TMA kernel with one given config (no tuning) for this shape."""
    import triton

    lin = _linear_module()
    if INTERPRET:
        monkeypatch.setattr(lin, "_has_tma", lambda device_index: True)
    elif not lin._has_tma(torch.cuda.current_device()):
        pytest.skip("the TMA kernel needs compute capability 9.0 or newer")
    from eet_triton.kernels._common import shape_bucket

    warps, stages = kwargs.pop("num_warps"), kwargs.pop("num_stages")
    config = triton.Config({"GROUP_M": 8, "FLATTEN": False, "OCCUPANCY": 1, **kwargs}, num_warps=warps, num_stages=stages)
    activations = {kernel_activation(canonical_activation(a), dtype) for a in (None, *ACTIVATIONS)}
    epilogues = [(a, r) for a in activations for r in (False, True)]
    tuned = {lin.TuneKey(shape_bucket(M), N, K, gated, dtype, True, *e): config for e in epilogues}
    monkeypatch.setattr(lin, "_TUNED", tuned)


def test_tail_split_rule():
    """Only a last round at most half full is split, and only past one round."""
    split = _linear_module()._split_tail
    assert split(300, 132) == 36  # CLIP b128 vision FFN2 in 128x128 tiles, one program per SM
    assert split(308, 132) == 44  # text FFN2
    assert split(200, 132) == 0  # a last round of 68 of 132 would need two rounds of halves
    assert split(100, 132) == 0 and split(264, 132) == 0  # one round; no partial round


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("store", ["pointer", "tma"])
@pytest.mark.parametrize("gated", [False, True])
def test_tail_split_into_half_tiles(dtype, store, gated, device, monkeypatch):
    """TAIL: 64x32 tiles of a 70x72 output are 2 x 3 = 6 tiles; on 4 programs the last round
    holds 2, so those run as four 32-row halves (one entirely below the last row: it stores
    nothing). Whole tiles store the STORE way, halves by masked pointer stores."""
    lin = _linear_module()
    M, K, N = 70, 40, 72
    monkeypatch.setattr(lin, "_num_programs", lambda device: 4)
    assert lin._split_tail(6, 4) == 2
    _force_tma_config(monkeypatch, M, N, K, dtype, gated, BLOCK_M=64, BLOCK_N=32, BLOCK_K=32, STORE=store, TAIL=True,
                      num_warps=4, num_stages=2)
    x, w, b = _inputs((M,), K, N, dtype, device)
    residual = torch.randn(M, N, device=device).to(dtype)
    gate_weight = (torch.randn(N, K, device=device) / math.sqrt(K)).to(dtype) if gated else None
    _check(x, w, b, activation="gelu", residual=residual, gate_weight=gate_weight)


@pytest.mark.gpu
@pytest.mark.parametrize("M", [6400, 6300])
def test_tail_split_real_size(M, monkeypatch):
    """CLIP b128 vision FFN2 (+ residual) in 128x128 tiles with the last round split, as the tuner
    may pick it; M = 6300 leaves the last row block 28 rows, so one half stores nothing."""
    K, N = 3072, 768
    _force_tma_config(monkeypatch, M, N, K, torch.float16, False, BLOCK_M=128, BLOCK_N=128, BLOCK_K=64,
                      STORE="pointer", TAIL=True, num_warps=4, num_stages=4)
    x, w, b = _inputs((M,), K, N, torch.float16, "cuda")
    residual = torch.randn(M, N, device="cuda").to(torch.float16)
    _check_real(x, w, b, residual=residual)


def test_stagger_rule():
    """STAGGER splits one tile per SM, and only where the tiles fill two programs on every SM."""
    stagger = _linear_module()._stagger
    assert stagger(768, 132) == 132  # BERT b32 FFN1 in 128x128 tiles
    assert stagger(263, 132) == 0 and stagger(264, 132) == 132


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("store", ["pointer", "tma"])
@pytest.mark.parametrize("M", [70, 96])
def test_stagger_splits_first_second_programs(dtype, store, M, device, monkeypatch):
    """STAGGER on 2 "SMs": 64x32 tiles of an Mx72 output are 2 x 3 = 6; programs 0-1 take tiles 0-1,
    2-3 the top halves of tiles 2-3, 4-5 tiles 4-5, 6-7 the bottom halves of tiles 2-3 (with
    GROUP_M 8, tile 2 is row block 0 and tile 3 row block 1, whose bottom half at M = 70 lies below
    the last row and stores nothing; at M = 96 it is half full)."""
    lin = _linear_module()
    K, N = 40, 72
    monkeypatch.setattr(lin, "_num_programs", lambda device: 2)
    assert lin._stagger(6, 2) == 2
    _force_tma_config(monkeypatch, M, N, K, dtype, False, BLOCK_M=64, BLOCK_N=32, BLOCK_K=32, STORE=store,
                      OCCUPANCY=2, STAGGER=True, num_warps=4, num_stages=2)
    x, w, b = _inputs((M,), K, N, dtype, device)
    residual = torch.randn(M, N, device=device).to(dtype)
    _check(x, w, b, activation="gelu", residual=residual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("store", ["pointer", "tma_split"])
@pytest.mark.parametrize("N", [96, 72])
def test_wide_tiles(dtype, store, N, device, monkeypatch):
    """EXTRA_N: 32 + 16 = 48-wide tiles as two dots sharing each x tile. N = 96 is two whole
    columns of tiles; N = 72 leaves the second one's extra block entirely past the last column
    and its main block partly (loads zero-filled, stores clipped). Both STORE ways of the extra
    block: masked pointers, or TMA through tma_split's half-width descriptors."""
    M, K = 70, 40
    _force_tma_config(monkeypatch, M, N, K, dtype, False, BLOCK_M=64, BLOCK_N=32, EXTRA_N=16, BLOCK_K=32,
                      STORE=store, num_warps=4, num_stages=2)
    x, w, b = _inputs((M,), K, N, dtype, device)
    residual = torch.randn(M, N, device=device).to(dtype)
    _check(x, w, b, activation="gelu", residual=residual)
    _check(x, w, b)


@pytest.mark.gpu
@pytest.mark.parametrize("store", ["pointer", "tma_split"])
@pytest.mark.parametrize("M, K, N", [(4096, 3072, 768), (4096, 768, 3072), (4000, 768, 768)])
def test_wide_tiles_real_size(store, M, K, N, monkeypatch):
    """128 + 64 = 192-wide tiles, 8 warps, as the tuner may pick them for BERT b32's GEMMs
    (M = 4000: a last row block of 32 rows)."""
    _force_tma_config(monkeypatch, M, N, K, torch.float16, False, BLOCK_M=128, BLOCK_N=128, EXTRA_N=64, BLOCK_K=64,
                      STORE=store, num_warps=8, num_stages=4)
    x, w, b = _inputs((M,), K, N, torch.float16, "cuda")
    residual = torch.randn(M, N, device="cuda").to(torch.float16)
    _check_real(x, w, b, residual=residual)
    _check_real(x, w, b, activation="gelu")


def test_wide_tiles_only_where_they_fill_one_round(monkeypatch):
    """EXTRA_N configs are candidates only where their tiles fit one round and the narrow ones do
    not, the wide tile divides N, and there is no gate."""
    import triton

    lin = _linear_module()
    monkeypatch.setattr(lin, "_num_programs", lambda device: 132)
    wide = triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "EXTRA_N": 64, "BLOCK_K": 64, "OCCUPANCY": 1},
                         num_warps=8, num_stages=4)
    narrow = triton.Config({"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_K": 64, "OCCUPANCY": 1}, num_warps=4, num_stages=4)

    def kept(n, m=4096, gated=False):
        return lin._prune_configs([narrow, wide], {"M_BUCKET": m, "N": n, "K": 768}, HAS_GATE=gated)

    assert kept(768) == [narrow, wide]  # BERT b32: 128 wide tiles in one round, 192 narrow ones in 1.45
    assert kept(3072) == [narrow] and kept(2304) == [narrow]  # 512 / 384 wide tiles: rounds either way
    assert kept(768, m=8192) == [narrow] and kept(768, m=2048) == [narrow]  # two rounds / one either way
    assert kept(640) == [narrow]  # 128 x 5 = 640 columns: the wide tile does not divide them
    assert kept(768, gated=True) == [narrow]
    four_warps = triton.Config(dict(wide.kwargs), num_warps=4, num_stages=4)  # 192 accumulators a thread: spills
    assert lin._prune_configs([narrow, four_warps], {"M_BUCKET": 4096, "N": 768, "K": 768}, HAS_GATE=False) == [narrow]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gated", [False, True])
def test_residual(dtype, gated, device, path):
    x, w, b = _inputs((77,), 40, 24, dtype, device)
    residual = torch.randn(77, 24, device=device).to(dtype)
    gate_weight = torch.randn_like(w) if gated else None
    _check(x, w, b, activation="silu", residual=residual, gate_weight=gate_weight)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gate_bias", [False, True])
def test_gated(dtype, gate_bias, device, path):
    x, w, _ = _inputs((3, 7), 48, 40, dtype, device)
    gate_weight = (torch.randn(40, 48, device=device) / math.sqrt(48)).to(dtype)
    gb = torch.randn(40, device=device).to(dtype) if gate_bias else None
    _check(x, w, activation="gelu_new", gate_weight=gate_weight, gate_bias=gb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_views(dtype, device):
    """x rows, weights, residual and out are all views; nothing may be copied or mis-strided."""
    M, K, N = 29, 40, 24
    x = torch.randn(M, K + 13, device=device).to(dtype)[:, 5 : 5 + K]
    weight = (torch.randn(K, N, device=device) / math.sqrt(K)).to(dtype).t()
    gate_weight = torch.randn(N, K + 7, device=device).to(dtype)[:, :K]
    bias = torch.randn(2 * N, device=device).to(dtype)[::2]
    residual = torch.randn(M, N + 8, device=device).to(dtype)[:, :N]
    out_like = torch.empty(M, N + 3, device=device, dtype=dtype)[:, 1 : 1 + N]
    assert x.stride(0) > K and weight.stride(1) > 1 and gate_weight.stride(0) > K and bias.stride(0) == 2 and out_like.stride(0) > N
    _check(x, weight, bias, activation="quick_gelu", residual=residual, gate_weight=gate_weight, out_like=out_like)


def test_tma_only_where_its_rules_hold(monkeypatch):
    """The TMA kernel needs unit stride along K and 16-byte aligned bases and row strides;
    anything else goes to the pointer kernel instead of failing."""
    lin = _linear_module()
    monkeypatch.setattr(lin, "_has_tma", lambda device_index: True)
    x = torch.randn(8, 64, dtype=torch.float16)
    w = torch.randn(32, 64, dtype=torch.float16)
    assert lin._tma_ready(x, w, None)
    assert not lin._tma_ready(x[:, 1:], w[:, 1:], None)  # base 2 bytes off alignment
    assert not lin._tma_ready(torch.randn(8, 36, dtype=torch.float16), torch.randn(32, 36, dtype=torch.float16), None)  # 72-byte rows
    assert not lin._tma_ready(x, torch.randn(64, 32, dtype=torch.float16).t(), None)  # K-strided weight
    assert not lin._tma_ready(x, w, torch.randn(32, 128, dtype=torch.float16)[:, ::2])  # gate weight, stride 2 along K
    # the epilogue may store y and load the residual by TMA too: both follow the same rules
    assert lin._tma_ready(x, w, None, torch.randn(8, 32, dtype=torch.float16), torch.empty(8, 32, dtype=torch.float16))
    assert not lin._tma_ready(x, w, None, None, torch.empty(8, 3, dtype=torch.float16))  # 6-byte rows: 3 labels
    assert not lin._tma_ready(x, w, None, torch.randn(8, 64, dtype=torch.float16)[:, ::2], None)  # strided residual
    monkeypatch.setattr(lin, "TMA_ENABLED", False)
    assert not lin._tma_ready(x, w, None)


def test_column_strided_x(device):
    x = torch.randn(3, 5, 2 * 48, device=device)[..., ::2]
    w = torch.randn(40, 48, device=device) / math.sqrt(48)
    _check(x, w, activation="relu")


@pytest.mark.parametrize("dtype", DTYPES)
def test_reads_nothing_around_its_inputs(dtype, device, path):
    """x, weight, bias and residual inside NaN-filled buffers (NaN rows around them, NaN columns
    after each row): a load its mask lets past the tensors would make the output NaN."""

    def inside_nan(t):
        rows, cols = t.shape
        # 8 extra columns keep rows 16-byte aligned, so the TMA kernel takes these views too.
        buffer = torch.full((rows + 6, cols + 8), float("nan"), device=device).to(dtype)
        view = buffer[3:3 + rows, :cols]
        view.copy_(t)
        return view

    M, K, N = 13, 40, 120  # the fused QKV GEMM of a BERT with hidden 40
    x, w, b = _inputs((M,), K, N, dtype, device)
    x, w = inside_nan(x), inside_nan(w)
    b = inside_nan(b[None])[0]
    residual = inside_nan(torch.randn(M, N, device=device).to(dtype))
    _check(x, w, b, residual=residual)


@pytest.mark.parametrize("dtype", DTYPES)
def test_in_place_residual(dtype, device, path):
    """out=residual adds into the hidden state; twice, so the first (tuning) call and a steady-state
    call are both checked. 33 rows: a shape no other test tunes first."""
    x, w, b = _inputs((3, 11), 48, 40, dtype, device)
    hidden = torch.randn(3, 11, 40, device=device).to(dtype)
    ref, baseline = hidden.double(), hidden
    for _ in range(2):
        ref = _torch_linear(x, w, b, residual=ref, dtype=torch.float64)
        baseline = _torch_linear(x, w, b, residual=baseline, dtype=dtype)
        assert linear(x, w, b, residual=hidden, out=hidden) is hidden
    assert_oracle(hidden, ref, baseline)


@pytest.mark.parametrize("dtype", DTYPES)
def test_allocates_output(dtype, device):
    x, w, b = _inputs((2, 9), 48, 40, dtype, device)
    y = linear(x, w, b, activation="gelu")
    assert y.shape == (2, 9, 40) and y.dtype == dtype and y.device == x.device
    assert_oracle(y, _torch_linear(x, w, b, activation="gelu", dtype=torch.float64),
                  _torch_linear(x, w, b, activation="gelu", dtype=dtype))  # fmt: skip


def test_empty_rows(device):
    x, w, b = _inputs((0,), 48, 40, torch.float16, device)
    assert linear(x, w, b, activation="gelu").shape == (0, 40)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_hf_spellings_match_transformers(name, device):
    """Every accepted name gives what transformers' ACT2FN[name] gives (ours: what torch gives)."""
    from transformers.activations import ACT2FN

    act = ACT2FN[name] if name in ACT2FN else _TORCH_ACT[name]
    x, w, b = _inputs((5,), 16, 48, torch.float32, device)
    x = x * 3  # reach the tails of the activation, where approximations part ways
    ref = act(F.linear(x.double(), w.double(), b.double()))
    baseline = act(F.linear(x, w, b))
    assert_oracle(linear(x, w, b, activation=name), ref, baseline, what=name)


def test_canonical_activation():
    assert canonical_activation(None) is None
    assert {canonical_activation(n) for n in ACTIVATIONS} == set(CANONICAL) - {None}
    assert canonical_activation("gelu") == "gelu"
    assert canonical_activation("gelu_new") == canonical_activation("gelu_pytorch_tanh") == "gelu_tanh"
    assert canonical_activation("gelu_fast") == "gelu_tanh"
    assert canonical_activation("swish") == "silu"
    for bad in ("gelu_10", "relu6", "mish", "GELU", 3):
        with pytest.raises(UnsupportedModelError, match="gelu_pytorch_tanh.*quick_gelu.*silu"):
            canonical_activation(bad)


def test_bad_inputs(device):
    x, w, b = _inputs((4,), 48, 40, torch.float16, device)
    with pytest.raises(ShapeError, match=r"weight: expected \[N, 48\]"):
        linear(x, w[:, :40])
    with pytest.raises(DTypeError, match="share one dtype"):
        linear(x, w.float())
    with pytest.raises(DTypeError, match="expected dtype"):
        linear(x.to(torch.int32), w)
    with pytest.raises(UnsupportedModelError, match="relu6.*not supported.*gelu_new"):
        linear(x, w, activation="relu6")
    with pytest.raises(ShapeError, match=r"residual: expected shape \[4, 40\]"):
        linear(x, w, residual=torch.randn(4, 48, device=device).half())
    with pytest.raises(ShapeError, match=r"bias: expected shape \[40\]"):
        linear(x, w, torch.randn(48, device=device).half())
    with pytest.raises(ShapeError, match=r"gate_weight: expected shape \[40, 48\]"):
        linear(x, w, gate_weight=w[:20])
    with pytest.raises(ShapeError, match="gate_bias given without gate_weight"):
        linear(x, w, gate_bias=b)
    with pytest.raises(DTypeError, match="share one dtype"):
        linear(x, w, out=torch.empty(4, 40, device=device))
    with pytest.raises(ShapeError, match="cannot be flattened"):
        linear(x.view(2, 2, 48), w, out=torch.empty(2, 3, 40, device=device).half()[:, :2])


REAL_M = [64, 6400, 9856]
REAL_KN = [(768, 2304), (768, 3072), (3072, 768), (1024, 4096)]


def _check_real(x, w, b=None, **kwargs):
    """Real sizes: against torch in float32, with torch in x's dtype as the baseline."""
    outs = [linear(x, w, b, out=nan_like(x.new_empty(*x.shape[:-1], w.shape[0])), **kwargs) for _ in range(2)]
    ref = _torch_linear(x, w, b, dtype=torch.float32, **kwargs)
    baseline = _torch_linear(x, w, b, dtype=x.dtype, **kwargs)
    assert_oracle(outs[0], ref, baseline)
    assert torch.equal(outs[0], outs[1]), "two runs differ: a race"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("K, N", REAL_KN)
@pytest.mark.parametrize("M", REAL_M)
def test_real_sizes(M, K, N, dtype, path):
    x, w, b = _inputs((M,), K, N, dtype, "cuda")
    _check_real(x, w, b, activation="gelu")


@pytest.mark.gpu
def test_real_sizes_gated_residual():
    """T5 v1.1 FFN up projection at real size (no bias, gelu_new gate), plus a residual."""
    dtype = torch.float16
    x, w, _ = _inputs((6400,), 768, 2048, dtype, "cuda", bias=False)
    gate_weight = (torch.randn(2048, 768, device="cuda") / math.sqrt(768)).to(dtype)
    residual = torch.randn(6400, 2048, device="cuda").to(dtype)
    _check_real(x, w, activation="gelu_new", gate_weight=gate_weight, residual=residual)


def test_two_programs_per_sm_only_where_tiles_outnumber_sms(monkeypatch):
    """OCCUPANCY > 1 configs are tuning candidates only when the tiles outnumber the SMs; every
    declared config (not only the interpreter's first) goes through the pruning rule."""
    from eet_triton.kernels._common import tuning_configs

    lin = _linear_module()
    monkeypatch.setattr(lin, "_num_programs", lambda device: 132)
    configs = tuning_configs("linear_tma", every=True)
    assert any(c.kwargs["OCCUPANCY"] == 2 for c in configs)

    def kept(m_bucket, n, k):
        return lin._prune_configs(configs, {"M_BUCKET": m_bucket, "N": n, "K": k}, HAS_GATE=False)

    def tiles(c, m_bucket, n):
        return -(-m_bucket // c.kwargs["BLOCK_M"]) * -(-n // c.kwargs["BLOCK_N"])

    few = kept(4096, 512, 2048)  # CLIP b32 text FFN2: 32 x 4 tiles of 128 x 128 <= 132, 32 x 8 of 128 x 64
    assert [c.kwargs["BLOCK_N"] for c in few if c.kwargs["OCCUPANCY"] > 1] == [64]
    assert all(tiles(c, 4096, 512) > 132 for c in few if c.kwargs["OCCUPANCY"] > 1)
    many = kept(8192, 768, 3072)  # CLIP b128 vision FFN2: 64 x 6 tiles of 128 x 128 > 132
    assert {c.kwargs["OCCUPANCY"] for c in many} == {1, 2, 3}
    # TAIL configs only where the tiles fill more than one round at their programs per SM
    tails = [c for c in many if c.kwargs.get("TAIL")]
    assert tails and all(tiles(c, 8192, 768) > 132 * c.kwargs["OCCUPANCY"] for c in tails)
    assert len([c for c in kept(8192, 3072, 768) if c.kwargs.get("TAIL")]) == len(tails) + 1  # the 3/SM one
    assert all(c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= 128 * 32 * c.num_warps for c in many)


def test_tuning_timer_drains_the_device_before_launching(monkeypatch):
    """The tuning timer (do_bench_cudagraph) launches on a stream of its own that waits for no
    other: the device must be drained before its first launch, or that launch can write the
    output buffer while work queued earlier on the caller's stream still reads that memory, and
    read inputs not yet written (8 test processes on one H100, cold caches: a freshly cast QKV
    weight came out NaN). Runs anywhere: the CUDA calls are stand-ins that log the order."""
    from eet_triton.kernels import _common as common

    events = []

    def fake_bench(fn, rep=20, grad_to_none=None, quantiles=None, return_mode="mean"):
        events.append(f"gc enabled: {gc.isenabled()}")
        fn()
        return [1.0, 1.0, 1.0]

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("synchronize"))
    monkeypatch.setattr(common.triton.testing, "do_bench_cudagraph", fake_bench)
    assert gc.isenabled()
    assert common.bench_in_graph(lambda: events.append("kernel"), quantiles=(0.5, 0.2, 0.8)) == [1.0, 1.0, 1.0]
    # the collector is off while the timer captures (common.gc_paused says why), on again after
    assert events == ["synchronize", "gc enabled: False", "kernel"]
    assert gc.isenabled()


def test_graph_capture_pauses_the_collector(monkeypatch):
    """Our own captures run with the cyclic GC off (a collection could finalise a CUDA graph or a
    compiled kernel mid-capture and invalidate it), and leave it as they found it, also when the
    capture raises. Runs anywhere: torch.cuda.graph is a stand-in."""
    import contextlib

    from eet_triton.kernels import _common as common

    seen = []

    @contextlib.contextmanager
    def fake_graph(graph, **kwargs):
        seen.append(gc.isenabled())
        yield graph

    monkeypatch.setattr(torch.cuda, "graph", fake_graph)
    with common.graph_capture("g") as g:
        seen.append(gc.isenabled())
    assert g == "g" and seen == [False, False] and gc.isenabled()
    with pytest.raises(RuntimeError), common.graph_capture("g"):
        raise RuntimeError("capture failed")
    assert gc.isenabled()
    gc.disable()
    try:  # a caller who had it off keeps it off
        with common.graph_capture("g"):
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_tuning_inside_a_capture_is_a_clear_error(monkeypatch):
    """A new shape met inside the caller's CUDA graph capture: tuning would synchronise (which ends
    the capture with a cryptic error and can leave torch's CUDA state broken); it raises
    GraphCaptureError before any CUDA call. Runs anywhere: the CUDA calls are stand-ins."""
    from eet_triton.errors import GraphCaptureError
    from eet_triton.kernels import _common as common

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("synchronize"))
    monkeypatch.setattr(common.triton.testing, "do_bench_cudagraph", lambda *a, **k: calls.append("bench"))
    with pytest.raises(GraphCaptureError, match="before capturing"):
        common.bench_in_graph(lambda: calls.append("kernel"), quantiles=(0.5, 0.2, 0.8))
    assert calls == []


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore:The CUDA Graph is empty")  # the capture the error cut short
def test_new_shape_inside_a_users_capture():
    """A user captures linear() on a shape never tuned: GraphCaptureError, and the process's CUDA
    state (the RNG included) still works afterwards; after one call outside, the capture works."""
    from eet_triton.errors import GraphCaptureError

    x, w, b = _inputs((333,), 96, 80, torch.float16, "cuda")  # a shape no other test tunes
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(GraphCaptureError):
        with torch.cuda.graph(graph):
            linear(x, w, b)
    torch.randn(8, device="cuda")
    expected = linear(x, w, b)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = linear(x, w, b)
    graph.replay()
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


@pytest.mark.gpu
def test_tuning_does_not_overtake_queued_work(monkeypatch):
    """Work queued on the caller's stream before a tuning call (here a clone of `out` behind a
    ~0.5 s sleep) runs before tuning writes `out`: the tuning launches must not overtake it."""
    lin = _linear_module()
    M, K, N = 64, 256, 256  # several configs survive pruning: tuning times them in any triton
    x, w, b = _inputs((M,), K, N, torch.float16, "cuda")
    out = torch.empty(M, N, dtype=torch.float16, device="cuda")
    tuners = (lin._linear_kernel, lin._linear_tma_kernel)
    for tuner in tuners:
        monkeypatch.setattr(tuner, "cache_results", False)
    for _ in range(2):  # the first round compiles every config, so the second launches at once
        monkeypatch.setattr(lin, "_TUNED", {})
        for tuner in tuners:
            monkeypatch.setattr(tuner, "cache", {})
        before = torch.randn(M, N, dtype=torch.float16)
        out.copy_(before)
        torch.cuda.synchronize()
        torch.cuda._sleep(1_000_000_000)  # keeps the caller's stream busy for ~0.5 s
        seen = out.clone()  # queued behind the sleep: must see `out` as it was before linear
        linear(x, w, b, out=out)
        torch.cuda.synchronize()
        assert torch.equal(seen.cpu(), before), "a tuning launch wrote `out` before work queued earlier read it"
    assert_oracle(out, _torch_linear(x, w, b, dtype=torch.float32), _torch_linear(x, w, b, dtype=torch.float16))

