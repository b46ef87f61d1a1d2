#!/usr/bin/env python3
"""Ask Folio (folio-cli, CPU) the questions of eval.py's Folio set and compare with transformers.

  python3 tools/needle/eval_folio.py --results EVAL_JSON [--model resources/models/folio-needle]
      [--data .needle] [--cli build/release/app/folio-cli] [--backend cpu]

EVAL_JSON is what `eval.py --folio-set N --json EVAL_JSON` wrote on the GPU machine: its samples
with i >= 1000 are rebuilt here from their seeds (same generator, filler and tokenizer), written to
a scratch folder as document.txt and asked with

  folio-cli --model MODEL --file document.txt --ask QUESTION --temperature 0 --max-tokens N

from that folder. folio-cli sends the app's prompt (tasks.wrap "gui"), which is how eval.py lays
out the Folio set; the script checks first that `folio-cli --print-prompt` gives exactly the
prompt eval.py gave transformers, and that `folio-cli tokenize` gives the same ids. Results made
before the Folio set used the app's prompt (format "cli") are refused: run eval.py again. Prints
one line per sample and the counts; exits 1 when an answer differs from transformers'.

Without --results, --cells asks Folio alone (no transformers to compare with) the seeded eval
samples of eval.py in the app's layout and scores them: exact (the expected sentence) and found
(every value asked for appears as a whole in the answer, whatever the wording; a model trained on other
answer sentences is judged by this one). This is how the CPU baseline of docs/needle.md was
measured:

  python3 tools/needle/eval_folio.py --cells single:4096:50,single:8192:50 --generator 3 --split eval
      --model resources/models/folio-needle --data .needle --threads 1 --json baseline.json
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval as needle_eval  # noqa: E402
import tasks  # noqa: E402


def ask(args, cli, model, tmp, s, max_new):
    """folio-cli's answer to a sample (its document written to tmp/document.txt), and seconds."""
    with open(os.path.join(tmp, needle_eval.DOC_NAME), "w", encoding="utf-8") as f:
        f.write(s["document"])
    t = time.time()
    cmd = [cli, "--model", model, "--backend", args.backend, "--file", needle_eval.DOC_NAME, "--ask", s["question"],
           "--temperature", "0", "--max-tokens", str(max_new), "--quiet"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("folio-cli failed: " + out.stderr)
    return out.stdout.strip(), time.time() - t


def names(text, item):
    """Whether text names item as a whole (180 is not named by 1800 or 20-180-4)."""
    return re.search(r"(?<![\w.:-])%s(?![\w:-]|\.\d)" % re.escape(item), text) is not None


def cells(args, sp, cli, model):
    """Folio alone on seeded eval samples (--cells TASK:LENGTH:N,...): exact and found counts."""
    filler = tasks.Filler(needle_eval.filler_path(args.data, args.generator, args.split), sp)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells.split(","):
            task, length, n = cell.split(":")
            length, n = int(length), int(n)
            exact = found = 0
            for i in range(n):
                s = needle_eval.eval_sample(filler, sp, task, length, i, "gui", args.generator, args.split)
                pred, sec = ask(args, cli, model, tmp, s, needle_eval.MAX_NEW[task])
                ok, hit = pred == s["answer"], all(names(pred, item) for item in s["items"])
                exact += ok
                found += hit
                results.append({"task": task, "length": length, "i": i, "prompt_tokens": len(s["ids"]),
                                "question": s["question"], "answer": s["answer"], "items": s["items"],
                                "predicted": pred, "exact": ok, "found": hit, "seconds": round(sec, 1)})
                print("%s %d #%d %5d tokens %5.1f s exact %d found %d | %s | %s" %
                      (task, length, i, len(s["ids"]), sec, ok, hit, s["answer"], pred), flush=True)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump({"model": model, "generator_version": args.generator, "split": args.split,
                                   "results": results}, f, indent=0)
            print("CELL %s %d: exact %d/%d, found %d/%d" % (task, length, exact, n, found, n), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=None)
    ap.add_argument("--cells", default=None, help="TASK:LENGTH:N,... asked of Folio alone (no --results)")
    ap.add_argument("--generator", type=int, default=6, choices=[2, 3, 4, 5, 6])
    ap.add_argument("--split", default="eval")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--model", default="resources/models/folio-needle")
    ap.add_argument("--data", default=".needle")
    ap.add_argument("--cli", default="build/release/app/folio-cli")
    ap.add_argument("--backend", default="cpu")
    args = ap.parse_args()
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    cli = os.path.abspath(args.cli)
    model = os.path.abspath(args.model)
    if args.cells:
        return cells(args, sp, cli, model)
    if not args.results:
        sys.exit("give --results EVAL_JSON or --cells")
    with open(args.results) as f:
        run = json.load(f)
    generator, split = run.get("generator_version", 2), run.get("split", "eval")
    filler = tasks.Filler(needle_eval.filler_path(args.data, generator, split), sp)
    ref = [r for r in run["results"] if r["i"] >= 1000]
    if not ref:
        sys.exit("no Folio set in %s (run eval.py with --folio-set N)" % args.results)
    if any(r["format"] != "gui" for r in ref):
        sys.exit("the Folio set in %s is not in the prompt folio-cli sends (format gui); run eval.py "
                 "--folio-set N again" % args.results)
    same = right_folio = right_hf = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in ref:
            s = needle_eval.eval_sample(filler, sp, r["task"], r["length"], r["i"], r["format"], generator, split)
            assert len(s["ids"]) == r["prompt_tokens"], "sample %s differs from the GPU machine's" % r
            doc = os.path.join(tmp, needle_eval.DOC_NAME)
            with open(doc, "w", encoding="utf-8") as f:
                f.write(s["document"])
            tok = subprocess.run([cli, "tokenize", "--model", model, s["prompt"]], capture_output=True, text=True,
                                 check=True)
            assert [int(x) for x in tok.stdout.split()] == s["ids"], "Folio tokenizes the prompt differently"
            shown = subprocess.run([cli, "--model", model, "--file", needle_eval.DOC_NAME, "--ask", s["question"],
                                    "--print-prompt", "--quiet"], cwd=tmp, capture_output=True, check=True)
            assert shown.stdout.decode("utf-8") == s["prompt"], "folio-cli sends another prompt than eval.py's"
            t = time.time()
            out = subprocess.run([cli, "--model", model, "--backend", args.backend, "--file", needle_eval.DOC_NAME,
                                  "--ask", s["question"], "--temperature", "0", "--max-tokens",
                                  str(needle_eval.MAX_NEW[r["task"]]), "--quiet"],
                                 cwd=tmp, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit("folio-cli failed: " + out.stderr)
            pred = out.stdout.strip()
            agree = pred == r["predicted"].strip()
            same += agree
            right_folio += pred == r["answer"]
            right_hf += r["score"] == 1.0
            print("%-10s %5d tokens %5.1f s %s\n  expected:     %s\n  folio:        %s\n  transformers: %s" %
                  (r["task"], len(s["ids"]), time.time() - t, "same" if agree else "DIFFERENT", r["answer"], pred,
                   r["predicted"].strip()), flush=True)
    print("%d of %d answers the same as transformers; right: folio %d, transformers %d" %
          (same, len(ref), right_folio, right_hf))
    return 0 if same == len(ref) else 1


if __name__ == "__main__":
    sys.exit(main())
