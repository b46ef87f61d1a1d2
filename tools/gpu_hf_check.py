#!/usr/bin/env python3
"""Folio's CUDA backend against HF transformers at real shapes (GPU machine).

For the Llama-3.1-8B and Phi-3.5-mini configurations with random bf16 weights: transformers
builds the model, saves it as safetensors, and computes the logits of a 4K-token random prompt in
bf16 (SDPA) and in fp32 (the same weights upcast, the reference). folio-logits runs the saved
model on the CUDA backend. Prints, per shape, the relative error of Folio's logits (sampled every
64 positions and the last) against the fp32 reference and against HF's own bf16 run, and the
share of all positions whose argmax agrees. Writes OUT/hf_check.json and OUT/hf_check.md.

    python3 tools/gpu_hf_check.py --out DIR [--tokens 4096] [--shapes llama-3.1-8b,phi-3.5-mini]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gpu_peers import build_model  # noqa: E402


def run_shape(name, n, out, folio_logits, work):
    model = build_model(name)
    path = os.path.join(work, name)
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(path, max_shard_size="4GB")
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(7)
    ids = torch.randint(3, vocab, (1, n), generator=gen)
    ids.numpy().astype("<i4").tofile(os.path.join(work, "tokens.i32"))
    every = 64
    keep = list(range(0, n, every))
    if keep[-1] != n - 1:
        keep.append(n - 1)
    with torch.no_grad():
        logits_bf16 = model(ids.cuda(), use_cache=False).logits[0].float()
        hf_argmax_bf16 = logits_bf16.argmax(-1).cpu().numpy()
        kept_bf16 = logits_bf16[keep].cpu().numpy()
        del logits_bf16
        model.float()
        logits_f32 = model(ids.cuda(), use_cache=False).logits[0]
        ref_argmax = logits_f32.argmax(-1).cpu().numpy()
        kept_ref = logits_f32[keep].cpu().numpy()
        del logits_f32
    del model
    torch.cuda.empty_cache()
    res_path = os.path.join(work, "folio.bin")
    subprocess.run([folio_logits, "--model", path, "--tokens", os.path.join(work, "tokens.i32"), "--out", res_path,
                    "--backend", "cuda", "--every", str(every), "--chunk", "1024"], check=True)
    raw = np.fromfile(res_path, dtype="<i4", count=3)
    fn, fv, fe = (int(x) for x in raw)
    assert fn == n and fv == vocab and fe == every, (fn, fv, fe)
    folio_argmax = np.fromfile(res_path, dtype="<i4", count=n, offset=12)
    folio_kept = np.fromfile(res_path, dtype="<f4", offset=12 + 4 * n).reshape(len(keep), vocab)

    def rel(a, b):
        return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)

    r_ref = rel(folio_kept, kept_ref)
    r_hf = rel(folio_kept, kept_bf16)
    r_hf_ref = rel(kept_bf16, kept_ref)
    row = dict(shape=name, tokens=n, sampled_positions=len(keep),
               folio_vs_fp32_rel_mean=float(r_ref.mean()), folio_vs_fp32_rel_max=float(r_ref.max()),
               folio_vs_hf_bf16_rel_mean=float(r_hf.mean()), folio_vs_hf_bf16_rel_max=float(r_hf.max()),
               hf_bf16_vs_fp32_rel_mean=float(r_hf_ref.mean()), hf_bf16_vs_fp32_rel_max=float(r_hf_ref.max()),
               argmax_agree_fp32=float((folio_argmax == ref_argmax).mean()),
               argmax_agree_hf_bf16=float((folio_argmax == hf_argmax_bf16).mean()),
               hf_bf16_argmax_agree_fp32=float((hf_argmax_bf16 == ref_argmax).mean()))
    print(json.dumps(row), flush=True)
    shutil.rmtree(path, ignore_errors=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--shapes", default="llama-3.1-8b,phi-3.5-mini")
    ap.add_argument("--folio-logits", default="build/gpu/app/folio-logits")
    ap.add_argument("--work", default="/tmp/folio-hf-check")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows = [run_shape(s, args.tokens, args.out, args.folio_logits, args.work) for s in args.shapes.split(",")]
    with open(os.path.join(args.out, "hf_check.json"), "w") as f:
        json.dump(rows, f, indent=1)
    lines = ["| shape | tokens | Folio vs HF fp32: rel. error mean / max | Folio vs HF bf16 | HF bf16 vs HF fp32 | "
             "argmax = fp32 (Folio) | argmax = fp32 (HF bf16) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['tokens']} | {r['folio_vs_fp32_rel_mean']:.4f} / {r['folio_vs_fp32_rel_max']:.4f} | "
                     f"{r['folio_vs_hf_bf16_rel_mean']:.4f} / {r['folio_vs_hf_bf16_rel_max']:.4f} | "
                     f"{r['hf_bf16_vs_fp32_rel_mean']:.4f} / {r['hf_bf16_vs_fp32_rel_max']:.4f} | "
                     f"{100 * r['argmax_agree_fp32']:.2f}% | {100 * r['hf_bf16_argmax_agree_fp32']:.2f}% |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "hf_check.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
