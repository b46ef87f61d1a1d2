#!/usr/bin/env python3
"""llama.cpp's CPU prefill and decode rates on a GGUF, for comparison with folio-bench.

    /tmp/llamaenv/bin/python tools/bench_llamacpp.py [--model PATH] [--threads 2]
        [--prompt-tokens 512,2048] [--decode-tokens 32] [--reps 3]

The model defaults to SmolLM2-135M-Instruct Q4_1 from tools/fetch_model.py. For each prompt length:
the prompt (fixed pseudo-random token ids, seed 0, no special tokens) is evaluated from an empty
cache in batches of up to 512 tokens (llama.cpp's default n_batch/n_ubatch), then decode-tokens
greedy tokens are generated one by one. One untimed warm-up run first; then reps timed runs, and the
medians are reported. Timing is wall clock around llama.cpp's decode calls (from Python through
llama-cpp-python, whose per-call overhead is small next to a forward pass; the next token is the
argmax of the last position's logits, read in place). JSON on stdout; progress on stderr.
"""
import argparse
import ctypes
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time

import llama_cpp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"bench_llamacpp: {msg}", file=sys.stderr, flush=True)


def default_model():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fetch_model.py")], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("bench_llamacpp: " + (r.stderr.strip().splitlines() or ["fetch_model.py failed"])[-1])
    return r.stdout.strip()


def ggml_info():
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-base.so", "libggml.so"):
        path = os.path.join(libdir, name)
        if not os.path.exists(path):
            continue
        lib = ctypes.CDLL(path)
        out = {}
        for fn in ("ggml_version", "ggml_commit"):
            if hasattr(lib, fn):
                f = getattr(lib, fn)
                f.restype = ctypes.c_char_p
                out[fn.removeprefix("ggml_")] = f().decode()
        if out:
            return out
    return {}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def last_argmax(llm):
    """Argmax of the logits of the last evaluated position (llama.cpp keeps only that row here)."""
    return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))


def one_run(llm, prompt, decode_tokens):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(prompt)
    t1 = time.perf_counter()
    tok = last_argmax(llm)
    t_decode = 0.0
    for _ in range(decode_tokens):
        t = time.perf_counter()
        llm.eval([tok])
        t_decode += time.perf_counter() - t
        tok = last_argmax(llm)
    return {"prefill_s": t1 - t0, "decode_s": t_decode}


def main():
    ap = argparse.ArgumentParser(description="llama.cpp CPU prefill/decode rates (JSON on stdout)")
    ap.add_argument("--model", default=None, help="GGUF (default: SmolLM2-135M-Instruct Q4_1 via tools/fetch_model.py)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", default="512,2048")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch (default %(default)s)")
    args = ap.parse_args()

    model = args.model or default_model()
    lengths = [int(x) for x in args.prompt_tokens.split(",") if x]
    n_ctx = max(lengths) + args.decode_tokens + 8
    log(f"loading {model} (n_ctx {n_ctx}, {args.threads} threads)")
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=args.batch, n_ubatch=args.batch, logits_all=False,
                          n_threads=args.threads, n_threads_batch=args.threads, seed=0, verbose=False)
    n_vocab = llm.n_vocab()
    rng = random.Random(0)
    # Ids from 100 up: SmolLM2's special tokens are 0..16; keep clear of any model's low specials.
    tokens = [rng.randrange(100, n_vocab) for _ in range(max(lengths))]

    results = []
    for n in lengths:
        prompt = tokens[:n]
        log(f"prompt {n}: warm-up")
        one_run(llm, prompt, args.decode_tokens)
        runs = []
        for r in range(args.reps):
            runs.append(one_run(llm, prompt, args.decode_tokens))
            log(f"prompt {n} rep {r + 1}: prefill {n / runs[-1]['prefill_s']:.1f} tok/s, "
                f"decode {args.decode_tokens / runs[-1]['decode_s']:.1f} tok/s")
        med = lambda key: statistics.median(x[key] for x in runs)  # noqa: E731
        results.append({
            "prompt_tokens": n,
            "decode_tokens": args.decode_tokens,
            "prefill_ms": round(med("prefill_s") * 1e3, 2),
            "prefill_tok_s": round(n / med("prefill_s"), 1),
            "decode_ms_per_token": round(med("decode_s") * 1e3 / args.decode_tokens, 3),
            "decode_tok_s": round(args.decode_tokens / med("decode_s"), 1),
        })

    out = {
        "engine": "llama.cpp (CPU) via llama-cpp-python",
        "llama_cpp_python": llama_cpp.__version__,
        "ggml": ggml_info(),
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
        "model": os.path.basename(model),
        "model_desc": llm.metadata.get("general.name", ""),
        "threads": args.threads,
        "n_batch": args.batch,
        "reps": args.reps,
        "statistic": "median",
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "results": results,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
