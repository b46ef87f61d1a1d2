#!/usr/bin/env python3
"""Hostile-input probes (issue 22): regenerates every probe in a temporary folder, runs folio-cli on
each under /usr/bin/time -v with a time limit, and prints wall time, peak RSS, exit code and the
first line folio-cli wrote to stderr. Targets: every probe under 10 s with a clear error (or a clean
partial result), peak RSS under 1.5 GB.

  python3 tools/hostile_probes.py [--cli build/ci/app/folio-cli] [--timeout 60] [--markdown]
                                  [--only NAME[,NAME...]] [--keep DIR]

Needs /usr/bin/time (Debian package `time`, installed by tools/deps.sh) and `timeout` (coreutils).
Sparse files need a file system that supports them (the 2 GB probes use a few KiB of disk).
"""
import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORIES = os.path.join(ROOT, "resources/models/stories260K/stories260K.bin")

# --- probe files ---------------------------------------------------------------------------------


def words_line(size, spaces=True):
    words = [b"pump", b"valve", b"pressure", b"flow", b"log", b"state"]
    sep = b" " if spaces else b"x"
    unit = sep.join(words * 64) + sep
    reps = size // len(unit) + 1
    return (unit * reps)[:size]


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def sparse(path, head, size):
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def gguf_header(n_tensors, n_keys):
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_keys)


def gguf_str(s):
    return struct.pack("<Q", len(s)) + s


def pdf_file(objects, root=1):
    """A PDF from object bodies (1-based numbering), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    return bytes(out)


def text_page(parent, content_obj, font_obj):
    return (b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (parent, content_obj, font_obj))


def stream(data, extra=b""):
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def nested_page_tree_pdf(depth):
    # 1 catalog, 2 font, 3 content, 4 page, 5.. Pages nodes: 5 is the root, each the parent of the next.
    objects = [b"<< /Type /Catalog /Pages 5 0 R >>", FONT, stream(b"BT /F1 18 Tf 72 700 Td (deep) Tj ET"), None]
    first = 5
    for level in range(depth):
        num = first + level
        kid = num + 1 if level + 1 < depth else 4
        parent = b"" if level == 0 else b"/Parent %d 0 R " % (num - 1)
        objects.append(b"<< /Type /Pages %s/Kids [%d 0 R] /Count 1 >>" % (parent, kid))
    objects[3] = text_page(first + depth - 1, 3, 2)
    return pdf_file(objects)


def inflating_pdf(inflated_bytes):
    # One page whose content stream is small on disk and inflates to inflated_bytes.
    comp = zlib.compressobj(9)
    chunk = b"q Q " * (1 << 18)
    parts = [comp.compress(b"BT /F1 18 Tf 72 700 Td (bomb) Tj ET\n")]
    for _ in range(inflated_bytes // len(chunk)):
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    data = b"".join(parts)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               text_page(2, 4, 5), stream(data, b"/Filter /FlateDecode "), FONT]
    return pdf_file(objects)


def damaged_page_pdf():
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
               text_page(2, 4, 7), stream(b"BT /F1 18 Tf 72 700 Td (first page) Tj ET"),
               text_page(2, 6, 7), stream(b"\x9c" * 64, b"/Filter /FlateDecode "), FONT]
    return pdf_file(objects)


LLAMA_CONFIG = (b'{"architectures":["LlamaForCausalLM"],"vocab_size":512,"hidden_size":%s,'
                b'"intermediate_size":64,"num_hidden_layers":1,"num_attention_heads":4,'
                b'"num_key_value_heads":4,"max_position_embeddings":256}')


def model_folder(base, name, config, safetensors):
    d = os.path.join(base, name)
    os.makedirs(d, exist_ok=True)
    write(os.path.join(d, "config.json"), config)
    write(os.path.join(d, "model.safetensors"), safetensors)
    shutil.copy(os.path.join(ROOT, "resources/models/stories260K/tok512.bin"), os.path.join(d, "tokenizer.bin"))
    return d


def make_probes(tmp):
    """(name, what it is, argv after folio-cli) for every probe; files are written into tmp."""
    model = ["--model", STORIES]
    ask = ["--ask", "What is logged?", "--fit", "error"]
    probes = []

    def doc(name, what, path, extra=None):
        probes.append((name, what, model + ["--file", path] + (extra or ask)))

    fifo = os.path.join(tmp, "fifo.txt")
    os.mkfifo(fifo)
    doc("fifo", "a FIFO as a document", fifo)
    doc("dev-zero", "/dev/zero as a document", "/dev/zero")
    doc("one-line-50mb", "50 MB text on one line (words)", write(os.path.join(tmp, "one-line.txt"), words_line(50 << 20)))
    doc("one-line-50mb-nospace", "50 MB text on one line, no spaces",
        write(os.path.join(tmp, "one-word.txt"), words_line(50 << 20, spaces=False)))
    doc("one-line-50mb-packed", "50 MB one-line text, --fit relevant",
        os.path.join(tmp, "one-line.txt"), ["--ask", "What is logged?", "--fit", "relevant", "--print-prompt"])
    big = os.path.join(tmp, "lines-240mb.txt")
    with open(big, "wb") as f:
        line = b"the pump log records pressure, flow and the valve state at each tick\n"
        block = line * ((1 << 20) // len(line))
        for _ in range(240):
            f.write(block)
    doc("lines-240mb", "240 MB text of short lines (near the 256 MiB limit)", big)
    doc("lines-240mb-packed", "240 MB text of short lines, --fit relevant", big,
        ["--ask", "What is logged?", "--fit", "relevant", "--print-prompt"])
    probes.append(("lines-240mb-packed-4k", "240 MB text, --fit relevant, 4K context (needle model)",
                   ["--model", os.path.join(ROOT, "resources/models/folio-needle"), "--file", big, "--ctx", "4096",
                    "--ask", "What is logged?", "--fit", "relevant", "--print-prompt"]))
    doc("sparse-2gb-text", "2 GB sparse file as a document", sparse(os.path.join(tmp, "sparse.txt"), b"text", 2 << 30))
    doc("empty-file", "a 0-byte document", write(os.path.join(tmp, "empty.txt"), b""))
    doc("one-byte-file", "a 1-byte document", write(os.path.join(tmp, "one.txt"), b"\x01"))
    loop_a, loop_b = os.path.join(tmp, "loop-a.txt"), os.path.join(tmp, "loop-b.txt")
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    doc("symlink-loop", "a symbolic link loop as a document", loop_a)
    tree = os.path.join(tmp, "tree")
    os.makedirs(tree)
    write(os.path.join(tree, "main.cpp"), b"int main() { return 0; }\n")
    write(os.path.join(tree.encode(), b"bad\xff\xfename.cpp"), b"int x;\n")
    write(os.path.join(tree, "esc\x1b[31mred.cpp"), b"int y;\n")
    os.symlink("loop2", os.path.join(tree, "loop1"))
    os.symlink("loop1", os.path.join(tree, "loop2"))
    probes.append(("tree-odd-names", "folder: non-UTF-8 name, escape codes, link loop",
                   model + ["--file", tree, "--ask", "What is here?", "--print-prompt"]))
    doc("pdf-nested-2000", "PDF page tree nested 2,000 levels", write(os.path.join(tmp, "nested.pdf"),
                                                                     nested_page_tree_pdf(2000)))
    doc("pdf-inflate-1gib", "PDF content stream inflating to 1 GiB",
        write(os.path.join(tmp, "inflate.pdf"), inflating_pdf(1 << 30)))
    doc("pdf-damaged-page", "PDF with one page that cannot be read",
        write(os.path.join(tmp, "damaged.pdf"), damaged_page_pdf()), ["--ask", "What?", "--print-prompt"])

    # Models.
    gen = ["--prompt", "Once", "--max-tokens", "1"]
    header = 99_000_000  # under the format's 100 MB limit: the nesting scan refuses it
    st = struct.pack("<Q", header) + b"[" * header
    probes.append(("safetensors-header-100mb", "safetensors header of 99 MB of '['",
                   ["--model", model_folder(tmp, "brackets", LLAMA_CONFIG % b"64", st)] + gen))
    ok_st = struct.pack("<Q", 2) + b"{}"
    probes.append(("config-hidden-2^32+64", "config.json hidden_size 4294967360",
                   ["--model", model_folder(tmp, "wide", LLAMA_CONFIG % b"4294967360", ok_st)] + gen))
    g = gguf_header(0, 1) + gguf_str(b"tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 0, 1 << 31)
    probes.append(("gguf-array-2^31", "GGUF array of 2^31 items over a 2 GB sparse file",
                   ["--model", sparse(os.path.join(tmp, "array.gguf"), g, (2 << 30) + 4096)] + gen))
    g = gguf_header(0, 1) + gguf_str(b"tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, (1 << 30) // 4)
    probes.append(("gguf-array-sparse", "GGUF float array of 2^28 items, sparse file",
                   ["--model", sparse(os.path.join(tmp, "floats.gguf"), g, (1 << 30) + 4096)] + gen))
    g = gguf_header(1, 0) + gguf_str(b"blk.0\x1b]0;pwned\x07\x00\x1b[2Jname") + struct.pack("<IQ", 1, 0)
    probes.append(("gguf-tensor-name-escapes", "GGUF tensor name with escape codes and NUL",
                   ["--model", write(os.path.join(tmp, "names.gguf"), g)] + gen))
    return probes

# --- running -------------------------------------------------------------------------------------


def run_probe(cli, argv, timeout_s):
    cmd = ["/usr/bin/time", "-v", "timeout", "-s", "KILL", str(timeout_s), cli] + argv
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.decode("utf-8", "backslashreplace")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", err)
    seconds = (int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))) if wall else -1.0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rss_mib = int(rss.group(1)) / 1024.0 if rss else -1.0
    lines = [l for l in err.splitlines() if l.startswith("folio-cli")]
    # The error when there is one, else the first note.
    first = next((l for l in lines if ": error:" in l), lines[0] if lines else "")
    killed = "Command terminated by signal 9" in err or p.returncode in (124, 137)
    return p.returncode, seconds, rss_mib, first, killed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build/ci/app/folio-cli"))
    ap.add_argument("--timeout", type=int, default=60, help="seconds before a probe is killed (default 60)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--only", default="", help="comma-separated probe names")
    ap.add_argument("--keep", default="", help="write the probes here and keep them")
    args = ap.parse_args()
    if not os.path.exists("/usr/bin/time"):
        sys.exit("hostile_probes: /usr/bin/time is missing; run tools/deps.sh (package `time`)")
    if not os.access(args.cli, os.X_OK):
        sys.exit("hostile_probes: no folio-cli at %s; build it or pass --cli" % args.cli)
    tmp = args.keep or tempfile.mkdtemp(prefix="folio-probes-")
    os.makedirs(tmp, exist_ok=True)
    only = set(filter(None, args.only.split(",")))
    failures = 0
    try:
        probes = make_probes(tmp)
        if args.markdown:
            print("| probe | input | time (s) | peak RSS (MiB) | exit | what folio-cli said |")
            print("|---|---|---:|---:|---:|---|")
        for name, what, argv in probes:
            if only and name not in only:
                continue
            code, seconds, rss, first, killed = run_probe(args.cli, argv, args.timeout)
            ok = not killed and seconds < 10 and rss < 1536 and code in (0, 1)
            failures += 0 if ok else 1
            said = ("KILLED after %d s (time limit)" % args.timeout) if killed else first
            said = said.replace("|", "\\|")
            if len(said) > 240:
                said = said[:237] + "..."
            if args.markdown:
                print("| %s%s | %s | %.2f | %.0f | %d | %s |" % (name, "" if ok else " **(over target)**", what,
                                                               seconds, rss, code, said))
            else:
                print("%-26s %7.2f s %8.0f MiB exit %3d %s %s" % (name, seconds, rss, code, "ok  " if ok else "OVER",
                                                                said))
            sys.stdout.flush()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
