#!/usr/bin/env python3
"""Renders the models' own chat templates (Jinja) into the expected strings of tests/fixtures/chat.

    python3 -m venv /tmp/chatenv && /tmp/chatenv/bin/pip install jinja2 gguf
    /tmp/chatenv/bin/python tools/render_chat_templates.py [--check]

Templates: ../shared/models/templates/*.jinja (Llama 3.1 Instruct, Qwen2.5 Instruct,
Phi-3.5-mini-instruct) and SmolLM2-135M-Instruct's tokenizer.chat_template, read from the GGUF that
tools/fetch_model.py fetches (also kept as tests/fixtures/chat/smollm2.jinja). The environment is the
one Hugging Face transformers renders chat templates in (trim_blocks, lstrip_blocks, loopcontrols,
raise_exception), with bos_token/eos_token as each model defines them. Llama 3.1 is rendered with
date_string and tools unset, so the template's own default date "26 Jul 2024" is used.

Each format gets three files, exact bytes, no trailing newline added:
  <format>.system.txt    system + user/assistant/user, add_generation_prompt=True
  <format>.nosystem.txt  the same without the system message,  add_generation_prompt=True
  <format>.nogen.txt     the system conversation,               add_generation_prompt=False
--check compares instead of writing and exits 1 on any difference.
"""
import argparse
import os
import subprocess
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "chat")
SHARED_TEMPLATES = os.path.normpath(os.path.join(ROOT, "..", "shared", "models", "templates"))

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
TURNS = [
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "What is 2+2?"},
]
CASES = {
    "system": ([SYSTEM] + TURNS, True),
    "nosystem": (TURNS, True),
    "nogen": ([SYSTEM] + TURNS, False),
}

# format -> (template source, special tokens as the model's tokenizer_config defines them)
FORMATS = {
    "llama3": ("meta-llama-Llama-3.1-8B-Instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "qwen2": ("Qwen-Qwen2.5-7B-Instruct.jinja", {"bos_token": None, "eos_token": "<|im_end|>"}),
    "phi3": ("microsoft-Phi-3.5-mini-instruct.jinja", {"bos_token": "<s>", "eos_token": "<|endoftext|>"}),
    "smollm2": ("gguf", None),  # template and special tokens from the GGUF's metadata
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def render(source, messages, add_generation_prompt, special):
    # As transformers' chat template rendering does (ImmutableSandboxedEnvironment, trim/lstrip).
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                        extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source).render(messages=messages, add_generation_prompt=add_generation_prompt, **special)


def smollm2_template(gguf_path):
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)
    tokens = r.fields["tokenizer.ggml.tokens"]

    def token(field):
        return tokens.contents(int(r.fields[field].contents()))

    special = {"bos_token": token("tokenizer.ggml.bos_token_id"), "eos_token": token("tokenizer.ggml.eos_token_id")}
    return r.fields["tokenizer.chat_template"].contents(), special


def main():
    ap = argparse.ArgumentParser(description="render chat templates into tests/fixtures/chat")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    ap.add_argument("--gguf", default=None, help="SmolLM2 GGUF (default: tools/fetch_model.py --print-path-only)")
    ap.add_argument("--templates", default=SHARED_TEMPLATES)
    args = ap.parse_args()

    gguf_path = args.gguf
    if gguf_path is None:
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "fetch_model.py"), "--print-path-only"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("render_chat_templates: SmolLM2 GGUF not fetched; run tools/fetch_model.py first")
        gguf_path = r.stdout.strip()

    os.makedirs(OUT, exist_ok=True)
    bad = 0
    for fmt, (src, special) in FORMATS.items():
        if src == "gguf":
            source, special = smollm2_template(gguf_path)
            jinja_copy = os.path.join(OUT, "smollm2.jinja")
            if args.check:
                with open(jinja_copy, encoding="utf-8") as f:
                    if f.read() != source:
                        print(f"DIFFERS: {jinja_copy}", file=sys.stderr)
                        bad += 1
            else:
                with open(jinja_copy, "w", encoding="utf-8", newline="") as f:
                    f.write(source)
            print(f"{fmt}: bos={special['bos_token']!r} eos={special['eos_token']!r} (from {gguf_path})", file=sys.stderr)
        else:
            with open(os.path.join(args.templates, src), encoding="utf-8") as f:
                source = f.read()
        for case, (messages, gen) in CASES.items():
            text = render(source, messages, gen, special)
            path = os.path.join(OUT, f"{fmt}.{case}.txt")
            if args.check:
                with open(path, "rb") as f:
                    same = f.read() == text.encode("utf-8")
                if not same:
                    print(f"DIFFERS: {path}", file=sys.stderr)
                    bad += 1
            else:
                with open(path, "wb") as f:
                    f.write(text.encode("utf-8"))
                print(f"wrote {os.path.relpath(path, ROOT)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
