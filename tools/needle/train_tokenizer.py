#!/usr/bin/env python3
"""Train folio-needle's SentencePiece BPE tokenizer (CPU, about a minute).

  python3 tools/needle/train_tokenizer.py [--data .needle] [--vocab 4096] [--out .needle/tokenizer.model]
      [--generator 3|4|2]

Input: the training filler paragraphs (tools/needle/prepare_data.py: filler-train.txt for generator
3, filler.txt for 2) and 20,000 short seeded texts in the markup and phrasing of the training
tasks (grammar3.tokenizer_corpus, generator 3's training split only, also for generator 4; tasks.tokenizer_corpus for 2), so that the
chat markers, the document wrappers and the questions get pieces of their own. The held-out
filler and split are never read.

Settings, chosen so that Folio (libsentencepiece), the Python sentencepiece module and the
training all tokenize alike and the text comes back byte for byte:
  BPE, byte_fallback (any byte can be written), split_digits (numbers are copied digit by digit),
  identity normalization, no dummy prefix, no whitespace folding, <|im_start|> <|im_end|> and "\\n"
  as user-defined pieces (matched atomically, as the chat format needs), unk 0, bos 1, eos 2,
  no pad.
"""

import argparse
import io
import os
import random
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grammar3  # noqa: E402
import tasks  # noqa: E402

TOKENIZER_SEED = 4096


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".needle")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--out", default=None)
    ap.add_argument("--generator", type=int, default=3, choices=[2, 3, 4],
                    help="3 and 4 (the same tokenizer: generator 4 is trained with generator 3's, docs/needle.md); "
                         "2: the first model's")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    out = args.out or os.path.join(args.data, "tokenizer.model")
    filler_path = os.path.join(args.data, "filler-train.txt" if args.generator >= 3 else "filler.txt")
    filler = tasks.Filler(filler_path)
    rng = random.Random(TOKENIZER_SEED)
    gen = grammar3 if args.generator >= 3 else tasks  # grammar3: frozen, so this tokenizer stays reproducible
    corpus = filler.paragraphs + gen.tokenizer_corpus(rng, 20000)
    rng.shuffle(corpus)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, model_type="bpe", vocab_size=args.vocab,
        byte_fallback=True, split_digits=True, character_coverage=0.9999,
        user_defined_symbols=["<|im_start|>", "<|im_end|>", "\n"], normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False, max_sentence_length=1 << 16,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=args.threads, minloglevel=1,
        input_sentence_size=0, shuffle_input_sentence=False)
    with open(out, "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=out)
    sample = tasks.make_sample(random.Random(1), tasks.Filler(filler_path, sp), "single", 2000)
    text = sample["prompt"] + sample["answer"] + "<|im_end|>"
    ids = sp.encode(text)
    assert sp.decode(ids) == text, "the tokenizer does not give the text back"
    print("wrote %s: %d pieces; a 2K sample: %d tokens, %.2f characters a token" %
          (out, sp.get_piece_size(), len(ids), len(text) / len(ids)))


if __name__ == "__main__":
    sys.exit(main())
