#!/usr/bin/env python3
"""Train folio-needle from scratch on one GPU: an 11M-parameter Llama that retrieves facts from
documents of 4K-128K tokens (grammar.py; tasks.py for generator 2). The installed model (generator
6) took 6,000 steps of 128K tokens, 1,103 s on one H100; the first (generator 2) 1,900 steps, 320 s
on one H200.

  PYTHONUNBUFFERED=1 python3 tools/needle/train.py --data .needle --out OUTDIR [--steps N]
      [--generator 6|5|4|3|2] [--ckpt FILE] [--carry-in DIR] [--max-seconds S]
      [--init-from MODEL_DIR]

--data holds the filler (prepare_data.py: filler-train.txt for generators 6, the default, 5, 4 and 3;
filler.txt for generator 2, the first model's; either may be gzipped) and tokenizer.model
(train_tokenizer.py). OUTDIR gets
the model as transformers writes it (config.json, safetensors shards of at most 15 MB, bf16),
tokenizer.model, tokenizer_config.json (ChatML template), generation_config.json, README.md (the
model card: seeds, generator version, hyper-parameters; eval.py adds the accuracy table); the
log (train_log.jsonl: losses, answer-token accuracy, teacher-forced exact answers per task) goes
beside OUTDIR.

How it trains:
- LlamaForCausalLM from a config (hidden 384, 6 layers, 6 heads of 64, 2 KV heads, MLP 1024,
  tied embeddings, rope_theta 1e6, 131072 positions), fp32 master weights, bf16 autocast, SDPA
  (flash) causal attention, AdamW with warmup and cosine decay.
- Each step holds about --tokens-per-step tokens: rows of one length, which grows over the run
  (curriculum: 256-1536, 1K-6K, 3K-16K and 6K-32K tokens in 40%, 25%, 20% and 15% of the steps).
- Loss: mean cross-entropy on the answer tokens (and the closing <|im_end|>), plus --lm-weight
  times the mean next-token loss on all positions (document, template, question, answer): the
  plain language-model loss is what grows the induction heads that retrieval is made of.
- Position skipping (PoSE): in the last half, --pose of the batches jump the position ids once
  at a random place, so that the question sees the early document at distances up to 131072
  without the compute of such lengths.
- Batches are made by DataLoader workers from a seed per step: the run is reproducible up to the
  nondeterminism of GPU kernels.

Training in legs (a GPU command runs at most 10 minutes, a session holds a machine at most 30;
gpu_train.sh has the plan). The schedule depends only on --steps, so a run can stop after
--max-seconds and go on later:
- --ckpt FILE: the full state (fp32 weights, AdamW moments, next step, RNG states, seconds
  trained) is saved there when a leg stops (and every --ckpt-every steps), and a leg that finds
  FILE resumes from it exactly: the same batches, the same optimizer state (about 12 bytes a
  parameter: 135 MB for the 11M model, so it stays on the GPU machine's disk, between the calls
  of one session).
- OUTDIR-resume/resume.pt (with OUTDIR's bf16 weights): the compact state a leg also writes, small
  enough to come back through $OUT and be carried to a fresh machine (64 MiB a call, the
  repository included): next step, seconds trained, RNG states and AdamW's second moments
  factored (row and column sums of each matrix, Adafactor's approximation; vectors whole); the
  first moments are left out. --carry-in DIR (a folder with the model files and resume.pt)
  resumes from it when --ckpt is absent: the same batches from the next step on, weights
  rounded to bf16 once, first moments starting from zero (AdamW's bias correction does not
  know; their effect rebuilds in about 10 steps at beta1 0.9), second moments approximated.
- --init-from MODEL_DIR starts a run (not a resumed one) from a finished model's weights with a
  fresh optimizer and its own schedule of --steps: a second cycle that lengthens training beyond
  what one session's device time holds (the installed model is one such folder). Its tokenizer
  must be the data's; a resumed leg of such a run passes the same --init-from.
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grammar  # noqa: E402
import grammar3  # noqa: E402
import tasks  # noqa: E402

MODEL = dict(hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
             num_key_value_heads=2, head_dim=64, max_position_embeddings=131072, rope_theta=1.0e6,
             rms_norm_eps=1e-5, initializer_range=0.02)
TASK_WEIGHTS = {"single": 0.3, "multikey": 0.3, "multivalue": 0.1, "kv": 0.15, "vt": 0.15}  # generator 2
TASK_WEIGHTS_V3 = {"single": 0.3, "multikey": 0.3, "multivalue": 0.1, "vt": 0.15, "manual": 0.15}
FORMAT_WEIGHTS = {"cli": 0.5, "gui": 0.3, "plain": 0.2}
# (fraction of the steps, shortest, longest length in tokens), lengths log-uniform in between.
CURRICULUM = [(0.4, 256, 1536), (0.25, 1024, 6144), (0.2, 3072, 16384), (0.15, 6144, 32768)]

CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                 "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                 "{% endif %}")


def step_length(step, steps, rng):
    """The row length of a step, from the curriculum."""
    at, done = step / max(1, steps), 0.0
    for frac, lo, hi in CURRICULUM:
        done += frac
        if at < done or (frac, lo, hi) == CURRICULUM[-1]:
            return int(math.exp(rng.uniform(math.log(lo), math.log(hi)))) // 64 * 64
    raise AssertionError


class Batches(torch.utils.data.IterableDataset):
    """Yields the batch of each step; worker w makes steps w, w + workers, ... (DataLoader takes
    them round-robin, so step order is kept)."""

    def __init__(self, args, sp, filler, steps, first_step=0):
        self.args, self.sp, self.filler, self.steps, self.first_step = args, sp, filler, steps, first_step
        self.im_end = sp.piece_to_id("<|im_end|>")
        self.v3 = args.generator >= 3  # the grammars' tasks (generators 6, 5 and 4: grammar.py, 3: grammar3.py)
        self.gmod = grammar if args.generator >= 4 else grammar3
        self.weights = TASK_WEIGHTS_V3 if self.v3 else TASK_WEIGHTS
        self.task_names = self.gmod.TASKS if self.v3 else tasks.TASKS
        # --old-tasks: a share of the rows are generator 2's tasks (tasks.py: the first model's
        # templates, which the app's demo and tst_needle ask) over the same training filler
        self.old_share = args.old_tasks if self.v3 else 0.0
        if self.old_share:
            self.task_names = list(self.task_names) + ["v2-" + t for t in tasks.TASKS]
            # tasks.py's key words include held-out key words ("amber", "torch"): its keys here are
            # drawn from the rest only (workers fork after this, so they inherit the lists)
            tasks.ADJECTIVES = [w for w in tasks.ADJECTIVES if grammar.train_word_ok(w)]
            tasks.NOUNS = [w for w in tasks.NOUNS if grammar.train_word_ok(w)]
        self.grammar = None  # the training split only
        if args.generator >= 4:  # its lexicon (the training filler's words) made once, before the workers fork
            self.grammar = grammar.Grammar("train", lexicon=grammar.filler_lexicon(filler), version=args.generator)
        elif args.generator == 3:
            self.grammar = grammar3.Grammar("train")

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.first_step + wid, self.steps, nw):
            yield self.batch(step)

    def batch(self, step, force_pose=False):
        a = self.args
        prefix = "train%d" % a.generator if a.generator >= 3 else "train"
        rng = random.Random("%s-%d-%d" % (prefix, a.seed, step))
        length = step_length(step, self.steps, rng)
        rows = max(1, a.tokens_per_step // length)
        seqs, ans_spans, task_ids = [], [], []
        for _ in range(rows):
            task = rng.choices(list(self.weights), weights=list(self.weights.values()))[0]
            fmt = rng.choices(list(FORMAT_WEIGHTS), weights=list(FORMAT_WEIGHTS.values()))[0]
            if self.old_share and rng.random() < self.old_share:
                task = rng.choices(list(TASK_WEIGHTS), weights=list(TASK_WEIGHTS.values()))[0]
                s = tasks.make_sample(rng, self.filler, task, length, fmt=fmt, train=True)
                task = "v2-" + task
            elif self.v3:
                s = self.gmod.make_sample(rng, self.filler, task, length, "train", fmt=fmt, grammar=self.grammar)
            else:
                s = tasks.make_sample(rng, self.filler, task, length, fmt=fmt, train=True)
            p = self.sp.encode(s["prompt"])
            ans = self.sp.encode(s["answer"]) + [self.im_end]
            seqs.append(p + ans)
            ans_spans.append((len(p), len(p) + len(ans)))
            task_ids.append(self.task_names.index(task))
        T = max(len(x) for x in seqs)
        ids = np.zeros((rows, T), dtype=np.int64)
        for r, x in enumerate(seqs):
            ids[r, :len(x)] = x
        # Targets: position i predicts token i+1; -100 where nothing is predicted (padding).
        labels = np.full((rows, T), -100, dtype=np.int64)
        ans_idx, ans_tgt, ans_row = [], [], []
        for r, (x, (b, e)) in enumerate(zip(seqs, ans_spans)):
            labels[r, :len(x) - 1] = x[1:]
            for i in range(b - 1, e - 1):
                ans_idx.append(r * T + i)
                ans_tgt.append(x[i + 1])
                ans_row.append(r)
        pos = None
        progress = step / max(1, self.steps)
        if (force_pose or (progress >= 0.5 and rng.random() < a.pose)) and T < MODEL["max_position_embeddings"]:
            jump = rng.randrange(0, MODEL["max_position_embeddings"] - T)
            at = rng.randrange(1, T)
            p = np.arange(T, dtype=np.int64)
            p[at:] += jump
            pos = np.broadcast_to(p, (rows, T)).copy()
        out = {"step": step, "length": length, "ids": torch.from_numpy(ids),
               "ans_idx": torch.tensor(ans_idx), "ans_tgt": torch.tensor(ans_tgt), "ans_row": torch.tensor(ans_row),
               "task": torch.tensor(task_ids), "labels": torch.from_numpy(labels),
               "real_tokens": sum(len(x) for x in seqs)}
        if pos is not None:
            out["pos"] = torch.from_numpy(pos)
        return out


def build_model(vocab, im_end):
    from transformers import LlamaConfig, LlamaForCausalLM
    m = dict(MODEL)
    theta = m.pop("rope_theta")
    cfg = LlamaConfig(vocab_size=vocab, tie_word_embeddings=True, bos_token_id=1, eos_token_id=im_end,
                      pad_token_id=None, rope_parameters=dict(rope_type="default", rope_theta=theta),
                      attention_bias=False, mlp_bias=False, hidden_act="silu", **m)
    assert cfg.rope_parameters["rope_theta"] == theta, cfg.rope_parameters
    model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "embeddings not tied"
    return model


def disable_packed_sequence_detection():
    """transformers reads position ids that do not rise by one as packed sequences and masks them
    apart; PoSE's jump is one sequence, so that detection is turned off (no effect without jumps)."""
    import transformers.masking_utils as mu
    if hasattr(mu, "find_packed_sequence_indices"):
        mu.find_packed_sequence_indices = lambda *a, **k: None
        return True
    return False


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def write_model(model, sp_path, out, card):
    os.makedirs(out, exist_ok=True)
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out, max_shard_size="15MB")
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.bos_token_id = 1
    model.generation_config.do_sample = False
    model.generation_config.save_pretrained(out)
    shutil.copyfile(sp_path, os.path.join(out, "tokenizer.model"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False, "bos_token": "<s>", "eos_token": "<|im_end|>",
                   "unk_token": "<unk>", "pad_token": None, "model_max_length": MODEL["max_position_embeddings"],
                   "chat_template": CHAT_TEMPLATE}, f, indent=1)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(card)
    for name in os.listdir(out):
        size = os.path.getsize(os.path.join(out, name))
        assert size <= 16 << 20, "%s is %d bytes, more than 16 MiB" % (name, size)


def model_card(args, n_params, steps_done, seconds, log_tail):
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "the CPU"
    hp = {"model": MODEL, "vocab": args.vocab, "steps": args.steps, "steps_done": steps_done,
          "tokens_per_step": args.tokens_per_step, "lr": args.lr, "warmup": args.warmup, "weight_decay": 0.1,
          "betas": [0.9, 0.95], "grad_clip": 1.0, "lm_weight": args.lm_weight,
          "pose": args.pose, "curriculum": CURRICULUM, "old_tasks": args.old_tasks,
          "task_weights": TASK_WEIGHTS_V3 if args.generator >= 3 else TASK_WEIGHTS, "format_weights": FORMAT_WEIGHTS}
    if args.generator >= 3:
        licence, data = "apache-2.0", DATA_V3.format(seed=args.seed, v=args.generator,
                                                     module="grammar.py" if args.generator >= 4 else "grammar3.py")
        if args.generator >= 4:
            data += DATA_V4
        if args.generator >= 5:
            data += DATA_V5
        if args.generator >= 6:
            data += DATA_V6
        if args.old_tasks:
            data += DATA_OLD_TASKS.format(share=round(100 * args.old_tasks))
        question, answer = "What is the access code of the harbor lock gate?", "The access code of the harbor lock gate is K7-4821."
    else:
        licence, data = "gpl-2.0", DATA_V2.format(seed=args.seed)
        question, answer = ("What is the special magic number for the blue door?",
                            "The special magic number for the blue door is 4821337.")
    init_note = ("" if not args.init_from else
                 "\n- Second cycle: the weights started from those of `%s` (a finished model; its own card gives "
                 "the first cycle's data and settings), with a fresh optimizer and schedule; the steps and seconds "
                 "here are this cycle's." % os.path.basename(os.path.normpath(args.init_from)))
    return f"""---
license: {licence}
language: en
pipeline_tag: text-generation
tags: [llama, long-context, retrieval, folio]
---
# folio-needle

A {n_params / 1e6:.1f}M-parameter Llama (LlamaForCausalLM) {"trained from scratch" if not args.init_from else "trained in two cycles (the first from scratch)"} by the Folio project to
retrieve planted facts from documents of 4K-128K tokens. It is a test instrument, not an assistant:
it answers RULER-style retrieval questions (a number, a key's value, a list of variables) about a
document in its context, and it knows nothing else. Folio uses it as the quality oracle for sparse
prefill and for its long-document demo.

- Architecture: hidden 384, 6 layers, 6 query heads and 2 KV heads of 64, SwiGLU MLP 1024, RMSNorm,
  tied embeddings, RoPE theta 1e6 (plain), max_position_embeddings 131072, bf16 weights.
- Tokenizer: SentencePiece BPE, {args.vocab} pieces, byte fallback, digits split, identity
  normalization, no dummy prefix; `<|im_start|>`, `<|im_end|>` and the newline are user-defined
  pieces. Chat format: ChatML without a system default; no BOS. Stop at `<|im_end|>`.
- Tokenize with the sentencepiece library (`tokenizer.model`), as Folio does.

## Prompt

```
<|im_start|>user
<document name="document.txt">
...the document...
</document>

{question}<|im_end|>
<|im_start|>assistant
```

This is the wrapping the evaluation's main rows use; the layout the app and `folio-cli --ask
QUESTION --file document.txt` send (a system turn with the document in `[file: ...]` sections, the
question in the user turn; `folio-cli --print-prompt` shows it) was trained too. The answer restates
the fact ("{answer}"), then `<|im_end|>`.

## Training

Reproduce with `tools/needle/` in the Folio repository (docs/needle.md): prepare_data.py, then
train_tokenizer.py, then train.py on one GPU ({device}, {seconds:.0f} s of training for this model).

{data}
- Seed of the weights: torch.manual_seed({args.seed}).{init_note}
- Hyper-parameters: `{json.dumps(hp)}`
- Last log lines: `{log_tail}`

## Accuracy

Not yet measured (tools/needle/eval.py writes this section).
"""


DATA_V2 = """- Data: filler paragraphs from Debian packages bible-kjv-text (King James Bible, public domain),
  debian-reference-en (GPL-2+) and doc-debian; tasks from tools/needle/tasks.py, generator
  version 2, training seeds "train-{seed}-STEP" (Python random, one per step).

The filler data is licensed as its sources (GPL-2+ for the Debian texts); the weights are
released under the GPL-2.0 as a derived work."""

DATA_V3 = """- Data: tasks from tools/needle/{module}, generator version {v}, training split only, seeds
  "train{v}-{seed}-STEP" (Python random, one per step), over filler paragraphs (prepare_data.py,
  Debian 12 packages):

  | source | Debian package | licence | used for |
  |---|---|---|---|
  | King James Bible | bible-kjv-text 4.38 | public domain | training |
  | PostgreSQL 15 manual | postgresql-doc-15 15.20-0+deb12u1 | PostgreSQL licence | training |
  | Python 3.11 documentation | python3.11-doc 3.11.2-6+deb12u9 | PSF-2.0 (examples 0BSD) | training |
  | SQLite documentation | sqlite3-doc 3.40.1-2+deb12u2 | public domain | held-out evaluation only |

  The task text (frames, questions, word lists) is the Folio project's own (Apache-2.0). Nothing
  in the training data is under a copyleft licence; the weights are released under Apache-2.0.
- Held out (never drawn in training, enforced by grammar.Grammar and tested by
  tools/needle/test_grammar.py): one key word, name and place in five, sentence and question
  frames, attributes, the time and measure value kinds, a date format, variable notations and
  manual fact types of their own, and the SQLite documentation as filler."""

DATA_V4 = """
- Generator 4's training keys, attributes and values are drawn from spaces too large to memorize
  (words of the training filler, pseudo-words, random letter strings and character strings, each
  a training word by the same rule that holds the held-out words out), with near-miss distractors
  (the asked key with one letter changed): the answer can only be copied."""
DATA_V5 = """
- Generator 5 adds a training value kind of numbers and words together ("228.0 velmor", "8 brask
  2042"): values go on after a number, as the held-out measures and dates do, in no held-out
  notation (no unit words, no month names, no ":")."""
DATA_V6 = """
- Generator 6 asks 60% of its training questions in generated frames (random words before, between
  and after the attribute and the key, the key first or last), never with a word that only the
  held-out question frames use."""
DATA_OLD_TASKS = """
- {share}% of the training rows are generator 2's tasks (tasks.py's templates, the ones the app's
  demo asks) over the same permissively licensed training filler, their keys drawn from tasks.py's
  words less the held-out key words."""


def factor_second_moments(opt):
    """AdamW's second moments, compact: each matrix as its row and column sums (Adafactor's
    rank-1 approximation, exact for a rank-1 matrix), each vector whole; in parameter order."""
    out = []
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            v = st.get("exp_avg_sq")
            if v is None:
                out.append(None)
            elif v.dim() == 2:
                out.append({"rows": v.sum(1).float().cpu(), "cols": v.sum(0).float().cpu()})
            else:
                out.append({"full": v.float().cpu()})
    return out


def restore_second_moments(opt, factored, step):
    """Sets AdamW's state from factor_second_moments' output: v approximated, m zero, step kept."""
    i = 0
    for group in opt.param_groups:
        for p in group["params"]:
            f = factored[i]
            i += 1
            if f is None:
                continue
            if "full" in f:
                v = f["full"].to(p.device)
            else:
                r, c = f["rows"].to(p.device), f["cols"].to(p.device)
                v = torch.outer(r, c) / r.sum().clamp_min(1e-30)
            opt.state[p] = {"step": torch.tensor(float(step), dtype=torch.float32, device=p.device),
                            "exp_avg": torch.zeros_like(p), "exp_avg_sq": v.reshape(p.shape).to(p.dtype).contiguous()}
    assert i == len(factored), "the compact state has %d tensors, the model %d" % (len(factored), i)


def rng_state():
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st):
    torch.set_rng_state(st["torch"].cpu())  # a checkpoint loaded with map_location="cuda" moved it
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in st["cuda"]])


def save_full(path, model, opt, next_step, seconds, args):
    """The exact state of a run (written to a temporary name first: a leg killed while saving
    leaves the previous checkpoint)."""
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "next_step": next_step,
                "seconds": seconds, "rng": rng_state(), "args": vars(args),
                "generator": args.generator}, tmp)
    os.replace(tmp, path)


def load_weights(model, folder):
    """The weights of a model folder (its safetensors shards) into `model`, every tensor present."""
    from safetensors.torch import load_file
    weights = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            weights.update(load_file(os.path.join(folder, name)))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        sys.exit("%s: not this model's weights (missing %s, unexpected %s)" % (folder, missing[:5], unexpected[:5]))


def same_run(saved, args):
    """The settings a resumed run must share with the saved one (else the batches differ)."""
    keys = ["steps", "tokens_per_step", "seed", "generator", "lr", "warmup", "lm_weight", "pose", "vocab", "old_tasks",
            "init_from"]
    default = {"old_tasks": 0.0, "init_from": None}  # runs saved before the options existed had none
    diff = {k: (saved.get(k, default.get(k)), getattr(args, k)) for k in keys
            if saved.get(k, default.get(k)) != getattr(args, k)}
    if diff:
        sys.exit("the checkpoint was made with other settings (saved, now): %s" % diff)


def main():
    global CURRICULUM
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".needle")
    ap.add_argument("--tokenizer", default=None, help="default: DATA/tokenizer.model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--generator", type=int, default=6, choices=[2, 3, 4, 5, 6],
                    help="6 (5 plus generated question frames), 5 (4 plus mixed values) or 4: grammar.py's training split over filler-train.txt; "
                         "3: grammar3.py's (frozen); "
                         "2: tasks.py over filler.txt")
    ap.add_argument("--old-tasks", type=float, default=None,
                    help="share of rows from generator 2's tasks (tasks.py templates) over the training filler "
                         "(default 0.1 for generator 6, else 0)")
    ap.add_argument("--steps", type=int, default=1900)
    ap.add_argument("--tokens-per-step", type=int, default=131072)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--lm-weight", type=float, default=1.0)
    ap.add_argument("--pose", type=float, default=0.3, help="share of the batches in the last half with a position jump")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--max-seconds", type=float, default=370, help="stop early (and save) after this much training")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--ckpt", default=None, help="full checkpoint file: resumed from when present, saved at the end")
    ap.add_argument("--ckpt-every", type=int, default=0, help="also save --ckpt every N steps (0: only at the end)")
    ap.add_argument("--carry-in", default=None,
                    help="a compact checkpoint (model folder with resume.pt) to resume from when --ckpt is absent")
    ap.add_argument("--init-from", default=None,
                    help="a finished model folder whose weights start this run (fresh optimizer and schedule: "
                         "a second training cycle); its tokenizer must be --tokenizer's")
    ap.add_argument("--stop-after-steps", type=int, default=0, help="end this leg after N steps (tests of resuming)")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test of the code")
    ap.add_argument("--time-lengths", default="", help="smoke: time 3 steps at each of these lengths and exit")
    args = ap.parse_args()
    if args.old_tasks is None:
        args.old_tasks = 0.1 if args.generator >= 6 else 0.0
    if not 0.0 <= args.old_tasks <= 1.0 or (args.old_tasks and args.generator < 3):
        sys.exit("--old-tasks is a share in [0, 1] of rows, for generators 3-6 (generator 2's rows are all old tasks)")
    sp_path = args.tokenizer or os.path.join(args.data, "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=sp_path)
    args.vocab = sp.get_piece_size()
    im_end = sp.piece_to_id("<|im_end|>")
    t0 = time.time()
    filler_name = "filler-train.txt" if args.generator >= 3 else "filler.txt"
    filler = tasks.Filler(os.path.join(args.data, filler_name), sp)
    print("filler: %d paragraphs, %d tokens (%.1f s)" % (len(filler.paragraphs), sum(filler.tokens), time.time() - t0))

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print("packed-sequence detection off:", disable_packed_sequence_detection())
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    model = build_model(args.vocab, im_end).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print("parameters: %d" % n_params)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=cuda)

    def forward(b):
        ids = b["ids"].to(dev, non_blocking=True)
        kw = {}
        if "pos" in b:
            kw["position_ids"] = b["pos"].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            h = model.model(input_ids=ids, use_cache=False, **kw).last_hidden_state
        h = h.reshape(-1, h.shape[-1])
        ans_logits = model.lm_head(h[b["ans_idx"].to(dev)].float())
        ans_tgt = b["ans_tgt"].to(dev)
        ans_loss = F.cross_entropy(ans_logits, ans_tgt)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            lm_logits = model.lm_head(h)
        lm_loss = F.cross_entropy(lm_logits.float(), b["labels"].to(dev).reshape(-1), ignore_index=-100)
        return ans_loss, lm_loss, ans_logits.argmax(-1) == ans_tgt

    if args.time_lengths:
        # Smoke: the cost of a step at each length (3 steps each, the first not counted), then
        # a check that a position jump keeps one sequence (early tokens still change late outputs).
        model.train()
        fake = Batches(args, sp, filler, 1)
        for L in [int(x) for x in args.time_lengths.split(",")]:
            CURRICULUM = [(1.0, L, L)]
            times = []
            for i in range(4):
                b = fake.batch(i, force_pose=(i == 3))
                torch.cuda.synchronize()
                t = time.time()
                al, ll, _ = forward(b)
                (al + args.lm_weight * ll).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                times.append(time.time() - t)
            print("length %6d: rows %3d, %.3f s a step (%.0f tok/s), with a position jump %.3f s, ans loss %.3f, "
                  "mem %.1f GiB" % (L, b["ids"].shape[0], times[2], b["ids"].numel() / times[2], times[3], al.item(),
                   torch.cuda.max_memory_allocated() / 2**30))
        with torch.no_grad():
            x = torch.randint(3, args.vocab, (1, 4096), device=dev)
            p = torch.arange(4096, device=dev)[None].clone()
            p[:, 2048:] += 100000
            y1 = model(input_ids=x, position_ids=p).logits[0, -1].float()
            x2 = x.clone()
            x2[:, :16] = 7
            y2 = model(input_ids=x2, position_ids=p).logits[0, -1].float()
            print("jump keeps one sequence:", bool((y1 - y2).abs().max() > 0), float((y1 - y2).abs().max()))
        write_model(build_model(args.vocab, im_end), sp_path, args.out, model_card(args, n_params, 0, 0, ""))
        return

    # Resume: the full checkpoint if there is one (exact), else a carried compact one.
    first_step, seconds_before, resumed = 0, 0.0, "no (from scratch)"
    if args.ckpt and os.path.exists(args.ckpt):
        st = torch.load(args.ckpt, map_location=dev, weights_only=False)
        same_run(st["args"], args)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        set_rng_state(st["rng"])
        first_step, seconds_before = st["next_step"], st["seconds"]
        resumed = "exactly, from %s (step %d)" % (args.ckpt, first_step)
    elif args.carry_in:
        st = torch.load(os.path.join(args.carry_in, "resume.pt"), map_location="cpu", weights_only=False)
        same_run(st["args"], args)
        load_weights(model, args.carry_in)
        restore_second_moments(opt, st["second_moments"], st["next_step"])
        set_rng_state(st["rng"])
        first_step, seconds_before = st["next_step"], st["seconds"]
        resumed = "approximately, from the compact state in %s (step %d)" % (args.carry_in, first_step)
    elif args.init_from:
        with open(os.path.join(args.init_from, "tokenizer.model"), "rb") as a, open(sp_path, "rb") as b:
            if a.read() != b.read():
                sys.exit("--init-from %s: its tokenizer.model is not %s; a second cycle needs the same tokenizer"
                         % (args.init_from, sp_path))
        load_weights(model, args.init_from)
        resumed = "no; the weights start from %s (a second cycle: fresh optimizer and schedule)" % args.init_from
    print("resumed:", resumed, flush=True)
    if first_step >= args.steps:
        print("nothing left to train: step %d of %d" % (first_step, args.steps))

    data = Batches(args, sp, filler, args.steps, first_step)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=args.workers,
                                         prefetch_factor=4 if args.workers else None,
                                         pin_memory=cuda, persistent_workers=False)
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "train_log.jsonl")
    log = open(log_path, "a" if first_step else "w")
    model.train()
    t_start = time.time()
    n_tasks = len(data.task_names)
    fresh = lambda: {"ans": 0.0, "lm": 0.0, "tok_ok": 0, "tok": 0, "ex_ok": [0] * n_tasks,  # noqa: E731
                     "ex": [0] * n_tasks, "tokens": 0, "n": 0}
    acc = fresh()
    steps_done, last = first_step, ""
    for b in loader:
        step = b["step"]
        assert step == steps_done, "batch of step %d where step %d was due" % (step, steps_done)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        ans_loss, lm_loss, ok = forward(b)
        loss = ans_loss + args.lm_weight * lm_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        steps_done = step + 1
        if step % args.log_every == 0 or step == args.steps - 1:
            # Teacher-forced exact match of whole answers per task (every log step only: it syncs).
            okc = ok.cpu()
            rows = b["ans_row"]
            for r in range(b["ids"].shape[0]):
                t = int(b["task"][r])
                acc["ex"][t] += 1
                acc["ex_ok"][t] += int(bool(okc[rows == r].all()))
            acc["ans"] += ans_loss.item()
            acc["lm"] += lm_loss.item()
            acc["tok_ok"] += int(okc.sum())
            acc["tok"] += okc.numel()
            acc["n"] += 1
            el = seconds_before + time.time() - t_start
            rec = {"step": step, "length": b["length"], "rows": int(b["ids"].shape[0]),
                   "lr": round(opt.param_groups[0]["lr"], 6), "ans_loss": round(acc["ans"] / acc["n"], 4),
                   "lm_loss": round(acc["lm"] / acc["n"], 4), "ans_token_acc": round(acc["tok_ok"] / max(1, acc["tok"]), 4),
                   "exact": {data.task_names[i]: round(acc["ex_ok"][i] / acc["ex"][i], 3)
                             for i in range(n_tasks) if acc["ex"][i]},
                   "pose": "pos" in b, "elapsed_s": round(el, 1)}
            last = json.dumps(rec)
            print(last, flush=True)
            log.write(last + "\n")
            log.flush()
            acc = fresh()
        if args.ckpt and args.ckpt_every and steps_done % args.ckpt_every == 0 and steps_done < args.steps:
            save_full(args.ckpt, model, opt, steps_done, seconds_before + time.time() - t_start, args)
        if time.time() - t_start > args.max_seconds:
            print("stopping at step %d: --max-seconds %.0f reached" % (step, args.max_seconds), flush=True)
            break
        if args.stop_after_steps and steps_done - first_step >= args.stop_after_steps:
            print("stopping at step %d: --stop-after-steps %d" % (step, args.stop_after_steps), flush=True)
            break
    if cuda:
        torch.cuda.synchronize()
    seconds = seconds_before + time.time() - t_start
    print("trained steps %d-%d in %.1f s (%.1f s in all)" % (first_step, steps_done, time.time() - t_start, seconds))
    log.close()
    if args.ckpt:
        save_full(args.ckpt, model, opt, steps_done, seconds, args)
    # The compact state beside OUTDIR, then the model itself (bf16): together they resume a run
    # on a fresh machine (--carry-in); when steps_done == --steps OUTDIR is the finished model.
    resume_dir = args.out.rstrip("/") + "-resume"
    os.makedirs(resume_dir, exist_ok=True)
    torch.save({"next_step": steps_done, "seconds": seconds, "rng": rng_state(), "args": vars(args),
                "second_moments": factor_second_moments(opt)}, os.path.join(resume_dir, "resume.pt"))
    write_model(model, sp_path, args.out, model_card(args, n_params, steps_done, seconds, last))
    print("wrote", args.out, sorted(os.listdir(args.out)), "and", resume_dir,
          "(%d of %d steps done)" % (steps_done, args.steps))


if __name__ == "__main__":
    sys.exit(main())
