#!/usr/bin/env python3
"""Prepare the filler text for folio-needle: freely licensed English prose from Debian packages.

Sources (downloaded with `apt-get download`, unpacked with `dpkg -x` into a scratch folder; no
root install, nothing else is touched):

  bible-kjv-text + bible-kjv   the King James Bible (public domain), dumped with the package's own
                               `bible` reader
  debian-reference-en          the Debian Reference, plain-text edition (GPL-2+)
  doc-debian                   Debian's constitution, social contract and FAQ-like texts (free)

Output: OUTDIR/filler.txt, one paragraph per line (UTF-8, no tabs), and OUTDIR/filler.json with
the sources, package versions, paragraph counts and a SHA-256 of filler.txt. KJV chapters are cut
into paragraphs of 3-6 verses (verse numbers dropped); the Debian texts keep their prose
paragraphs (blocks between blank lines, re-wrapped) and leave out tables of contents, code and
short lines.

  python3 tools/needle/prepare_data.py [--out .needle] [--debs /tmp/folio-needle-debs]

Needs apt-get (Debian 12) and network access to the Debian archive; runs in a few seconds.
"""

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys

PACKAGES = ["bible-kjv", "bible-kjv-text", "debian-reference-en", "doc-debian"]


def fetch(debs):
    os.makedirs(debs, exist_ok=True)
    have = os.listdir(debs)
    missing = [p for p in PACKAGES if not any(f.startswith(p + "_") for f in have)]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    root = os.path.join(debs, "root")
    versions = {}
    for f in sorted(os.listdir(debs)):
        if f.endswith(".deb"):
            name, version = f.split("_")[:2]
            if name in PACKAGES:
                subprocess.run(["dpkg", "-x", os.path.join(debs, f), root], check=True)
                versions[name] = version
    return root, versions


def clean(s):
    s = s.replace("\t", " ")
    s = re.sub(r"\s+", " ", s).strip()
    return s


def kjv_paragraphs(root):
    out = subprocess.run([os.path.join(root, "usr/bin/bible"), "-p", os.path.join(root, "usr/lib"), "gen1:1-rev22:21"],
                         check=True, capture_output=True, text=True).stdout
    rng = random.Random(1611)
    paras, verses = [], []

    def flush():
        while verses:
            n = rng.randint(3, 6)
            paras.append(clean(" ".join(verses[:n])))
            del verses[:n]

    current = None
    for line in out.split("\n"):
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            if current is not None:
                verses.append(current)
            current = m.group(2)
        elif re.match(r"^[1-3]?\s?[A-Z][A-Za-z ]+ \d+$", line.strip()) or not line.strip():
            if current is not None:
                verses.append(current)
                current = None
            if line.strip():  # a chapter heading
                flush()
        elif current is not None:
            current += " " + line.strip()
    if current is not None:
        verses.append(current)
    flush()
    return [p for p in paras if len(p) > 20]


def prose_blocks(text):
    paras = []
    for block in re.split(r"\n\s*\n", text):
        lines = [l for l in block.split("\n") if l.strip()]
        if not lines:
            continue
        p = clean(" ".join(lines))
        letters = sum(c.isalpha() or c == " " for c in p)
        if len(p) < 80 or letters < 0.85 * len(p) or p[-1] not in ".:;!?)\"'":
            continue
        if re.search(r"[$#|<>{}\\]|\+--|\.\.\.\.", p):
            continue
        paras.append(p)
    return paras


def debian_paragraphs(root):
    paras = []
    with gzip.open(os.path.join(root, "usr/share/debian-reference/debian-reference.en.txt.gz"), "rt",
                   encoding="utf-8", errors="replace") as f:
        paras += prose_blocks(f.read())
    docdir = os.path.join(root, "usr/share/doc/debian")
    for name in sorted(os.listdir(docdir)):
        # The current constitution and social contract only (the old versions repeat them).
        if name not in ("constitution.txt.gz", "social-contract.txt.gz", "debian-manifesto.gz",
                        "bug-reporting.txt.gz", "mailing-lists.txt.gz"):
            continue
        with gzip.open(os.path.join(docdir, name), "rt", encoding="utf-8", errors="replace") as f:
            paras += prose_blocks(f.read())
    return paras


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".needle")
    ap.add_argument("--debs", default="/tmp/folio-needle-debs")
    args = ap.parse_args()
    root, versions = fetch(args.debs)
    kjv = kjv_paragraphs(root)
    deb = debian_paragraphs(root)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "filler.txt")
    text = "\n".join(kjv + deb) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    meta = {
        "packages": versions,
        "paragraphs": {"kjv": len(kjv), "debian": len(deb)},
        "kjv_first_line": 0,
        "debian_first_line": len(kjv),
        "bytes": len(text.encode()),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    with open(os.path.join(args.out, "filler.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    sys.exit(main())
