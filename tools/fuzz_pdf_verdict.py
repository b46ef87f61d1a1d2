#!/usr/bin/env python3
"""Decides whether a fuzz_pdf run (libFuzzer fork mode) found something in Folio's code.

Qt PDF (PDFium) itself hangs on some inputs and, on others, recurses until its stack overflows
(tests/fixtures/pdf/pdfium-recursion.pdf, found 2026-12-07). The app reads PDFs in a guarded
worker process that turns both into a clear error (tests/tst_hostile.cpp), so the fuzzer sets
them aside to reach Folio's own page handling. Everything else fails: any sanitizer report that is
not a stack overflow inside libQt6Pdf, a libFuzzer out-of-memory or leak, a UBSan runtime error.

Each crash-* artifact is run again alone (libFuzzer's fork mode saves inputs that crash while it
merges the corpus without printing their reports) and must end in such a stack overflow.

usage: fuzz_pdf_verdict.py LOG ARTIFACT_DIR FUZZ_BINARY   (exit 0: nothing of Folio's; 1: a finding)
"""
import os
import re
import subprocess
import sys


def reports(text):
    """The sanitizer reports of a libFuzzer log: each from its ERROR line to its SUMMARY line."""
    out, cur = [], None
    for line in text.splitlines():
        if re.search(r"==\d+==ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)", line):
            cur = [line]
            continue
        if cur is not None:
            if re.match(r"#\d+: cov: ", line):
                # fork mode with -ignore_crashes prints only a crash's first line; its artifact is
                # judged by running it again
                out.append("\n".join(cur + ["(abbreviated)"]))
                cur = None
                continue
            cur.append(line)
            if line.startswith("SUMMARY:"):
                out.append("\n".join(cur))
                cur = None
    if cur is not None:
        out.append("\n".join(cur))
    return out


def set_aside(report):
    """A stack overflow whose first frame past libFuzzer's and the sanitizer's own is in Qt PDF."""
    lines = report.splitlines()
    if "stack-overflow" not in lines[0]:
        return False
    for line in lines[1:]:
        if not re.match(r"\s+#\d+ ", line):
            continue
        if re.search(r"fuzzer::|__interceptor_|Interceptor|__asan|__sanitizer", line):
            continue
        return "libQt6Pdf" in line
    return False


def main():
    log, artifacts, binary = sys.argv[1], sys.argv[2], sys.argv[3]
    text = open(log, errors="replace").read()
    if not re.search(r"^#\d+: cov: ", text, re.M):
        print(f"no progress line in {log}: the fuzzer did not run")
        return 1
    names = sorted(os.listdir(artifacts)) if os.path.isdir(artifacts) else []
    crash_files = [n for n in names if n.startswith("crash-")]
    found = reports(text)
    abbreviated = [r for r in found if r.endswith("(abbreviated)")]
    findings = [r for r in found if not r.endswith("(abbreviated)") and not set_aside(r)]
    if abbreviated and not crash_files:
        findings.append(f"{len(abbreviated)} crashes in the log and no crash artifact to run again\n" + abbreviated[0])
    oom = re.search(r"ERROR: libFuzzer: out-of-memory[^\n]*", text)
    if oom:
        findings.append(oom.group(0))
    other = re.search(r"ERROR: libFuzzer: (deadly signal|fuzz target exited)[^\n]*", text)
    if other and not found:
        findings.append(other.group(0))
    if "runtime error:" in text:
        findings.append("UBSan: " + re.search(r"[^\n]*runtime error:[^\n]*", text).group(0))
    odd = [n for n in names if not n.startswith(("timeout-", "crash-"))]
    for name in crash_files:
        try:
            run = subprocess.run([binary, os.path.join(artifacts, name)], capture_output=True, text=True,
                                 errors="replace", timeout=120)
            again = reports(run.stdout + run.stderr)
        except subprocess.TimeoutExpired:
            again = []
        if not again or not all(set_aside(r) for r in again):
            findings.append(f"{name}: run again, it is not (only) a stack overflow inside Qt PDF" +
                            ("\n" + again[0] if again else ""))
    if odd:
        findings.append("artifacts: " + " ".join(odd))
    if findings:
        for f in findings:
            print("\n".join(f.splitlines()[:12]))
        return 1
    if names:
        print(f"(fuzz_pdf: PDFium hangs and stack overflows set aside: {' '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
