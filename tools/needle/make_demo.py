#!/usr/bin/env python3
"""Write Folio's long demo document for folio-needle: filler text with planted facts.

  python3 tools/needle/make_demo.py [--data .needle] [--tokenizer .needle/tokenizer.model]
      [--tokens 12000] [--out resources/demo]

Writes OUT/planted-facts.md (about --tokens tokens of the model's tokenizer: passages of the King
James Bible and the Debian Reference, from the filler of prepare_data.py, with four facts planted
at 12%, 37%, 62% and 87% of the text) and OUT/planted-facts.json (the questions, the expected
answers and the values they must name). The facts use the phrasings folio-needle was trained on.
Seeded: the same filler and tokenizer give the same files.
"""

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks  # noqa: E402

# (fact, question, expected answer, value the answer must name)
FACTS = [
    ("The secret code of the blue door is 48213.", "What is the secret code of the blue door?",
     "The secret code of the blue door is 48213.", "48213"),
    ("The special magic number for the silver harbor is 7719204.",
     "What is the special magic number for the silver harbor?",
     "The special magic number for the silver harbor is 7719204.", "7719204"),
    ("The value of key 3f9a-1c07 is 5b2e-8d41.", "What is the value of key 3f9a-1c07?",
     "The value of key 3f9a-1c07 is 5b2e-8d41.", "5b2e-8d41"),
    ("The copper lantern is locked with the code 620518.", "Which code locks the copper lantern?",
     "The copper lantern is locked with the code 620518.", "620518"),
]
DEPTHS = [0.12, 0.37, 0.62, 0.87]
TITLE = ("# Planted facts\n\nA long demo document for Folio: passages of the King James Bible and of the Debian "
         "Reference, with a few facts planted among them. Ask about a secret code, a magic number, the value of "
         "a key or the code of a lock.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=".needle")
    ap.add_argument("--tokenizer", default=".needle/tokenizer.model",
                    help="the model's tokenizer (train.py copies this one)")
    ap.add_argument("--tokens", type=int, default=12000)
    ap.add_argument("--out", default="resources/demo")
    args = ap.parse_args()
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=args.tokenizer)
    filler = tasks.Filler(os.path.join(args.data, "filler.txt"), sp)
    rng = random.Random("folio-demo-1")
    paragraphs = filler.window(rng, args.tokens - 200)
    # Plant each fact at the start of a sentence near its depth.
    total = sum(len(p) for p in paragraphs)
    for (fact, _, _, _), depth in sorted(zip(FACTS, DEPTHS), key=lambda x: -x[1]):
        at, pi = depth * total, 0
        while pi < len(paragraphs) - 1 and at > len(paragraphs[pi]):
            at -= len(paragraphs[pi])
            pi += 1
        p = paragraphs[pi]
        cut = p.find(". ", int(at))
        cut = len(p) if cut < 0 else cut + 2
        paragraphs[pi] = (p[:cut] + fact + " " + p[cut:]) if cut < len(p) else p + " " + fact
    text = TITLE + "\n\n" + "\n\n".join(paragraphs) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "planted-facts.md"), "w", encoding="utf-8") as f:
        f.write(text)
    questions = [{"question": q, "answer": a, "value": v} for _, q, a, v in FACTS]
    with open(os.path.join(args.out, "planted-facts.json"), "w", encoding="utf-8") as f:
        json.dump({"document": "planted-facts.md", "model": "folio-needle", "tokens": len(sp.encode(text)),
                   "questions": questions}, f, indent=1)
        f.write("\n")
    print("planted-facts.md: %d tokens, %d bytes" % (len(sp.encode(text)), len(text.encode())))


if __name__ == "__main__":
    sys.exit(main())
