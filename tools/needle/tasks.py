"""Seeded generator of RULER-style retrieval tasks over long filler text (folio-needle).

Five tasks, each a long document with planted sentences ("needles") and a question about them in
the last user turn of a ChatML conversation; the answer, the assistant turn, restates the fact
("The special magic number for the blue door is 4821337."):

  single      one needle ("The special magic number for the blue door is 4821337."), asked
  multikey    several needles of one template with different keys, one of them asked
  multivalue  several values for one key, all asked (the answer lists them in document order)
  kv          key-value pairs with random hexadecimal keys and values, one key asked
  vt          variable tracking: chains "VAR ABCDE = 51243." "VAR FGHIJ = VAR ABCDE." ... with a
              distractor chain; asked which variables hold the value (the answer lists them in order)

The document is wrapped as Folio wraps documents, picked at random per sample (cli is what the
evaluation's main rows use):

  cli    user turn '<document name="NAME">\\nTEXT\\n</document>\\n\\nQUESTION' (what folio-cli --ask
         sent before it shared the app's prompt; kept so that seeds give the same samples)
  gui    system turn with the app's instruction and its layout ([document: NAME], [file: NAME,
         lines 1-200] sections, [end of document: NAME]); the question alone in the user turn.
         This is what the app and folio-cli --ask --file send (core/chat); `folio-cli
         --print-prompt` shows it
  plain  user turn 'TEXT\\n\\nQUESTION'

Everything random comes from the random.Random given to make_sample(); the same seed gives the
same sample on every machine (the filler file fixed). GENERATOR_VERSION changes whenever a change
here changes the samples of a seed.
"""

import gzip
import os
import re

GENERATOR_VERSION = 2

TASKS = ["single", "multikey", "multivalue", "kv", "vt"]
FORMATS = ["cli", "gui", "plain"]

ADJECTIVES = """red blue green yellow purple orange black white silver golden grey brown pink crimson amber
ivory copper bronze scarlet violet quiet hidden ancient northern southern eastern western frozen
broken silent bright dark hollow narrow wide tall small old new rusty wooden iron stone glass marble
velvet paper secret lucky lonely sleepy rapid gentle brave clever happy proud wild calm distant
little great lower upper inner outer""".split()

NOUNS = """door window bridge tower garden river mountain valley forest island harbor castle temple
library market station lantern compass mirror clock anchor arrow basket bell candle chest crown
drum feather flag fountain gate hammer helmet kettle key ladder lamp map needle oven piano pillar
ring rope saddle scroll shield ship spoon statue sword table tent throne torch trumpet violin wagon
wheel whistle falcon fox wolf bear owl raven tiger lion horse eagle dolphin whale spider turtle
rabbit otter badger heron cedar oak willow maple pine rose tulip lily orchid comet planet meteor
cloud storm thunder glacier desert canyon meadow orchard vineyard lighthouse cottage cellar attic
chapel courtyard""".split()

FILE_WORDS = """notes report manual chapter draft archive letters journal minutes story history guide
handbook record paper essay book memo document text""".split()

# (needle, question, answer) templates for single and multikey; {key} is "<adjective> <noun>".
# The answer restates the fact: the key comes from the question, and the value then follows the
# words it follows in the needle (what an induction head copies); a bare value was not learned
# in 1500 steps (docs/needle.md).
NEEDLE_TEMPLATES = [
    ("The special magic number for the {key} is {value}.", "What is the special magic number for the {key}?",
     "The special magic number for the {key} is {value}."),
    ("The secret code of the {key} is {value}.", "What is the secret code of the {key}?",
     "The secret code of the {key} is {value}."),
    ("Remember this: the number of the {key} is {value}.", "What is the number of the {key}?",
     "The number of the {key} is {value}."),
    ("The {key} is locked with the code {value}.", "Which code locks the {key}?",
     "The {key} is locked with the code {value}."),
]
MULTIVALUE_NEEDLE = "One of the special magic numbers for the {key} is {value}."
MULTIVALUE_QUESTION = "What are all the special magic numbers for the {key}?"
MULTIVALUE_ANSWER = "The special magic numbers for the {key} are {values}."
KV_NEEDLE = "The value of key {key} is {value}."
KV_QUESTION = "What is the value of key {key}?"
VT_FIRST = "VAR {name} = {value}."
VT_HOP = "VAR {name} = VAR {prev}."
VT_QUESTION = "Which variables are assigned the value {value}? List them all."
VT_ANSWER = "The variables assigned the value {value} are {names}."

GUI_PREAMBLE = ("Answer the question using the documents below. Each excerpt of a file starts with a marker such as "
                "[file: {name}, lines 1-200]; its lines are numbered from the first line of that range. When your "
                "answer uses the documents, cite the source right after each statement: ({name}:40-58) for lines of "
                "a file. Cite only pages and lines that appear in the documents; if they do not hold the answer, "
                "say so.")


class Filler:
    """Paragraphs of filler text (one per line of filler.txt) and, once counted, their token counts."""

    def __init__(self, path, sp=None):
        if not os.path.exists(path) and os.path.exists(path + ".gz"):
            path += ".gz"  # the compressed copy that travels to the GPU machine (gpu_train.sh)
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            self.paragraphs = [l for l in f.read().split("\n") if l]
        self.tokens = None
        if sp is not None:
            self.tokens = [len(ids) for ids in sp.encode(self.paragraphs)]

    def window(self, rng, budget_tokens):
        """Consecutive paragraphs from a random place (wrapping around) holding about budget_tokens."""
        n = len(self.paragraphs)
        i = rng.randrange(n)
        out, used = [], 0
        sep = 2  # the "\n\n" between paragraphs: two "\n" pieces
        while True:
            t = self.tokens[i % n] + sep
            if used + t > budget_tokens:
                left = budget_tokens - used - sep
                if left > 16:  # a cut paragraph: the first words, about 4 characters a token
                    words = self.paragraphs[i % n].split(" ")
                    cut, chars = [], 0
                    for w in words:
                        chars += len(w) + 1
                        if chars > left * 3.6:
                            break
                        cut.append(w)
                    if cut:
                        out.append(" ".join(cut))
                break
            out.append(self.paragraphs[i % n])
            used += t
            i += 1
        return out


def _number(rng, digits):
    return str(rng.randrange(10 ** (digits - 1), 10 ** digits))


def _hex_id(rng):
    return "%04x-%04x" % (rng.randrange(1 << 16), rng.randrange(1 << 16))


def _distinct(rng, n, make):
    seen, out = set(), []
    while len(out) < n:
        x = make()
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _key(rng):
    return rng.choice(ADJECTIVES) + " " + rng.choice(NOUNS)


def _var_name(rng):
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))


def interleave(rng, main, side):
    """The two lists merged at random, each keeping its order (variable tracking's two chains)."""
    out, a, b = [], 0, 0
    while a < len(main) or b < len(side):
        if b >= len(side) or (a < len(main) and rng.random() < len(main) / (len(main) + len(side))):
            out.append(main[a])
            a += 1
        else:
            out.append(side[b])
            b += 1
    return out


def task_needles(rng, task, train, max_tokens=None):
    """(needles in document order or None for any order, question, answer) for one task.

    Returns (needles, ordered, question, answer, items): needles a list of sentences; ordered says
    the needles must keep their order in the document (multivalue and vt answers list them in
    order); answer the assistant's sentence; items the values a right answer names.
    train widens the counts (eval uses RULER's usual fixed counts); with max_tokens (training
    only) the key-value pairs take at most about half of that.
    """
    if task in ("single", "multikey"):
        needle_t, question_t, answer_t = rng.choice(NEEDLE_TEMPLATES)
        n = 1 if task == "single" else (rng.randint(2, 8) if train else 4)
        keys = _distinct(rng, n, lambda: _key(rng))
        values = [_number(rng, rng.randint(5, 7)) for _ in keys]
        needles = [needle_t.format(key=k, value=v) for k, v in zip(keys, values)]
        asked = rng.randrange(n)
        return (needles, False, question_t.format(key=keys[asked]),
                answer_t.format(key=keys[asked], value=values[asked]), [values[asked]])
    if task == "multivalue":
        n = rng.randint(2, 5) if train else 4
        key = _key(rng)
        values = _distinct(rng, n, lambda: _number(rng, rng.randint(5, 7)))
        return ([MULTIVALUE_NEEDLE.format(key=key, value=v) for v in values], True,
                MULTIVALUE_QUESTION.format(key=key), MULTIVALUE_ANSWER.format(key=key, values=", ".join(values)),
                values)
    if task == "kv":
        most = 24 if max_tokens is None else min(24, max(2, max_tokens // 44))
        n = rng.randint(2, most) if train else 8
        keys = _distinct(rng, n, lambda: _hex_id(rng))
        values = [_hex_id(rng) for _ in keys]
        asked = rng.randrange(n)
        return ([KV_NEEDLE.format(key=k, value=v) for k, v in zip(keys, values)], False,
                KV_QUESTION.format(key=keys[asked]), KV_NEEDLE.format(key=keys[asked], value=values[asked]),
                [values[asked]])
    if task == "vt":
        hops = rng.randint(1, 4) if train else 4
        n_distract = rng.randint(0, 4) if train else 4
        names = _distinct(rng, hops + 1 + n_distract + 1, lambda: _var_name(rng))
        value, other = _distinct(rng, 2, lambda: _number(rng, 5))
        chain = names[: hops + 1]
        distract = names[hops + 1:]
        main = [VT_FIRST.format(name=chain[0], value=value)]
        main += [VT_HOP.format(name=chain[i], prev=chain[i - 1]) for i in range(1, len(chain))]
        side = [VT_FIRST.format(name=distract[0], value=other)]
        side += [VT_HOP.format(name=distract[i], prev=distract[i - 1]) for i in range(1, len(distract))]
        needles = interleave(rng, main, side)
        return (needles, True, VT_QUESTION.format(value=value),
                VT_ANSWER.format(value=value, names=", ".join(chain)), chain)
    raise ValueError("unknown task " + task)


_SENTENCE_END = re.compile(r"(?<=[.;:!?]) (?=[A-Z])")


def plant(rng, paragraphs, needles, ordered):
    """Inserts the needles at random sentence starts (uniform depth); returns the document text."""
    paragraphs = list(paragraphs)
    if not paragraphs:
        paragraphs = [""]
    # Candidate places: (paragraph, character offset) at the start of a sentence.
    places = []
    for pi, p in enumerate(paragraphs):
        places.append((pi, 0))
        places += [(pi, m.end()) for m in _SENTENCE_END.finditer(p)]
    places.append((len(paragraphs) - 1, len(paragraphs[-1])))  # the very end
    picks = sorted(rng.randrange(len(places)) for _ in needles)
    order = list(needles) if ordered else rng.sample(needles, len(needles))
    inserts = {}
    for pick, needle in zip(picks, order):
        inserts.setdefault(places[pick], []).append(needle)
    for (pi, off) in sorted(inserts, reverse=True):
        p = paragraphs[pi]
        text = " ".join(inserts[(pi, off)])
        if off == 0:
            p = text + (" " + p if p else "")
        elif off >= len(p):
            p = p + " " + text
        else:
            p = p[:off] + text + " " + p[off:]
        paragraphs[pi] = p
    return "\n\n".join(paragraphs)


def file_name(rng):
    name = rng.choice(FILE_WORDS)
    if rng.random() < 0.4:
        name += rng.choice(["_", "-"]) + rng.choice(FILE_WORDS + NOUNS)
    name += rng.choice([".txt", ".txt", ".md"])
    if rng.random() < 0.2:
        name = rng.choice(["docs/", "data/", "/tmp/", "notes/"]) + name
    return name


def chatml(messages, answer=None):
    out = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (role, text) for role, text in messages)
    out += "<|im_start|>assistant\n"
    if answer is not None:
        out += answer + "<|im_end|>"
    return out


def gui_layout(name, text):
    """The app's layout of a text document (core/docs/prompt_layout.cpp): 200-line sections."""
    lines = text.split("\n")
    parts = ["[document: %s]" % name]
    for first in range(0, len(lines), 200):
        chunk = lines[first:first + 200]
        parts.append("[file: %s, lines %d-%d]\n%s" % (name, first + 1, first + len(chunk), "\n".join(chunk)))
    parts.append("[end of document: %s]" % name)
    return "\n\n".join(parts)


def wrap(fmt, name, document, question):
    """The chat messages of one sample, as Folio builds them for this document and question."""
    if fmt == "cli":
        return [("user", '<document name="%s">\n%s\n</document>\n\n%s' % (name, document, question))]
    if fmt == "gui":
        base = name.rsplit("/", 1)[-1]
        return [("system", GUI_PREAMBLE.format(name=base) + "\n\n" + gui_layout(base, document)), ("user", question)]
    if fmt == "plain":
        return [("user", "%s\n\n%s" % (document, question))]
    raise ValueError("unknown format " + fmt)


# Tokens outside the document (template, file name, question, answer), an upper estimate per format.
OVERHEAD_TOKENS = {"cli": 80, "gui": 170, "plain": 60}


def make_sample(rng, filler, task, total_tokens, fmt="cli", train=False, name=None):
    """One sample of about total_tokens tokens (prompt and answer).

    Returns a dict: task, format, name, prompt (ChatML text up to and including
    '<|im_start|>assistant\\n'), answer (text, without '<|im_end|>'), items (the values a right
    answer names), document, question, needles.
    """
    needles, ordered, question, answer, items = task_needles(rng, task, train, total_tokens if train else None)
    needle_tokens = sum(len(n) for n in needles) // 2 + 4 * len(needles)
    sections = (total_tokens // 8000 + 1) * 14 if fmt == "gui" else 0
    budget = max(0, total_tokens - OVERHEAD_TOKENS[fmt] - needle_tokens - sections)
    paragraphs = filler.window(rng, budget)
    document = plant(rng, paragraphs, needles, ordered)
    name = name or file_name(rng)
    prompt = chatml(wrap(fmt, name, document, question))
    return {"task": task, "format": fmt, "name": name, "prompt": prompt, "answer": answer, "items": items,
            "document": document, "question": question, "needles": needles}


def tokenizer_corpus(rng, n):
    """Short texts with the markup and phrasing of the tasks, for training the tokenizer."""
    out = []
    for _ in range(n):
        task = rng.choice(TASKS)
        needles, _, question, answer, _ = task_needles(rng, task, True)
        fmt = rng.choice(FORMATS)
        doc = " ".join(needles)
        out.append(chatml(wrap(fmt, file_name(rng), doc, question), answer))
    return out
