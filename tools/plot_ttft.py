#!/usr/bin/env python3
"""TTFT against prompt length: Folio dense, Folio sparse (and auto) and HF transformers, from one
GPU benchmark run's folder (tools/bench_gpu.sh writes folio_sparse.jsonl, tools/bench_gpu_peers.py
peers.jsonl). Needs matplotlib (docs only; not part of the build or the tests).

    python3 tools/plot_ttft.py docs/bench/gpu-2026-11-28-sparse [--out FILE.png]
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    folio = read(os.path.join(args.folder, "folio_sparse.jsonl"))
    peers = read(os.path.join(args.folder, "peers.jsonl"))
    device = open(os.path.join(args.folder, "gpu.txt")).read().split(",")[0].strip() if os.path.exists(
        os.path.join(args.folder, "gpu.txt")) else "GPU"
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for mode, style in (("dense", "s-"), ("auto", "^--"), ("sparse", "o-")):
        rows = sorted((r for r in folio if r["attention"] == mode), key=lambda r: r["n_prompt"])
        if rows:
            ax.plot([r["n_prompt"] / 1024 for r in rows], [r["ttft_ms"] / 1e3 for r in rows], style,
                    label=f"Folio {mode}")
    hf = sorted((r for r in peers if r.get("peer") == "hf-transformers-sdpa" and r.get("ttft_ms")
                 and r.get("shape") == "llama-3.1-8b"), key=lambda r: r["n_prompt"])
    ax.plot([r["n_prompt"] / 1024 for r in hf], [r["ttft_ms"] / 1e3 for r in hf], "d-", color="black",
            label="HF transformers (SDPA)")
    for r in folio:
        if r["attention"] == "sparse" and r["n_prompt"] >= 16384:
            ax.annotate(f"density {r['density']:.2f}", (r["n_prompt"] / 1024, r["ttft_ms"] / 1e3),
                        textcoords="offset points", xytext=(-20, 8), fontsize=7)
    ax.set_xlabel("prompt tokens (K)")
    ax.set_ylabel("time to first token (s)")
    ax.set_title(f"Llama-3.1-8B shape, bf16, batch 1, one {device}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = args.out or os.path.join(args.folder, "ttft.png")
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
