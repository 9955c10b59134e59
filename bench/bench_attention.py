"""Flash attention against torch SDPA, fp16, on one GPU.

    python3 bench/bench_attention.py

1. Plain attention, B=8, H=12, D=64, L in 1024/2048/4096, causal and not, against
   F.scaled_dot_product_attention restricted to the flash backend. Layouts: SDPA gets
   [B, H, L, D] contiguous (its best case); ours gets q/k/v as strided views of one fused
   [B, L, 3, H, D] QKV output, the layout it sees inside a model (no copies).
2. T5 relative-position attention (scale 1, bidirectional, 32 buckets, max distance 128),
   B=8, H=12, D=64, L in 512/1024/2048: ours computes the bias from the [32, H] table inside
   the kernel; SDPA is handed the materialised [B, H, L, L] fp16 bias (building it is not
   timed) and picks its own backend.
3. Decode: one new query per sequence against a KV cache of 4096 (B=8, H=12, D=64), against
   SDPA flash; reported as bandwidth (the K/V bytes read) against ~3 TB/s.

Every contender runs in the same process on fresh random data (never zeros), warmed up (which
also autotunes ours), timed with triton.testing.do_bench (median, L2 flushed between runs) and
with do_bench_cudagraph (median of graph replays: GPU time without host launch cost, which
is what the CUDA-graph runtime pays), and the host time per call. FLOPs are 4*B*H*Lq*Lk*D, half that when causal, against
~760 TFLOP/s dense fp16. With EET_BENCH_OUT set, the table also goes to
$EET_BENCH_OUT/summary_attention.md, and the autotuner's timing of every config to
$EET_BENCH_OUT/attention_configs.txt.
"""

import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.models.t5.modeling_t5 import T5Attention

import eet_triton  # noqa: F401  (first: picks compiled or interpreted triton)
from eet_triton.kernels.attention import _attention_kernel, attention
from triton.testing import do_bench, do_bench_cudagraph
from bench._out import save

FP16_TFLOPS = 760.0
COPY_TBS = 3.0
DT = torch.float16
B, H, D = 8, 12, 64


def times_us(fn):
    """(eager median, graph-replay median, host time per call) in microseconds. The host time
    is 100 calls queued without a sync, fewer than the launch queue holds: what the CPU spends."""
    fn()
    torch.cuda.synchronize()
    eager = do_bench(fn, warmup=50, rep=300, return_mode="median") * 1e3
    graph = do_bench_cudagraph(fn, rep=300, return_mode="median") * 1e3
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(100):
        fn()
    host = (time.perf_counter() - start) * 1e4
    torch.cuda.synchronize()
    return eager, graph, host


def best_config(log, what):
    c = _attention_kernel.best_config
    cfg = f"M{c.kwargs['BLOCK_M']} N{c.kwargs['BLOCK_N']} w{c.num_warps} s{c.num_stages}"
    timings = getattr(_attention_kernel, "configs_timings", None) or {}
    log.append(f"{what}: " + ", ".join(
        f"M{k.kwargs['BLOCK_M']}N{k.kwargs['BLOCK_N']}w{k.num_warps}s{k.num_stages}={t[0] * 1e3:.0f}us"
        for k, t in timings.items()))
    return cfg


def fused_qkv(L, q_scale=1.0):
    qkv = torch.randn(B, L, 3, H, D, device="cuda", dtype=DT)
    qkv[:, :, 0] *= q_scale
    q, k, v = qkv.unbind(2)
    return q, k, v, *(t.transpose(1, 2).contiguous() for t in (q, k, v))


def max_diff(ours, sdpa_out):
    return (ours.float() - sdpa_out.transpose(1, 2).float()).abs().max().item()


def plain(log):
    rows = []
    for L in (1024, 2048, 4096):
        for causal in (False, True):
            q, k, v, qs, ks, vs = fused_qkv(L)
            out = torch.empty(B, L, H, D, device="cuda", dtype=DT)
            ours = times_us(lambda: attention(q, k, v, causal=causal, out=out))
            cfg = best_config(log, f"plain L={L} causal={causal}")
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                theirs = times_us(lambda: F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal))
                diff = max_diff(out, F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal))
            flops = 4 * B * H * L * L * D / (2 if causal else 1)
            rows.append((f"{'causal' if causal else 'full'} L={L}", flops, ours, theirs, "SDPA flash", cfg, diff))
    return rows


def t5(log):
    rows = []
    table = torch.randn(32, H, device="cuda", dtype=DT)
    for L in (512, 1024, 2048):
        # T5 has no 1/sqrt(D): a smaller q keeps the softmax from collapsing onto one key
        q, k, v, qs, ks, vs = fused_qkv(L, q_scale=0.25)
        out = torch.empty(B, L, H, D, device="cuda", dtype=DT)
        ours = times_us(lambda: attention(q, k, v, scale=1.0, t5_table=table, out=out))
        cfg = best_config(log, f"t5 L={L}")
        position = torch.arange(L, device="cuda")
        buckets = T5Attention._relative_position_bucket(position[None, :] - position[:, None], True, 32, 128)
        bias = table[buckets].permute(2, 0, 1)[None].expand(B, H, L, L).contiguous()
        theirs = times_us(lambda: F.scaled_dot_product_attention(qs, ks, vs, attn_mask=bias, scale=1.0))
        diff = max_diff(out, F.scaled_dot_product_attention(qs, ks, vs, attn_mask=bias, scale=1.0))
        rows.append((f"T5 bias L={L}", 4 * B * H * L * L * D, ours, theirs, "SDPA + [B,H,L,L] bias", cfg, diff))
        del bias
    return rows


def decode(log):
    Lk, cache_len = 4096, 4608
    cache = torch.randn(2, B, cache_len, H, D, device="cuda", dtype=DT)
    k, v = cache[0, :, :Lk], cache[1, :, :Lk]
    q = torch.randn(B, 1, 3, H, D, device="cuda", dtype=DT)[:, :, 0]
    qs, ks, vs = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    out = torch.empty(B, 1, H, D, device="cuda", dtype=DT)
    ours = times_us(lambda: attention(q, k, v, causal=True, out=out))
    cfg = best_config(log, f"decode Lk={Lk}")
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        theirs = times_us(lambda: F.scaled_dot_product_attention(qs, ks, vs))
        diff = max_diff(out, F.scaled_dot_product_attention(qs, ks, vs))
    return [(f"decode Lq=1 Lk={Lk}", 2 * B * Lk * H * D * 2, ours, theirs, "SDPA flash", cfg, diff)]


def main():
    if not torch.cuda.is_available() or eet_triton.INTERPRET:
        sys.exit("bench_attention.py needs a CUDA GPU (compiled Triton)")
    torch.manual_seed(0)
    log = []
    lines = [
        f"### attention ({torch.cuda.get_device_name()}, fp16, B={B} H={H} D={D}, median us)", "",
        "| case | ours us | SDPA us | speedup | ours graph us | SDPA graph us | graph speedup | ours | of peak "
        "| SDPA | ours host us | SDPA host us | contender | our config | max diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    print("\n".join(lines), flush=True)
    for section in (plain, t5, decode):
        for name, work, (ours, ours_g, ours_h), (theirs, theirs_g, theirs_h), what, cfg, diff in section(log):
            if name.startswith("decode"):
                rate, trate, peak, unit = work / ours / 1e3, work / theirs / 1e3, COPY_TBS * 1e3, "GB/s"
            else:
                rate, trate, peak, unit = work / ours / 1e6, work / theirs / 1e6, FP16_TFLOPS, "TFLOP/s"
            lines.append(
                f"| {name} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x | {ours_g:.1f} | {theirs_g:.1f} | "
                f"{theirs_g / ours_g:.2f}x | {rate:.0f} {unit} | {rate / peak:.0%} | {trate:.0f} {unit} | "
                f"{ours_h:.0f} | {theirs_h:.0f} | {what} | {cfg} | {diff:.1e} |"
            )
            print(lines[-1], flush=True)
    print("\n".join(log))
    save("summary_attention.md", "\n".join(lines))
    save("attention_configs.txt", "\n".join(log))

if __name__ == "__main__":
    main()
