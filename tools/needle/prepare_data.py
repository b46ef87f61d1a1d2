#!/usr/bin/env python3
"""Prepare the filler text for folio-needle from Debian 12 packages under permissive licences.

Generators 4 (grammar.py) and 3 (grammar3.py) read the same two files the sources below are split
into (generator 4 also takes its training lexicon, words for keys and attributes, from filler-train.txt):

  OUTDIR/filler-train.txt   the training filler
    bible-kjv-text + bible-kjv   the King James Bible (public domain; the package's GPL-2+ `bible`
                                 reader only dumps it and is not part of the text)
    postgresql-doc-15            the PostgreSQL 15 manual, HTML (PostgreSQL licence)
    python3.11-doc               the Python 3.11 documentation, HTML (PSF-2.0; code examples 0BSD)
  OUTDIR/filler-eval.txt    held out: only evaluation reads it
    sqlite3-doc                  SQLite's documentation, HTML (public domain)

Each package's debian/copyright (usr/share/doc/PACKAGE/copyright) was read for these licences
(docs/needle.md has the table). Nothing GPL goes into either file.

--legacy writes OUTDIR/filler.txt as generator version 2 had it (King James Bible, the Debian
Reference, GPL-2+, and doc-debian), which the first model (generator 2) was trained on; only to reproduce
that model.

Output: one paragraph per line (UTF-8, no tabs), and FILE.json beside each file with the sources,
package versions, paragraph counts and a SHA-256 of the file. KJV chapters are cut into
paragraphs of 3-6 verses (verse numbers dropped); HTML manuals give their <p> paragraphs (text
only, re-wrapped), leaving out short ones, navigation and code. Packages are downloaded with
`apt-get download` and unpacked with `dpkg -x` into a scratch folder (no root install).

  python3 tools/needle/prepare_data.py [--out .needle] [--debs /tmp/folio-needle-debs] [--legacy]

Needs apt-get (Debian 12) and network access to the Debian archive; about a minute.
"""

import argparse
import gzip
import hashlib
import html.parser
import json
import os
import random
import re
import subprocess
import sys

LEGACY_PACKAGES = ["bible-kjv", "bible-kjv-text", "debian-reference-en", "doc-debian"]
TRAIN_PACKAGES = ["bible-kjv", "bible-kjv-text", "postgresql-doc-15", "python3.11-doc"]
EVAL_PACKAGES = ["sqlite3-doc"]
# The licence of the text each package gives (from its debian/copyright; docs/needle.md).
LICENCES = {"bible-kjv-text": "public domain (King James Version, 1611)",
            "bible-kjv": "GPL-2+ (the reader program only; used to dump the text, not in the output)",
            "postgresql-doc-15": "PostgreSQL", "python3.11-doc": "PSF-2.0 (examples 0BSD)",
            "sqlite3-doc": "public domain", "debian-reference-en": "GPL-2+", "doc-debian": "various free"}


def fetch(debs, packages):
    os.makedirs(debs, exist_ok=True)
    have = os.listdir(debs)
    missing = [p for p in packages if not any(f.startswith(p + "_") for f in have)]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True)
    root = os.path.join(debs, "root")
    versions = {}
    for f in sorted(os.listdir(debs)):
        if f.endswith(".deb"):
            name, version = f.split("_")[:2]
            if name in packages:
                subprocess.run(["dpkg", "-x", os.path.join(debs, f), root], check=True)
                versions[name] = version
    return root, versions


class _Paragraphs(html.parser.HTMLParser):
    """The text of each <p> element outside <pre>, <code> blocks, navigation and tables."""

    SKIP = {"pre", "script", "style", "nav", "table", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.buf, self.in_p, self.skip = [], [], False, 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag == "p":
            self._end()
            self.in_p = True
        elif tag in ("div", "li", "dd", "dt", "h1", "h2", "h3", "h4", "blockquote"):
            self._end()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "p":
            self._end()

    def handle_data(self, data):
        if self.in_p and not self.skip:
            self.buf.append(data)

    def _end(self):
        if self.in_p and self.buf:
            self.out.append(clean("".join(self.buf)))
        self.buf, self.in_p = [], False


def html_paragraphs(folder, skip=()):
    """Prose paragraphs of the HTML files under folder (sorted walk), deduplicated."""
    paras, seen = [], set()
    for dirpath, dirnames, files in os.walk(folder):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if d not in skip and not d.startswith("_")]
        for name in sorted(files):
            # Indexes, and SQLite's requirements list (other pages' sentences again, with markup).
            if not name.endswith(".html") or name.startswith(("genindex", "search", "py-modindex", "requirements")):
                continue
            parser = _Paragraphs()
            with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                parser.feed(f.read())
            parser.close()
            for p in parser.out:
                letters = sum(c.isalpha() or c == " " for c in p)
                if len(p) < 100 or letters < 0.8 * len(p) or p[-1] not in ".:;!?)\"'" or p in seen:
                    continue
                if "\n" in p or "\t" in p:
                    continue
                seen.add(p)
                paras.append(p)
    return paras


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


def write(path, parts, versions):
    """Writes the paragraphs of parts ({source: paragraphs}) to path and its metadata to path.json."""
    text = "\n".join(p for ps in parts.values() for p in ps) + "\n"
    assert "\t" not in text and "\n\n" not in text
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    meta = {"packages": versions, "licences": {p: LICENCES[p] for p in versions},
            "paragraphs": {k: len(v) for k, v in parts.items()}, "bytes": len(text.encode()),
            "sha256": hashlib.sha256(text.encode()).hexdigest()}
    with open(path[:-4] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    print(path, json.dumps(meta, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".needle")
    ap.add_argument("--debs", default="/tmp/folio-needle-debs")
    ap.add_argument("--legacy", action="store_true", help="filler.txt of generator version 2 (includes GPL-2+ text)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.legacy:
        root, versions = fetch(args.debs, TRAIN_PACKAGES + EVAL_PACKAGES)
        doc = os.path.join(root, "usr/share/doc")
        train = {"kjv": kjv_paragraphs(root),
                 "postgresql": html_paragraphs(os.path.join(doc, "postgresql-doc-15/html")),
                 "python": html_paragraphs(os.path.join(doc, "python3.11/html"), skip=("whatsnew",))}
        # Sources one after another (a filler window is consecutive paragraphs from a random
        # place, so a document reads as one manual, as a real one would).
        write(os.path.join(args.out, "filler-train.txt"), train,
              {p: versions[p] for p in TRAIN_PACKAGES})
        write(os.path.join(args.out, "filler-eval.txt"), {"sqlite": html_paragraphs(os.path.join(doc, "sqlite3"))},
              {p: versions[p] for p in EVAL_PACKAGES})
        return 0
    root, versions = fetch(args.debs, LEGACY_PACKAGES)
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
