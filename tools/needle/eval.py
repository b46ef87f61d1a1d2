#!/usr/bin/env python3
"""Evaluate folio-needle through transformers on the GPU: accuracy per task and length, greedy.

  PYTHONUNBUFFERED=1 python3 tools/needle/eval.py --model resources/models/folio-needle --data .needle \\
      [--generator 6|5|4|3|2] [--split eval|train] [--lengths 4096,8192,16384,32768,65536,131072] [--n 50]
      [--json results.json] [--card]

--generator 6 (the default), 5 or 4: grammar.py's samples (seeds "eval6-...", "eval5-..." and "eval4-...",
the held-out split of all three with "eval4-...", the same samples; --generator 3: the frozen
grammar3.py's, seeds "eval3-..."), --split eval the held-out split (its frames,
words, attributes, value kinds and filler, filler-eval.txt), --split train the training grammar
and filler with seeds training never uses ("evalV-SPLIT-TASK-LENGTH-I-FORMAT", V the generator;
training uses "trainV-SEED-STEP"). --generator 2: tasks.py over filler.txt, the first model's tasks
("eval-TASK-LENGTH-I"; training used "train-SEED-STEP"). Both use RULER's usual fixed counts:
multikey 4 keys, multivalue 4 values, kv 8 pairs (generator 2), vt 4 hops with a 4-hop
distractor chain. The main rows wrap the document in the user turn
(tasks.wrap "cli"); prompt and answer fit in LENGTH tokens. Rows "single (app layout)" use the
prompt the app and `folio-cli --ask QUESTION --file document.txt` send (tasks.wrap "gui"), as do
the samples of --folio-set.

Score: whether greedy decoding gives exactly the expected answer and then <|im_end|>. It is found
in one forward pass over prompt + expected answer: greedy decoding reproduces the answer exactly
when, at every answer position, the argmax is the next answer token (by induction over the
steps), so no decoding loop is needed; the samples of --folio-set are decoded for real (their
text is what eval_folio.py compares with Folio's).

--folio-set N also writes N samples per task at 4096 tokens with their transformers answers
(for eval_folio.py, which asks Folio the same questions on the CPU). --card writes the table into
the model's README.md, one "## Accuracy: ..." section per generator and split.
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grammar  # noqa: E402
import grammar3  # noqa: E402
import tasks  # noqa: E402

MAX_NEW = {"single": 48, "multikey": 48, "kv": 32, "multivalue": 80, "vt": 80, "manual": 64}
DOC_NAME = "document.txt"
_G = {}


def filler_path(data, generator, split):
    """The filler a generator's split reads: version 2 its one file, versions 3 and 4 one file a split."""
    if generator == 2:
        return os.path.join(data, "filler.txt")
    return os.path.join(data, "filler-%s.txt" % split)


def grammar_module(generator):
    return grammar if generator >= 4 else grammar3


def generator_tasks(generator):
    return tasks.TASKS if generator == 2 else grammar_module(generator).TASKS


def eval_sample(filler, sp, task, length, i, fmt="cli", generator=2, split="eval"):
    """The seeded eval sample (task, length, i): prompt ids at most `length` tokens.

    generator 2: tasks.py (seeds "eval-..."); generators 6, 5 and 4 (grammar.py) and 3 (grammar3.py):
    a split, "eval" (held out) or "train" (the training grammar and filler, with seeds training never
    uses: "eval6-...", "eval5-...", "eval4-..." or "eval3-..."; generators 6 and 5's held-out split
    uses generator 4's seeds, whose samples are the same).
    """
    target = length
    gmod = grammar_module(generator)
    g = None  # generator 2: tasks.py has no Grammar
    if generator >= 4:
        g = grammar.Grammar(split, version=generator)
    elif generator == 3:
        g = grammar3.Grammar(split)
    for attempt in range(8):
        tail = "" if attempt == 0 else "-%d" % attempt
        if generator == 2:
            rng = random.Random("eval-%s-%d-%d-%s%s" % (task, length, i, fmt, tail))
            s = tasks.make_sample(rng, filler, task, target, fmt=fmt, train=False, name=DOC_NAME)
        else:
            # generators 5 and 6 hold out generator 4's split: the same seeds give the same samples
            v = 4 if generator >= 5 and split == "eval" else generator
            rng = random.Random("eval%d-%s-%s-%d-%d-%s%s" % (v, split, task, length, i, fmt, tail))
            s = gmod.make_sample(rng, filler, task, target, split, fmt=fmt, train=False, name=DOC_NAME,
                                    grammar=g)
        ids = sp.encode(s["prompt"])
        if len(ids) + 64 <= length:
            s["ids"] = ids
            return s
        target -= len(ids) + 64 - length + 16
    raise RuntimeError("could not fit a sample in %d tokens" % length)


def _init(data, tokenizer, generator, split):
    import sentencepiece as spm
    _G["sp"] = spm.SentencePieceProcessor(model_file=tokenizer)
    _G["filler"] = tasks.Filler(filler_path(data, generator, split), _G["sp"])
    _G["generator"], _G["split"] = generator, split


def _make(spec):
    task, length, i, fmt = spec
    s = eval_sample(_G["filler"], _G["sp"], task, length, i, fmt, _G["generator"], _G["split"])
    return spec, s["ids"], s["answer"], s["items"], _G["sp"].encode(s["answer"])


def greedy_matches(model, ids, answer_ids, stop_id, device):
    """(exact, first wrong answer position or -1) of greedy decoding against answer + stop."""
    import torch
    want = answer_ids + [stop_id]
    with torch.no_grad():
        x = torch.tensor([ids + want[:-1]], device=device)
        logits = model(input_ids=x, use_cache=False, logits_to_keep=len(want)).logits[0]
        got = logits.argmax(-1).tolist()
    wrong = [k for k, (g, w) in enumerate(zip(got, want)) if g != w]
    return not wrong, (wrong[0] if wrong else -1)


def greedy(model, ids, max_new, stop_id, device):
    import torch
    with torch.no_grad():
        x = torch.tensor([ids], device=device)
        out = model(input_ids=x, use_cache=True, logits_to_keep=1)
        past = out.past_key_values
        nxt = int(out.logits[0, -1].argmax())
        got = []
        for _ in range(max_new):
            if nxt == stop_id:
                break
            got.append(nxt)
            out = model(input_ids=torch.tensor([[nxt]], device=device), past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = int(out.logits[0, -1].argmax())
        return got


def table(results, lengths, generator=2):
    rows = [(t, "cli") for t in generator_tasks(generator)] + [("single", "gui")]
    names = {"single": "single needle", "multikey": "multi-needle (4 keys, 1 asked)",
             "multivalue": "multi-value (4 values)", "kv": "key-value (8 random keys)",
             "vt": "variable tracking (4 hops)", "manual": "manual question"}
    head = "| task | " + " | ".join("%dK" % (L // 1024) for L in lengths) + " |"
    out = [head, "|" + "---|" * (len(lengths) + 1)]
    for task, fmt in rows:
        cells, any_ = [], False
        for L in lengths:
            rs = [r["score"] for r in results if r["task"] == task and r["length"] == L and r["format"] == fmt]
            cells.append("%.0f%% (%d)" % (100 * sum(rs) / len(rs), len(rs)) if rs else "-")
            any_ = any_ or bool(rs)
        if any_:
            label = names[task] + (" (app layout)" if fmt == "gui" else "")
            out.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resources/models/folio-needle")
    ap.add_argument("--data", default=".needle")
    ap.add_argument("--lengths", default="4096,8192,16384,32768,65536,131072")
    ap.add_argument("--generator", type=int, default=6, choices=[2, 3, 4, 5, 6],
                    help="6, 5 or 4: grammar.py, 3: grammar3.py (filler-SPLIT.txt); 2: tasks.py, the first model's "
                         "(filler.txt)")
    ap.add_argument("--split", default="eval", choices=list(grammar.SPLITS),
                    help="generators 3-6: eval (held out) or train (training-style, unseen seeds)")
    ap.add_argument("--tasks", default=None, help="default: every task of the generator")
    ap.add_argument("--n", type=int, default=50, help="samples per task and length (single needle: twice)")
    ap.add_argument("--n-long", type=int, default=None, help="samples per task at 64K and more (default --n)")
    ap.add_argument("--gui-lengths", default="8192,32768", help="lengths of the app-layout single-needle rows")
    ap.add_argument("--folio-set", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--card", action="store_true")
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--max-seconds", type=float, default=1e9, help="skip what is left after this long")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM
    import sentencepiece as spm
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok_path = os.path.join(args.model, "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=tok_path)
    stop_id = sp.piece_to_id("<|im_end|>")
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, attn_implementation="sdpa").to(dev)
    model.eval()
    lengths = [int(x) for x in args.lengths.split(",") if x]
    task_list = args.tasks.split(",") if args.tasks else generator_tasks(args.generator)
    n_long = args.n_long if args.n_long is not None else args.n
    # The Folio set first, then task by task (most important first), so that --max-seconds cuts
    # the least important samples.
    # folio-cli sends the app's prompt: the Folio set is laid out that way.
    specs = [(t, 4096, 1000 + i, "gui") for t in generator_tasks(args.generator) for i in range(args.folio_set)]
    order = [t for t in ["single", "multikey", "kv", "manual", "vt", "multivalue"] if t in task_list]
    for task in order:
        for L in lengths:
            n = args.n if L <= 32768 else n_long
            specs += [(task, L, i, "cli") for i in range(2 * n if task == "single" else n)]
    for L in [int(x) for x in args.gui_lengths.split(",") if x]:
        specs += [("single", L, i, "gui") for i in range(args.n)]

    results, t0 = [], time.time()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers, initializer=_init, initargs=(args.data, tok_path, args.generator, args.split)) as pool:
        for (task, L, i, fmt), ids, answer, items, answer_ids in pool.imap(_make, specs, chunksize=1):
            if time.time() - t0 > args.max_seconds:
                print("time is up: %d of %d samples left out" % (len(specs) - len(results), len(specs)))
                pool.terminate()
                break
            ok, wrong_at = greedy_matches(model, ids, answer_ids, stop_id, dev)
            r = {"task": task, "length": L, "i": i, "format": fmt, "prompt_tokens": len(ids), "answer": answer,
                 "items": items, "score": 1.0 if ok else 0.0, "first_wrong": wrong_at}
            if i >= 1000:  # the Folio set: decoded, for eval_folio.py
                r["predicted"] = sp.decode(greedy(model, ids, MAX_NEW[task], stop_id, dev))
                assert (r["predicted"] == answer) == ok, "greedy decoding and the one-pass check disagree: %s" % r
            results.append(r)
            if len(results) % 100 == 0:
                print("%d/%d samples, %.0f s" % (len(results), len(specs), time.time() - t0), flush=True)
    main_results = [r for r in results if r["i"] < 1000]
    tab = table(main_results, lengths, args.generator)
    print(tab)
    print("evaluated %d samples in %.0f s" % (len(results), time.time() - t0))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": os.path.abspath(args.model), "generator_version": args.generator, "split": args.split,
                       "table": tab, "results": results}, f, indent=0)
    if args.card:
        # One section per generator and split ("## Accuracy" is the one the card starts with).
        card_path = os.path.join(args.model, "README.md")
        card = open(card_path).read()
        if args.generator == 2:
            what = "generator 2, the first model's tasks (tasks.py)"
        elif args.split == "eval":
            what = "generator %d, held-out split" % args.generator
        else:
            what = "generator %d, training-style split (seeds training never uses)" % args.generator
        title = "## Accuracy: " + what
        section = (title + "\n\nMeasured with tools/needle/eval.py through transformers (bf16, SDPA, dense "
                   "attention, greedy) on seeded eval sets that training never saw; the prompt is folio-cli's "
                   "(one user turn with the document, then the question); in brackets the number of samples. "
                   "Score: the greedy answer is exactly the expected sentence (which names the value, or all "
                   "the values, asked for).\n\n" + tab + "\n")
        card = card.replace("## Accuracy\n\nNot yet measured (tools/needle/eval.py writes this section).\n", "")
        head, found, rest = card.partition(title)
        if found:
            nxt = rest.find("\n## ")
            card = head + section + (rest[nxt + 1:] if nxt >= 0 else "")
        else:
            card = card.rstrip("\n") + "\n\n" + section
        with open(card_path, "w") as f:
            f.write(card)


if __name__ == "__main__":
    sys.exit(main())
