#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into tests/fuzz/corpus/<target>/: small valid
files of each format (and a few near-misses), made with the standard library only.
Run: python3 tools/make_fuzz_corpus.py"""
import json
import os
import re
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


# A complete tiny Llama model (hidden 8, 2 heads, 1 KV head, 1 layer, FFN 16, vocabulary 16), F32.
TINY = dict(hidden=8, heads=2, kv=1, layers=1, ffn=16, vocab=16)


def tiny_tensors(naming):
    """(name, [rows, cols] or [n]) of every tensor of TINY, named the GGUF or the HF way."""
    h, hd = TINY["hidden"], TINY["hidden"] // TINY["heads"]
    kvd, f, v = TINY["kv"] * hd, TINY["ffn"], TINY["vocab"]
    if naming == "gguf":
        out = [("token_embd.weight", [v, h]), ("output_norm.weight", [h]), ("output.weight", [v, h])]
        p = "blk.0."
        out += [(p + "attn_norm.weight", [h]), (p + "ffn_norm.weight", [h]), (p + "attn_q.weight", [h, h]),
                (p + "attn_k.weight", [kvd, h]), (p + "attn_v.weight", [kvd, h]), (p + "attn_output.weight", [h, h]),
                (p + "ffn_gate.weight", [f, h]), (p + "ffn_up.weight", [f, h]), (p + "ffn_down.weight", [h, f])]
        return out
    out = [("model.embed_tokens.weight", [v, h]), ("model.norm.weight", [h]), ("lm_head.weight", [v, h])]
    p = "model.layers.0."
    out += [(p + "input_layernorm.weight", [h]), (p + "post_attention_layernorm.weight", [h]),
            (p + "self_attn.q_proj.weight", [h, h]), (p + "self_attn.k_proj.weight", [kvd, h]),
            (p + "self_attn.v_proj.weight", [kvd, h]), (p + "self_attn.o_proj.weight", [h, h]),
            (p + "mlp.gate_proj.weight", [f, h]), (p + "mlp.up_proj.weight", [f, h]),
            (p + "mlp.down_proj.weight", [h, f])]
    return out


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def gguf_model_file():
    t = TINY
    kv = [gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")]
    for key, value in [("llama.embedding_length", t["hidden"]), ("llama.feed_forward_length", t["ffn"]),
                       ("llama.block_count", t["layers"]), ("llama.attention.head_count", t["heads"]),
                       ("llama.attention.head_count_kv", t["kv"]), ("llama.context_length", 64)]:
        kv.append(gguf_string(key) + struct.pack("<II", 4, value))
    kv.append(gguf_string("llama.attention.layer_norm_rms_epsilon") + struct.pack("<If", 6, 1e-5))
    kv.append(gguf_string("tokenizer.ggml.model") + struct.pack("<I", 8) + gguf_string("llama"))
    pieces = ["<unk>", "<s>", "</s>"] + ["\u2581" + c for c in "abcdefg"] + list("abcdef")
    kv.append(gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(pieces)) +
              b"".join(gguf_string(x) for x in pieces))
    kv.append(gguf_string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, len(pieces)) +
              struct.pack("<%df" % len(pieces), *[-float(i) for i in range(len(pieces))]))
    kv.append(gguf_string("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, len(pieces)) +
              struct.pack("<%di" % len(pieces), *([2, 3, 3] + [1] * (len(pieces) - 3))))
    kv.append(gguf_string("tokenizer.ggml.bos_token_id") + struct.pack("<II", 4, 1))
    kv.append(gguf_string("tokenizer.ggml.eos_token_id") + struct.pack("<II", 4, 2))
    info, blobs, offset = b"", [], 0
    for name, shape in tiny_tensors("gguf"):
        dims = list(reversed(shape))  # GGUF lists the fastest-varying dimension first
        info += gguf_string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        info += struct.pack("<IQ", 0, offset)
        blob = struct.pack("<%df" % numel(shape), *[0.01 * ((i % 7) - 3) for i in range(numel(shape))])
        blobs.append(blob + b"\0" * ((-len(blob)) % 32))
        offset += len(blobs[-1])
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tiny_tensors("gguf")), len(kv)) + b"".join(kv) + info
    head += b"\0" * ((-len(head)) % 32)
    return head + b"".join(blobs)


def safetensors_model_input():
    """fuzz_safetensors_model's input: u32 length of config.json, config.json, model.safetensors."""
    t = TINY
    config = json.dumps({"architectures": ["LlamaForCausalLM"], "vocab_size": t["vocab"], "hidden_size": t["hidden"],
                         "intermediate_size": t["ffn"], "num_hidden_layers": t["layers"],
                         "num_attention_heads": t["heads"], "num_key_value_heads": t["kv"],
                         "max_position_embeddings": 64, "rms_norm_eps": 1e-5}).encode()
    header, data = {}, b""
    for name, shape in tiny_tensors("hf"):
        blob = struct.pack("<%df" % numel(shape), *[0.01] * numel(shape))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<I", len(config)) + config + struct.pack("<Q", len(h)) + h + data


def tokenizer_json():
    vocab = {"<s>": 0, "</s>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz \u0120.,!":
        vocab.setdefault(c, len(vocab))
    for m in ["ab", "cd", "\u0120a", "abcd"]:
        vocab.setdefault(m, len(vocab))
    return json.dumps({
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<s>", "special": True}, {"id": 1, "content": "</s>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "c d", "\u0120 a", "ab cd"]},
    }).encode()


def text_documents():
    return {
        "notes.md": "# Pump log\n\nThe pump log records pressure, flow and the valve state.\r\nLine two\n\n\n".encode(),
        "latin1.txt": "caf\xe9 cr\xe8me\n".encode("latin-1"),
        "bom.txt": b"\xef\xbb\xbfwith a BOM\nand two lines",
        "long-line.txt": b"word " * 2000,
        "binary.bin": bytes(range(32)) * 4,
    }


def text_files():
    """fuzz_text_file's seeds: the documents above plus every BOM, line breaks of each kind and a long line."""
    out = dict(text_documents())
    out.update({
        "utf16le.txt": b"\xff\xfe" + "two\r\nlines \u20ac\n".encode("utf-16-le"),
        "utf16be.txt": b"\xfe\xff" + "one line".encode("utf-16-be"),
        "utf32le.txt": b"\xff\xfe\x00\x00" + "x\ny".encode("utf-32-le"),
        "breaks.txt": b"a\rb\r\nc\n\rd\r\r\ne\n",
        "one-line-utf8.txt": "\u00e9\u20ac\U0001F600".encode() * 700,
    })
    return out


def pdf_file(objects, trailer_extra=b""):
    """A PDF from its objects (object 1 the catalog), with a correct xref table."""
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % (i + 1) + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R" % (len(objects) + 1) + trailer_extra + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return out


def pdf_files():
    """fuzz_pdf's seeds: two pages of text with page labels, a blank page, a short nested page tree."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    def content(text):
        stream = b"BT /F1 18 Tf 72 700 Td (" + text + b") Tj ET"
        return b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>"
    labelled = pdf_file([
        b"<< /Type /Catalog /Pages 2 0 R /PageLabels << /Nums [0 << /S /r >> 1 << /S /D /P (A-) >>] >> >>",
        b"<< /Type /Pages /Kids [4 0 R 6 0 R 8 0 R] /Count 3 >>", font,
        page % 5, content(b"The pump log records pressure."),
        page % 7, content(b"Valve state: open"),
        page % 9, b"<< /Length 0 >>\nstream\n\nendstream"])
    nested = [b"<< /Type /Catalog /Pages 5 0 R >>", font, content(b"deep"), b""]
    depth = 40
    for level in range(depth):
        parent = b"" if level == 0 else b"/Parent %d 0 R " % (4 + level)
        kid = 6 + level if level + 1 < depth else 4
        nested.append(b"<< /Type /Pages " + parent + b"/Kids [%d 0 R] /Count 1 >>" % kid)
    nested[3] = (b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
                 b"/Resources << /Font << /F1 2 0 R >> >> >>" % (4 + depth))
    return {"labelled.pdf": labelled, "nested-40.pdf": pdf_file(nested), "truncated.pdf": labelled[: len(labelled) // 2]}


def source_tree_input():
    """fuzz_source_tree's input: entries [kind][name length][name][length: 2 bytes, 16x + y][data]; kinds 0 file,
    1 folder (entered), 2 back to the parent, 3 symbolic link to data, 4 .gitignore of the folder."""
    def entry(kind, name, data=b""):
        n = len(data)
        return bytes([kind, len(name)]) + name + bytes([n >> 4, n % 16]) + data
    return (entry(0, b"main.cpp", b"int main() { return 0; }\n") + entry(4, b"", b"build/\n*.o\n!keep.o\n") +
            entry(1, b"src") + entry(0, b"a.py", b"print('hi')\n") + entry(0, b"bad\xff\xfe.c", b"int x;\n") +
            entry(3, b"loop1", b"loop2") + entry(3, b"loop2", b"loop1") + entry(3, b"up", b"..") + entry(2, b"") +
            entry(1, b"build") + entry(0, b"x.o", b"\x00\x01\x02") + entry(2, b"") +
            entry(0, b"esc\x1b[31m.md", b"# hi\n"))


def main():
    # Seeds grown by long fuzzing runs (merged with -merge=1, named by libFuzzer: 40 hex digits)
    # stay; everything this script writes is written anew.
    for target in os.listdir(OUT) if os.path.isdir(OUT) else []:
        for name in os.listdir(os.path.join(OUT, target)):
            if not re.fullmatch(r"[0-9a-f]{40}", name):
                os.remove(os.path.join(OUT, target, name))
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
    gm = gguf_model_file()
    write("fuzz_gguf_model", "tiny-llama.gguf", gm)
    write("fuzz_gguf_model", "tiny-llama-cut.gguf", gm[: len(gm) * 2 // 3])
    sm = safetensors_model_input()
    write("fuzz_safetensors_model", "tiny-llama.bin", sm)
    write("fuzz_safetensors_model", "tiny-llama-cut.bin", sm[:-40])
    write("fuzz_tokenizer_json", "small.json", tokenizer_json())
    write("fuzz_source_tree", "tree.bin", source_tree_input())
    for name, data in text_documents().items():
        write("fuzz_text_document", name, data)
    for name, data in text_files().items():
        write("fuzz_text_file", name, data)
    for name, data in pdf_files().items():
        write("fuzz_pdf", name, data)
    fixtures = os.path.join(ROOT, "tests", "fixtures", "hf")
    for name in sorted(os.listdir(fixtures)):
        with open(os.path.join(fixtures, name, "config.json"), "rb") as f:
            write("fuzz_hf_config", name + ".json", f.read())


if __name__ == "__main__":
    main()
