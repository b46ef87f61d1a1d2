#!/usr/bin/env python3
"""Peers of Folio's GPU benchmarks, measured in the same run on the GPU machine.

Runs HF transformers (SDPA) on the same model shapes and lengths as tools/bench_gpu.sh (random
bf16 weights, batch 1, logits_to_keep=1, KV cache on) and PyTorch's SDPA kernels (flash and
cuDNN) on the same attention shapes, then reads Folio's JSON lines from the same folder and
writes a markdown table with Folio's ratio to each peer (OUT/peers.md, OUT/peers.jsonl).

    python3 tools/bench_gpu_peers.py --out DIR [--lengths 16384,32768,65536,131072]
"""
import argparse
import datetime
import json
import os
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = {
    "llama-3.1-8b": dict(kind="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         max_position_embeddings=131072, rms_norm_eps=1e-5,
                         rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                                              high_freq_factor=4.0, original_max_position_embeddings=8192)),
    "phi-3.5-mini": dict(kind="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                         max_position_embeddings=131072, original_max_position_embeddings=4096, rms_norm_eps=1e-5,
                         sliding_window=None, resid_pdrop=0.0, embd_pdrop=0.0,
                         rope_parameters=dict(rope_type="longrope", rope_theta=10000.0, short_factor=[1.0] * 48,
                                              long_factor=[4.0] * 48, original_max_position_embeddings=4096)),
}
ALIASES = {"llama3.1-8b": "llama-3.1-8b", "phi3.5-mini": "phi-3.5-mini"}


def hf_config(name):
    import transformers
    s = dict(SHAPES[name])
    kind = s.pop("kind")
    if kind == "llama":
        cfg = transformers.LlamaConfig(**s)
    else:
        cfg = transformers.Phi3Config(**s)
    cfg._attn_implementation = "sdpa"
    cfg.tie_word_embeddings = False
    return cfg


def build_model(name):
    import transformers
    cfg = hf_config(name)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    model.eval()
    return model


def sync_time(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def bench_hf(name, lengths, rows):
    model = build_model(name)
    weights = torch.cuda.memory_allocated()
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(1)
    with torch.no_grad():
        warm = torch.randint(3, vocab, (1, 1024), device="cuda", generator=gen)
        model(warm, use_cache=True, logits_to_keep=1)
        for n in lengths:
            ids = torch.randint(3, vocab, (1, n), device="cuda", generator=gen)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            try:
                t, _ = sync_time(lambda: model(ids, use_cache=True, logits_to_keep=1))
                peak = torch.cuda.max_memory_allocated() - weights
                rows.append(dict(peer="hf-transformers-sdpa", shape=name, n_prompt=n, ttft_ms=t * 1e3,
                                 peak_above_weights_bytes=peak, weights_bytes=weights))
                print(f"HF {name} {n}: {t:.3f} s, peak above weights {peak / 2**30:.1f} GiB", flush=True)
            except torch.OutOfMemoryError:
                rows.append(dict(peer="hf-transformers-sdpa", shape=name, n_prompt=n, ttft_ms=None, error="OOM"))
                print(f"HF {name} {n}: out of memory", flush=True)
    del model
    torch.cuda.empty_cache()


def bench_sdpa(lengths, heads, kv_heads, hd, rows, reps=5):
    for backend, label in ((SDPBackend.FLASH_ATTENTION, "torch-sdpa-flash"),
                           (SDPBackend.CUDNN_ATTENTION, "torch-sdpa-cudnn")):
        for n in lengths:
            q = torch.randn(1, heads, n, hd, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(1, kv_heads, n, hd, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(1, kv_heads, n, hd, device="cuda", dtype=torch.bfloat16)
            if kv_heads != heads:  # SDPA's fast kernels take equal heads: expand (a view for flash)
                k = k.repeat_interleave(heads // kv_heads, dim=1)
                v = v.repeat_interleave(heads // kv_heads, dim=1)
            try:
                with sdpa_kernel([backend]):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)
                    times = []
                    for _ in range(reps):
                        t, _ = sync_time(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
                        times.append(t)
                ms = sorted(times)[len(times) // 2] * 1e3
                tflops = 2 * 2 * n * n / 2 * hd * heads / (ms * 1e-3) / 1e12
                rows.append(dict(peer=label, heads=heads, kv_heads=kv_heads, head_dim=hd, n=n, ms=ms, tflops=tflops))
                print(f"{label} {heads}/{kv_heads}x{hd} {n}: {ms:.2f} ms {tflops:.0f} TFLOP/s", flush=True)
            except Exception as e:  # a backend that does not take this shape
                rows.append(dict(peer=label, heads=heads, kv_heads=kv_heads, head_dim=hd, n=n, ms=None, error=str(e)[:200]))
            del q, k, v
            torch.cuda.empty_cache()


SPARSE_WINDOW = 16  # = kSparseBenchWindow in kernels/cuda_bench.h


def bench_flex(lengths, heads, kv_heads, hd, strides, rows, reps=5):
    """FlexAttention given the block mask Folio's --sparse-stride benchmark computes (128x64 blocks)."""
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except Exception as e:  # an old torch
        rows.append(dict(peer="flex-attention", error=str(e)[:200]))
        return
    flex = torch.compile(flex_attention, dynamic=False)
    for stride in strides:
        for n in lengths:
            def mask_mod(b, h, q_idx, kv_idx):
                i = q_idx // 128
                t = kv_idx // 64
                last = (torch.clamp((i + 1) * 128, max=n) - 1) // 64
                keep = (t == 0) | (t >= last - SPARSE_WINDOW) | ((t + h) % stride == 0)
                return (kv_idx <= q_idx) & keep
            try:
                bm = create_block_mask(mask_mod, 1, heads, n, n, device="cuda", BLOCK_SIZE=(128, 64), _compile=True)
                q = torch.randn(1, heads, n, hd, device="cuda", dtype=torch.bfloat16)
                k = torch.randn(1, kv_heads, n, hd, device="cuda", dtype=torch.bfloat16)
                v = torch.randn(1, kv_heads, n, hd, device="cuda", dtype=torch.bfloat16)
                flex(q, k, v, block_mask=bm, enable_gqa=True)
                times = []
                for _ in range(reps):
                    t, _ = sync_time(lambda: flex(q, k, v, block_mask=bm, enable_gqa=True))
                    times.append(t)
                ms = sorted(times)[len(times) // 2] * 1e3
                rows.append(dict(peer="flex-attention", heads=heads, kv_heads=kv_heads, head_dim=hd, n=n,
                                 sparse_stride=stride, ms=ms))
                print(f"flex {heads}/{kv_heads}x{hd} {n} stride {stride}: {ms:.2f} ms", flush=True)
                del q, k, v, bm
            except Exception as e:
                rows.append(dict(peer="flex-attention", n=n, sparse_stride=stride, ms=None, error=str(e)[:300]))
                print(f"flex {n} stride {stride}: {str(e)[:300]}", flush=True)
            torch.cuda.empty_cache()


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def table(out, rows, lengths):
    folio_attn = read_jsonl(os.path.join(out, "folio_attention.jsonl"))
    folio_model = read_jsonl(os.path.join(out, "folio_model.jsonl"))
    dev = torch.cuda.get_device_name(0)
    lines = [f"Measured {datetime.date.today()} on one {dev}, bf16, batch 1, random weights; "
             f"Folio and the peers in the same run (tools/gpu_run.sh bench peers).", ""]
    lines += ["### Attention alone (causal, one chunk; TFLOP/s = 2*2*n^2/2*hd*heads / time)", "",
              "| heads/kv x hd | tokens | Folio ms | Folio TFLOP/s | SDPA flash ms | SDPA cuDNN ms | Folio / flash | Folio / cuDNN |",
              "|---|---|---|---|---|---|---|---|"]
    for fa in folio_attn:
        key = (fa["heads"], fa["kv_heads"], fa["head_dim"], fa["n"])
        peer = {r["peer"]: r for r in rows if r.get("n") == fa["n"] and (r.get("heads"), r.get("kv_heads"), r.get("head_dim"), r.get("n")) == key}
        fl = peer.get("torch-sdpa-flash", {}).get("ms")
        cu = peer.get("torch-sdpa-cudnn", {}).get("ms")
        fmt = lambda v: f"{v:.2f}" if v else "n/a"
        ratio = lambda p: f"{p / fa['ms']:.2f}x" if p else "n/a"
        lines.append(f"| {fa['heads']}/{fa['kv_heads']} x {fa['head_dim']} | {fa['n']} | {fa['ms']:.2f} | {fa['tflops']:.0f} | "
                     f"{fmt(fl)} | {fmt(cu)} | {ratio(fl)} | {ratio(cu)} |")
    lines += ["", "### Whole model: time to first token, decode, memory (speed-up = HF time / Folio time)", "",
              "| shape | tokens | Folio TTFT s | HF TTFT s | speed-up | Folio decode tok/s | Folio weights GiB | Folio KV GiB | Folio scratch GiB | HF peak above weights GiB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for fm in folio_model:
        shape = ALIASES.get(fm["shape"], fm["shape"])
        hf = next((r for r in rows if r.get("peer") == "hf-transformers-sdpa" and r["shape"] == shape and r["n_prompt"] == fm["n_prompt"]), None)
        hf_s = hf["ttft_ms"] / 1e3 if hf and hf.get("ttft_ms") else None
        g = lambda b: b / 2**30
        folio_s = fm["ttft_ms"] / 1e3
        hf_txt = f"{hf_s:.3f}" if hf_s else "OOM"
        speed = f"{hf_s / folio_s:.2f}x" if hf_s else "n/a"
        hf_peak = f"{g(hf['peak_above_weights_bytes']):.1f}" if hf and hf.get("peak_above_weights_bytes") else "n/a"
        lines.append(f"| {shape} | {fm['n_prompt']} | {folio_s:.3f} | {hf_txt} | {speed} | {fm['decode_tok_s']:.1f} | "
                     f"{g(fm['weights_bytes']):.2f} | {g(fm['kv_bytes']):.2f} | {g(fm['scratch_bytes']):.2f} | {hf_peak} |")
    # sparse prefill: whole model TTFT by attention mode beside HF, and the tile-list kernel
    sparse = read_jsonl(os.path.join(out, "folio_sparse.jsonl"))
    if sparse:
        lines += ["", "### Sparse prefill: time to first token by attention mode (Llama-3.1-8B shape, default budgets)", "",
                  "| tokens | HF s | Folio dense s | Folio auto s | Folio sparse s | sparse vs HF | sparse vs dense | density | est. mass | estimation s | sparse attention s | estimation share | Folio peak GiB | HF peak GiB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        by = {(r["attention"], r["n_prompt"]): r for r in sparse}
        for n in sorted({r["n_prompt"] for r in sparse}):
            hf = next((r for r in rows if r.get("peer") == "hf-transformers-sdpa" and r["shape"] == "llama-3.1-8b" and r["n_prompt"] == n), None)
            hf_s = hf["ttft_ms"] / 1e3 if hf and hf.get("ttft_ms") else None
            get = lambda m: by.get((m, n), {}).get("ttft_ms")
            d, a, sp = get("dense"), get("auto"), get("sparse")
            f = lambda v: f"{v / 1e3:.3f}" if v else "n/a"
            r = by.get(("sparse", n), {})
            est, att = r.get("estimate_ms", 0.0), r.get("sparse_attention_ms", 0.0)
            share = f"{est / att:.1%}" if att else "n/a"
            peak = r.get("peak_bytes")
            hf_peak = (hf["peak_above_weights_bytes"] + hf["weights_bytes"]) / 2**30 if hf and hf.get("peak_above_weights_bytes") else None
            lines.append(f"| {n} | {hf_s:.3f} | {f(d)} | {f(a)} | {f(sp)} | {hf_s / (sp / 1e3):.2f}x | {d / sp:.2f}x | "
                         f"{r.get('density', 1.0):.3f} | {r.get('est_mass_mean', 1.0):.3f} | {est / 1e3:.3f} | {att / 1e3:.3f} | {share} | "
                         f"{peak / 2**30 if peak else 0:.1f} | {hf_peak if hf_peak else 0:.1f} |" if hf_s and sp and d else
                         f"| {n} | {hf_s} | {f(d)} | {f(a)} | {f(sp)} | n/a | n/a | | | | | | | |")
    tiles = read_jsonl(os.path.join(out, "folio_attention_sparse.jsonl"))
    if tiles:
        dense_by_n = {fa["n"]: fa for fa in folio_attn if fa["heads"] == 32 and fa["kv_heads"] == 8}
        lines += ["", "### The tile-list kernel on a block-sparse pattern (32/8 x 128), against FlexAttention with the same block mask", "",
                  "| tokens | stride | density | Folio ms | Folio TFLOP/s on computed tiles | dense TFLOP/s (same count) | sparse / dense rate | FlexAttention ms | Folio / Flex |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for t in tiles:
            dn = dense_by_n.get(t["n"])
            dense_rate = dn.get("tile_tflops") if dn else None
            fx = next((r for r in rows if r.get("peer") == "flex-attention" and r.get("n") == t["n"] and r.get("sparse_stride") == t["sparse_stride"]), None)
            fx_ms = fx.get("ms") if fx else None
            lines.append(f"| {t['n']} | {t['sparse_stride']} | {t['density']:.3f} | {t['ms']:.2f} | {t['tile_tflops']:.0f} | "
                         f"{dense_rate:.0f} | {t['tile_tflops'] / dense_rate:.2f} | " if dense_rate else
                         f"| {t['n']} | {t['sparse_stride']} | {t['density']:.3f} | {t['ms']:.2f} | {t['tile_tflops']:.0f} | n/a | n/a | ")
            lines[-1] += (f"{fx_ms:.2f} | {fx_ms / t['ms']:.2f}x |" if fx_ms else "n/a | n/a |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "peers.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--lengths", default=os.environ.get("FOLIO_BENCH_LENGTHS", "16384,32768,65536,131072"))
    ap.add_argument("--shapes", default="llama-3.1-8b,phi-3.5-mini")
    ap.add_argument("--hf-only", action="store_true", help="only HF transformers on the whole model (no kernel peers)")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    rows = []
    if not args.hf_only:
        bench_flex(lengths, 32, 8, 128, [8, 32], rows)
        bench_sdpa(lengths, 32, 8, 128, rows)
        bench_sdpa(lengths, 32, 32, 96, rows)
    for name in args.shapes.split(","):
        bench_hf(name, lengths, rows)
    with open(os.path.join(args.out, "peers.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    table(args.out, rows, lengths)


if __name__ == "__main__":
    main()
