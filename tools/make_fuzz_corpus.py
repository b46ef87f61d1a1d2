#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into tests/fuzz/corpus/<target>/: small valid
files of each format (and a few near-misses), made with the standard library only.
Run: python3 tools/make_fuzz_corpus.py"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_file():
    kv = []
    kv.append(gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama"))
    kv.append(gguf_string("llama.block_count") + struct.pack("<II", 4, 1))
    kv.append(gguf_string("llama.rope.freq_base") + struct.pack("<If", 6, 10000.0))
    kv.append(gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) +
              gguf_string("<unk>") + gguf_string("a") + gguf_string("b"))
    kv.append(gguf_string("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, 3) + struct.pack("<3i", 2, 1, 1))
    tensors = [("t.f32", [2, 4], 0, 8 * 4), ("t.q8", [32, 1], 8, 34)]
    info = b""
    offset = 0
    blobs = []
    for name, dims, ggml_type, nbytes in tensors:
        info += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        info += struct.pack("<IQ", ggml_type, offset)
        blob = bytes((i * 7) & 0x7F for i in range(nbytes))
        blobs.append(blob + b"\0" * ((-len(blob)) % 32))
        offset += len(blobs[-1])
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + info
    head += b"\0" * ((-len(head)) % 32)
    return head + b"".join(blobs)


def safetensors_file():
    data = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0) + struct.pack("<2H", 0x3F80, 0xC000)
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [2], "data_offsets": [16, 20]},
              "__metadata__": {"format": "pt"}}
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def llama2c_file():
    dim, hidden, layers, heads, kv, vocab, seq = 8, 16, 1, 2, 1, 16, 4
    hs = dim // heads
    floats = (vocab * dim + layers * dim + layers * dim * dim + 2 * layers * kv * hs * dim + layers * dim * dim +
              layers * dim + 3 * layers * hidden * dim + dim + seq * hs)
    return struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq) + struct.pack("<%df" % floats, *([0.01] * floats))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    g = gguf_file()
    write("fuzz_gguf", "tiny.gguf", g)
    write("fuzz_gguf", "truncated.gguf", g[: len(g) // 2])
    s = safetensors_file()
    write("fuzz_safetensors", "tiny.safetensors", s)
    write("fuzz_safetensors", "truncated.safetensors", s[:-3])
    m = llama2c_file()
    write("fuzz_llama2c", "tiny.bin", m)
    write("fuzz_llama2c", "short.bin", m[:40])
    with open(os.path.join(ROOT, "resources", "models", "stories260K", "tok512.bin"), "rb") as f:
        tok = f.read()
    write("fuzz_tokenizer", "tok512.bin", tok)
    write("fuzz_tokenizer", "tok512-cut.bin", tok[:1000])
    fixtures = os.path.join(ROOT, "tests", "fixtures", "hf")
    for name in sorted(os.listdir(fixtures)):
        with open(os.path.join(fixtures, name, "config.json"), "rb") as f:
            write("fuzz_hf_config", name + ".json", f.read())


if __name__ == "__main__":
    main()
