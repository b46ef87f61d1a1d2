#!/usr/bin/env python3
"""Dense against sparse prefill on folio-needle, or one KV cache type against another, through
folio-cli (CPU or GPU).

Rebuilds seeded eval samples (eval.py's generator, indices from 3000: never trained on, not in the
GPU sets) at one length and asks each twice, with --attention dense and --attention sparse (the
model's folio-sparse.json), then prints accuracy per task and mode, how often the two answers
agree, and the density sparse prefill used. --compare kv asks with --kv-dtype native and with
--kv-dtype KV (q8, or fp8 on cuda; issue 18's check of the 8-bit KV cache), both with --attention
ATTENTION (dense unless given). --sparse-config FILE gives the sparse runs another folio-sparse.json
than the model's (e.g. fewer estimation sample rows: "last_queries").

    python3 tools/needle/eval_sparse.py [--lengths 16384[,32768...]] [--n 6] [--tasks single,multikey]
        [--backend cpu|cuda] [--json FILE] [--generator 2-6] [--split eval|train]
        [--compare attention|kv] [--kv q8|fp8] [--attention dense|sparse|auto] [--sparse-config FILE]
        [--jobs N]

--generator 6 (the default, the installed model's grammar over filler-SPLIT.txt; --split eval is the
held-out split the sparse issues report against); 2 the first model's tasks over filler.txt.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval as needle_eval  # noqa: E402
import tasks  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resources/models/folio-needle")
    ap.add_argument("--data", default=".needle")
    ap.add_argument("--cli", default="build/release/app/folio-cli")
    ap.add_argument("--lengths", default="16384")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--tasks", default="single,multikey")
    ap.add_argument("--json", default="")
    ap.add_argument("--generator", type=int, default=6, choices=[2, 3, 4, 5, 6])
    ap.add_argument("--split", default="eval")
    ap.add_argument("--compare", default="attention", choices=["attention", "kv"])
    ap.add_argument("--kv", default="q8", help="--compare kv: the 8-bit type set against native (q8 or fp8)")
    ap.add_argument("--attention", default="dense", help="--compare kv: the attention of both runs")
    ap.add_argument("--jobs", type=int, default=1, help="samples asked side by side (each folio-cli run is one process); the per-run seconds "
                    "printed and saved (MODE_s) are then taken beside the other jobs: not per-run costs")
    ap.add_argument("--sparse-config", default="",
                    help="a folio-sparse.json for the sparse runs (default: the model's own)")
    args = ap.parse_args()
    sparse_config = ["--sparse-config", os.path.abspath(args.sparse_config)] if args.sparse_config else []
    if args.compare == "attention":
        modes = [("dense", ["--attention", "dense"]), ("sparse", ["--attention", "sparse", *sparse_config])]
    else:
        extra = sparse_config if args.attention != "dense" else []
        modes = [("native", ["--attention", args.attention, "--kv-dtype", "native", *extra]),
                 (args.kv, ["--attention", args.attention, "--kv-dtype", args.kv, *extra])]
    (a, _), (b, _) = modes
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    filler = tasks.Filler(needle_eval.filler_path(args.data, args.generator, args.split), sp)
    cli, model = os.path.abspath(args.cli), os.path.abspath(args.model)
    cells = [(int(n), t) for n in args.lengths.split(",") for t in args.tasks.split(",")]

    def ask(job):
        """One sample in both modes, in a scratch folder of its own (the samples of --jobs run side by side)."""
        length, task, i = job
        # The layout folio-cli --ask --file sends (the app's), so LENGTH bounds its prompt.
        s = needle_eval.eval_sample(filler, sp, task, length, i, "gui", args.generator, args.split)
        row = dict(task=task, length=length, i=i, tokens=len(s["ids"]), answer=s["answer"])
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, needle_eval.DOC_NAME), "w", encoding="utf-8") as f:
                f.write(s["document"])
            for mode, mode_args in modes:
                t = time.time()
                mj = os.path.join(tmp, "m.json")
                out = subprocess.run([cli, "--model", model, "--file", needle_eval.DOC_NAME, "--ask", s["question"],
                                      "--temperature", "0", "--max-tokens", str(needle_eval.MAX_NEW[task]),
                                      "--ctx", str(length + 64), *mode_args, "--backend", args.backend, "--quiet",
                                      "--metrics-json", mj], cwd=tmp, capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError("folio-cli failed: " + out.stderr)
                with open(mj) as f:
                    att = json.load(f)["attention"]
                row[mode] = out.stdout.strip()
                row[mode + "_s"] = round(time.time() - t, 1)
                if mode == b:  # the second run's density (sparse, or the KV comparison's attention)
                    row["density"] = att["density"]
                    row["est_mass"] = att["est_mass_mean"]
        return row

    def show(row):
        print("%-9s %5d tokens  %s %s (%.0f s)  %s %s (%.0f s, density %.3f)" %
              (row["task"], row["tokens"], a, "right" if row[a] == row["answer"] else "WRONG", row[a + "_s"],
               b, "right" if row[b] == row["answer"] else "WRONG", row[b + "_s"], row["density"]), flush=True)

    jobs = [(length, task, i) for length, task in cells for i in range(3000, 3000 + args.n)]
    rows = []
    try:
        if args.jobs <= 1:
            for job in jobs:
                rows.append(ask(job))
                show(rows[-1])
        else:
            # the sentencepiece processor and the filler are read-only here; each job builds its own sample
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                for row in pool.map(ask, jobs):  # in order, as they finish in turn
                    rows.append(row)
                    show(row)
    except RuntimeError as e:
        sys.exit(str(e))
    print("\n| task | length | samples | %s right | %s right | same answer | %s density |" % (a, b, b))
    print("|---|---|---|---|---|---|---|")
    for length, task in cells:
        r = [x for x in rows if x["task"] == task and x["length"] == length]
        print("| %s | %d | %d | %d | %d | %d | %.3f |" % (
            task, length, len(r), sum(x[a] == x["answer"] for x in r),
            sum(x[b] == x["answer"] for x in r), sum(x[a] == x[b] for x in r),
            sum(x["density"] for x in r) / len(r)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
