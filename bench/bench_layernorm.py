"""LayerNorm / RMSNorm / embeddings: eet_triton kernels against torch, fp16, on one GPU.

    python3 bench/bench_layernorm.py

Every contender runs in the same process on fresh random data (never zeros), warmed up (which
also autotunes ours), then timed with triton.testing.do_bench (L2 flushed between runs, median).
Bandwidth is effective: the bytes the op must move at least (inputs read once, outputs written
once) over the measured time, against the H100's ~3 TB/s copy ceiling; the patch GEMM is
reported in TFLOP/s against ~760 dense fp16. With EET_BENCH_OUT set, the table also goes to
$EET_BENCH_OUT/summary_layernorm.md.
"""

import os
import sys

import torch
import torch.nn.functional as F

import eet_triton  # noqa: F401  (first: picks compiled or interpreted triton)
from eet_triton.kernels.embedding import _embedding_kernel, _patch_embedding_kernel, embedding, patch_embedding
from eet_triton.kernels.layernorm import _layer_norm_kernel, layer_norm
from triton.testing import do_bench

COPY_TBS = 3.0
FP16_TFLOPS = 760.0
DT = torch.float16


def median_us(fn):
    fn()
    torch.cuda.synchronize()
    return do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e3


def best(kernel):
    c = kernel.best_config
    return f"BLOCK_M={c.kwargs.get('BLOCK_M')} " + " ".join(
        f"{k}={v}" for k, v in c.kwargs.items() if k != "BLOCK_M") + f" w={c.num_warps}"


def rows():
    out = []
    for n in (768, 1024, 4096):
        m = 16384
        x = torch.randn(m, n, device="cuda", dtype=DT)
        r = torch.randn_like(x)
        w = torch.rand(n, device="cuda", dtype=DT) + 0.5
        b = torch.randn(n, device="cuda", dtype=DT)
        y, s = torch.empty_like(x), torch.empty_like(x)

        ours = median_us(lambda: layer_norm(x, w, b, out=y))
        cfg = best(_layer_norm_kernel)
        theirs = median_us(lambda: F.layer_norm(x, (n,), w, b))
        out.append(("layer_norm", f"[{m}, {n}]", 2 * x.numel() * 2, ours, theirs, "F.layer_norm", cfg))

        ours = median_us(lambda: layer_norm(x, w, b, residual=r, out=y, residual_out=s))
        cfg = best(_layer_norm_kernel)
        theirs = median_us(lambda: F.layer_norm(x + r, (n,), w, b))
        out.append(("add+layer_norm", f"[{m}, {n}]", 4 * x.numel() * 2, ours, theirs, "x+r, F.layer_norm", cfg))

        if n == 4096:
            ours = median_us(lambda: layer_norm(x, w, rms=True, out=y))
            cfg = best(_layer_norm_kernel)
            theirs = median_us(lambda: F.rms_norm(x, (n,), w, 1e-5))
            out.append(("rms_norm", f"[{m}, {n}]", 2 * x.numel() * 2, ours, theirs, "F.rms_norm", cfg))

    bsz, seq, e = 32, 512, 768
    ids = torch.randint(0, 30522, (bsz, seq), device="cuda")
    tt = torch.randint(0, 2, (bsz, seq), device="cuda")
    pos = torch.arange(seq, device="cuda")
    word = torch.randn(30522, e, device="cuda", dtype=DT)
    pw, tw = torch.randn(512, e, device="cuda", dtype=DT), torch.randn(2, e, device="cuda", dtype=DT)
    nw, nb = torch.rand(e, device="cuda", dtype=DT) + 0.5, torch.randn(e, device="cuda", dtype=DT)
    h = torch.empty(bsz, seq, e, device="cuda", dtype=DT)
    ours = median_us(lambda: embedding(ids, word, position_ids=pos, position_weight=pw, token_type_ids=tt,
                                       type_weight=tw, norm_weight=nw, norm_bias=nb, out=h))
    cfg = best(_embedding_kernel)
    theirs = median_us(lambda: F.layer_norm(F.embedding(ids, word) + F.embedding(pos, pw) + F.embedding(tt, tw),
                                            (e,), nw, nb, 1e-12))
    # three gathered rows read + one written per token; ids negligible
    out.append(("bert embedding+LN", f"[{bsz}, {seq}, {e}]", 4 * h.numel() * 2, ours, theirs,
                "3x F.embedding, add, F.layer_norm", cfg))
    return out


def patches():
    out = []
    bsz, c, side, e = 32, 3, 224, 768
    px = torch.randn(bsz, c, side, side, device="cuda", dtype=DT)
    for p in (32, 16):
        n_tok = (side // p) ** 2 + 1
        w = torch.randn(e, c, p, p, device="cuda", dtype=DT) / p
        cls = torch.randn(e, device="cuda", dtype=DT)
        pos = torch.randn(n_tok, e, device="cuda", dtype=DT)
        o = torch.empty(bsz, n_tok, e, device="cuda", dtype=DT)

        def torch_patch():
            hp = F.conv2d(px, w, stride=p).flatten(2).transpose(1, 2)
            return torch.cat([cls.expand(bsz, 1, -1), hp], dim=1) + pos

        ours = median_us(lambda: patch_embedding(px, w, class_embedding=cls, position_weight=pos, out=o))
        cfg = best(_patch_embedding_kernel)
        theirs = median_us(torch_patch)
        flops = 2 * bsz * (n_tok - 1) * e * c * p * p
        out.append((f"patch_embedding P={p}", f"[{bsz}, 3, {side}, {side}] E={e}", flops, ours, theirs,
                    "conv2d, flatten, cat, add", cfg))
    return out


def main():
    if not torch.cuda.is_available() or eet_triton.INTERPRET:
        sys.exit("bench_layernorm.py needs a CUDA GPU (compiled Triton)")
    torch.manual_seed(0)
    lines = [f"### layernorm / embedding ({torch.cuda.get_device_name()}, fp16, median us)", "",
             "| op | shape | ours us | torch us | speedup | ours | of peak | torch | contender | our config |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, shape, work, ours, theirs, what, cfg in rows():
        gbs, tgbs = work / ours / 1e3, work / theirs / 1e3
        lines.append(f"| {name} | {shape} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x | {gbs:.0f} GB/s | "
                     f"{gbs / (COPY_TBS * 1e3):.0%} | {tgbs:.0f} GB/s | {what} | {cfg} |")
    for name, shape, flops, ours, theirs, what, cfg in patches():
        tf, ttf = flops / ours / 1e6, flops / theirs / 1e6
        lines.append(f"| {name} | {shape} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x | {tf:.0f} TFLOP/s | "
                     f"{tf / FP16_TFLOPS:.0%} | {ttf:.0f} TFLOP/s | {what} | {cfg} |")
    table = "\n".join(lines)
    print(table)
    if os.environ.get("EET_BENCH_OUT"):
        with open(os.path.join(os.environ["EET_BENCH_OUT"], "summary_layernorm.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
