"""LayerNorm / RMSNorm / embeddings: eet_triton kernels against torch, fp16, on one GPU.

    python3 bench/bench_layernorm.py

Every contender runs in the same process on fresh random data (never zeros), warmed up (which
also autotunes ours), then timed two ways, L2 flushed before each call:
- eager: triton.testing.do_bench, median. A call whose host-side launch costs more than the
  GPU time of the flush plus the kernel is measured at its launch cost, not its GPU time.
- graph: the call replayed from a CUDA graph (as eet_triton's runtime runs a forward), so
  the GPU time alone; median over replays of 10 x (flush, call) minus 10 x (flush).
Bandwidth is effective: the bytes the op must move at least (inputs read once, outputs written
once) over the graph time, against the H100's ~3 TB/s copy ceiling; the patch GEMM is reported
in TFLOP/s against ~760 dense fp16. With EET_BENCH_OUT set, the table also goes to
$EET_BENCH_OUT/summary_layernorm.md.
"""

import sys
import time

import torch
import torch.nn.functional as F

import eet_triton  # first: picks compiled or interpreted triton
from eet_triton.kernels.embedding import _embedding_kernel, _patch_embedding_kernel, embedding, patch_embedding
from eet_triton.kernels.layernorm import _layer_norm_kernel, layer_norm
from triton.testing import do_bench
from bench._out import save

COPY_TBS = 3.0
FP16_TFLOPS = 760.0
DT = torch.float16


_FLUSH = None


def graph_us(fn, calls=10, replays=15):
    global _FLUSH
    if _FLUSH is None:
        _FLUSH = torch.empty(256 << 20, dtype=torch.int8, device="cuda")

    def capture(with_fn):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(calls):
                _FLUSH.zero_()
                if with_fn:
                    fn()
        return g

    def median_ms(g):
        g.replay()
        times = []
        for _ in range(replays):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            g.replay()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return sorted(times)[len(times) // 2]

    both, flush = capture(True), capture(False)
    return (median_ms(both) - median_ms(flush)) * 1e3 / calls


def time_us(fn):
    """(eager do_bench median, CUDA-graph replay) in microseconds; fn is warmed up (and tuned) first."""
    fn()
    torch.cuda.synchronize()
    return do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e3, graph_us(fn)


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

        ours = time_us(lambda: layer_norm(x, w, b, out=y))
        cfg = best(_layer_norm_kernel)
        theirs = time_us(lambda: F.layer_norm(x, (n,), w, b))
        out.append(("layer_norm", f"[{m}, {n}]", 2 * x.numel() * 2, ours, theirs, "F.layer_norm", cfg))

        ours = time_us(lambda: layer_norm(x, w, b, residual=r, out=y, residual_out=s))
        cfg = best(_layer_norm_kernel)
        theirs = time_us(lambda: F.layer_norm(x + r, (n,), w, b))
        out.append(("add+layer_norm", f"[{m}, {n}]", 4 * x.numel() * 2, ours, theirs, "x+r, F.layer_norm", cfg))

        if n == 4096:
            ours = time_us(lambda: layer_norm(x, w, rms=True, out=y))
            cfg = best(_layer_norm_kernel)
            theirs = time_us(lambda: F.rms_norm(x, (n,), w, 1e-5))
            out.append(("rms_norm", f"[{m}, {n}]", 2 * x.numel() * 2, ours, theirs, "F.rms_norm", cfg))

    bsz, seq, e = 32, 512, 768
    ids = torch.randint(0, 30522, (bsz, seq), device="cuda")
    tt = torch.randint(0, 2, (bsz, seq), device="cuda")
    pos = torch.arange(seq, device="cuda")
    word = torch.randn(30522, e, device="cuda", dtype=DT)
    pw, tw = torch.randn(512, e, device="cuda", dtype=DT), torch.randn(2, e, device="cuda", dtype=DT)
    nw, nb = torch.rand(e, device="cuda", dtype=DT) + 0.5, torch.randn(e, device="cuda", dtype=DT)
    h = torch.empty(bsz, seq, e, device="cuda", dtype=DT)
    ours = time_us(lambda: embedding(ids, word, position_ids=pos, position_weight=pw, token_type_ids=tt,
                                       type_weight=tw, norm_weight=nw, norm_bias=nb, out=h))
    cfg = best(_embedding_kernel)
    theirs = time_us(lambda: F.layer_norm(F.embedding(ids, word) + F.embedding(pos, pw) + F.embedding(tt, tw),
                                            (e,), nw, nb, 1e-12))
    # the position and type tables stay in L2: at least one word row read and one row written per
    # token, the tables and the ids read once
    moved = 2 * h.numel() * 2 + (pw.numel() + tw.numel()) * 2 + (ids.numel() + tt.numel()) * 8
    out.append(("bert embedding+LN", f"[{bsz}, {seq}, {e}]", moved, ours, theirs,
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

        ours = time_us(lambda: patch_embedding(px, w, class_embedding=cls, position_weight=pos, out=o))
        cfg = best(_patch_embedding_kernel)
        theirs = time_us(torch_patch)
        flops = 2 * bsz * (n_tok - 1) * e * c * p * p
        out.append((f"patch_embedding P={p}", f"[{bsz}, 3, {side}, {side}] E={e}", flops, ours, theirs,
                    "conv2d, flatten, cat, add", cfg))
    return out


def host_us(fn, calls=400):
    """Host time of one call: tiny inputs, so the GPU keeps up and the loop waits on Python alone."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e6


def host_costs():
    x = torch.randn(64, 768, device="cuda", dtype=DT)
    r, y, s = torch.randn_like(x), torch.empty_like(x), torch.empty_like(x)
    w, b = torch.rand(768, device="cuda", dtype=DT) + 0.5, torch.randn(768, device="cuda", dtype=DT)
    ids = torch.randint(0, 1000, (4, 16), device="cuda")
    word = torch.randn(1000, 768, device="cuda", dtype=DT)
    h = torch.empty(4, 16, 768, device="cuda", dtype=DT)
    return [
        ("layer_norm", host_us(lambda: layer_norm(x, w, b, out=y)), host_us(lambda: F.layer_norm(x, (768,), w, b))),
        ("add+layer_norm", host_us(lambda: layer_norm(x, w, b, residual=r, out=y, residual_out=s)),
         host_us(lambda: F.layer_norm(x + r, (768,), w, b))),
        ("embedding+LN", host_us(lambda: embedding(ids, word, norm_weight=w, norm_bias=b, out=h)),
         host_us(lambda: F.layer_norm(F.embedding(ids, word), (768,), w, b))),
    ]


def main():
    if not torch.cuda.is_available() or eet_triton.INTERPRET:
        sys.exit("bench_layernorm.py needs a CUDA GPU (compiled Triton)")
    torch.manual_seed(0)
    lines = [f"### layernorm / embedding ({torch.cuda.get_device_name()}, fp16, median us)", "",
             "| op | shape | ours eager | torch eager | ours graph | torch graph | speedup (graph) | ours (graph) "
             "| of peak | torch (graph) | contender | our config |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]

    def line(name, shape, ours, theirs, ours_rate, peak, theirs_rate, unit, what, cfg):
        return (f"| {name} | {shape} | {ours[0]:.1f} | {theirs[0]:.1f} | {ours[1]:.1f} | {theirs[1]:.1f} | "
                f"{theirs[1] / ours[1]:.2f}x | {ours_rate:.0f} {unit} | {ours_rate / peak:.0%} | "
                f"{theirs_rate:.0f} {unit} | {what} | {cfg} |")

    for name, shape, work, ours, theirs, what, cfg in rows():
        lines.append(line(name, shape, ours, theirs, work / ours[1] / 1e3, COPY_TBS * 1e3, work / theirs[1] / 1e3,
                          "GB/s", what, cfg))
    for name, shape, flops, ours, theirs, what, cfg in patches():
        lines.append(line(name, shape, ours, theirs, flops / ours[1] / 1e6, FP16_TFLOPS, flops / theirs[1] / 1e6,
                          "TFLOP/s", what, cfg))
    lines += ["", "host time per call, tiny inputs (us): what an eager call costs before the GPU runs", "",
              "| op | ours | torch |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {ours:.1f} | {theirs:.1f} |" for name, ours, theirs in host_costs()]
    table = "\n".join(lines)
    print(table)
    save("summary_layernorm.md", table)


if __name__ == "__main__":
    main()
