"""Generator versions 6, 5 and 4 of folio-needle's tasks: facts from a grammar, with a held-out
split, keys and attributes from spaces too large to memorize (docs/needle.md, "Generator 4: why and
what", "Generator 5", "Generator 6").

Version 6 (the default; Grammar(..., version=5 or 4) draws those versions' samples) asks 60% of
training questions in generated frames (Grammar.question_frame): random words before, between and
after the attribute and the key, so that where a known frame puts the key stops being a cue.

Version 5 adds one training value kind, "mixed": two or three parts, numbers (some with a decimal)
and words, mostly joined by spaces ("228.0 velmor", "8 brask 2042"). Version 4's model copied
held-out keys but cut held-out values where a number met a word ("228.0" for "228.0 metres", "8042"
for "8 November 2042"): no training value ever went on after a number. The held-out split is the
same in all three versions (same seeds, same samples), and no mixed value is in a held-out notation
(no unit word, no month, no ":").

Version 3 (grammar3.py, frozen) drew its training keys from about 400 words and its attributes from
36 phrases; a model trained on it scored 0.95+ on training batches and ~0 on the held-out split: it
wrote training words where the question's key and attribute were to be copied, and invented the
value. Version 4 keeps version 3's held-out split as it was (eval keys, frames, attributes, value
kinds) and changes what training draws, so that nothing but copying can produce the answer:

  key words   the training pools, words of the training filler (a lexicon of tens of thousands),
              pronounceable pseudo-words and random letter strings (every one of them a word of the
              training split by the same CRC-32 rule: a held-out word can never be drawn)
  attributes  the named training attributes and generated ones (one or two such words, often with a
              head noun: "velmor tag", "quastin drift setting"), never a held-out attribute
  values      numbers, codes, dates in three notations, pseudo-words and phrases of them, random
              strings of letters, digits and punctuation; never in a held-out kind's notation
              (no "08:25", no "42.5 kg", no "14 March 2031")
  frames      version 3's training frames, more of them, and inline frames after a random lead-in
  distractors also near misses: the asked key with one letter changed

The answer stays "The ATTRIBUTE of KEY is VALUE." (every word of it but the frame's copied: the
key and attribute from the question, the value from the needle; it starts with a fixed word, so
each copied span keeps the tokens it has where it is copied from).

Version 3's description follows; what it says of the held-out split is still true.

tasks.py (generator version 2) plants needles from four fixed templates with keys from two short
word lists; a model trained on it retrieves only inside those templates (issue 20). This module
teaches the skill instead: a fact is (key, attribute, value), and

  keys        arbitrary phrases: 1-4 words from a word list, people's names, places, file paths,
              identifiers
  attributes  nouns that name what the value is ("access code", "launch date"), each of one
              value kind
  values      numbers, codes, words, dates (and, held out, times and measures)
  frames      how the fact is written in the document: statements, list items, table rows, code
              comments, dialogue lines, notes
  questions   asked in frames of their own, independent of the needle's frame: the key and the
              attribute are what connect question and needle
  answers     one canonical restatement, "The ATTRIBUTE of KEY is VALUE.", whatever the frame (the
              key and attribute are copied from the question, the value follows them in the
              needle: what an induction head copies; see tasks.py for why the answer restates)

Documents hold several facts: distractors share a word with the asked key, or the asked key with
another attribute. Tasks (RULER's mix plus manual-style question answering):

  single      one fact asked; in training 0-3 distractors beside it, in evaluation none
  multikey    several facts (4 in evaluation), keys sharing words, one asked
  multivalue  several values of one key and attribute, all asked, in document order
  vt          variable tracking: a chain of assignments in one of several notations, plus a
              distractor chain; which variables hold the value
  manual      a specification sentence of a device or program part ("the fan filter of the
              M-300 must be replaced every 400 hours") planted in manual-style filler, asked in
              another wording

Splits. Every list of frames, question frames, attributes, value kinds and key words exists in a
"train" and an "eval" version that share nothing (key words and names are assigned to a split by
a hash of the word, the rest by hand below). A Grammar is built for one split and holds only that
split's items, so a training Grammar cannot draw a held-out frame, word, attribute or value kind;
the held-out filler (prepare_data.py's eval sources) is a file the training never opens.
tests in tools/needle/test_grammar.py check that the splits are disjoint and seeds reproducible.

Everything random comes from the random.Random given; the same seed gives the same sample on every
machine (with the same filler file). GENERATOR_VERSION changes whenever a change here changes the
samples of a seed.
"""

import re
import zlib

import grammar3  # noqa: E402
import tasks
# Everything of version 3 that version 4 keeps as it was (word lists, the held-out split's
# attributes, answers, the manual task, planting) comes from the frozen module, not a copy.
from grammar3 import (  # noqa: E402,F401
    SPLITS,
    TASKS,
    _ADJECTIVES,
    _NOUNS,
    _GIVEN,
    _FAMILY,
    _PLACE_HEADS,
    _PLACE_TAILS,
    _PATH_DIRS,
    _PATH_EXTS,
    _VALUE_WORDS,
    split_of,
    _words,
    _MONTHS,
    _ATTRIBUTES,
    _VALUE_WORDS_BY_SPLIT,
    _plural,
    _UNITS,
    _BLOCK_HEADS,
    ANSWER,
    MULTI_ANSWER,
    _VT_FRAMES,
    _VT_QUESTIONS,
    VT_ANSWER,
    _MANUAL,
    _DEVICE_KINDS,
    _PARTS,
    _cap,
    _answer,
    _distinct,
    plant,
    OVERHEAD_TOKENS,
)

GENERATOR_VERSION = 6
VERSIONS = (4, 5, 6)  # what Grammar(version=) draws; the held-out split is the same in all

# ---------------------------------------------------------------------------------------------
# Vocabulary. Words are assigned to a split by a hash (one word in five held out), so both
# splits draw from the same kinds of words but never the same word.


# ---------------------------------------------------------------------------------------------
# Version 4: training words from spaces too large to memorize. Every one is a word of the training
# split by split_of (so never a held-out word) and never spells a held-out place name.

_ONSETS = "b bl br c ch cl cr d dr f fl fr g gl gr h j k kl kr l m n p pl pr qu r s sc sh sk sl sn sp st sw t th tr v w z".split() + [""] * 4
_NUCLEI = "a e i o u a e i o u ai au ea ee ie oa oo ou".split()
_CODAS = [""] * 12 + "b d g k l m n p r s t x ck ft ld lt mp nd nk nt rd rk rn rt sh sk st th".split()
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_LEXICON_WORD = re.compile(r"(?<![\w'-])[a-z]{3,12}(?![\w'-])")
# Held-out place names as a training word could spell them ("ashbury").
_EVAL_PLACES = {(h + t).lower() for h in _words(_PLACE_HEADS, "eval") for t in _PLACE_TAILS}
# Words that would read as a held-out value kind's notation.
_EVAL_NOTATION_WORDS = {m.lower() for m in _MONTHS} | {"kg", "grams", "metres", "litres", "cm"}


def train_word_ok(word):
    """Whether a generated word may stand in training text: of the training split, not a held-out
    place name or a word of a held-out value notation."""
    w = word.lower()
    return split_of(w) == "train" and w not in _EVAL_PLACES and w not in _EVAL_NOTATION_WORDS


def pseudo_word(rng, syllables=None):
    """A pronounceable word that is (almost always) no English word: "velmork", "quastin"."""
    n = syllables or rng.choices([1, 2, 3], weights=[3, 5, 2])[0]
    return "".join(rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS) for _ in range(n))


def letter_string(rng, lo=3, hi=7):
    return "".join(rng.choice(_LETTERS) for _ in range(rng.randint(lo, hi)))


def filler_lexicon(filler):
    """The training lexicon: lower-case words of 3-12 letters in the filler's paragraphs that
    train_word_ok allows, sorted (computed once per filler object and kept on it)."""
    lex = getattr(filler, "_needle_lexicon", None)
    if lex is None:
        words = set()
        for p in filler.paragraphs:
            words.update(_LEXICON_WORD.findall(p))
        lex = sorted(w for w in words if train_word_ok(w))
        try:
            filler._needle_lexicon = lex
        except AttributeError:
            pass
    return lex


# ---------------------------------------------------------------------------------------------
# Attributes (singular, plural) by value kind, split by hand: the held-out ones are other nouns.


# Version 4: generated training attributes: one or two training words, then (mostly) a head noun.
_ATTR_HEADS = {"number": ["number", "count", "id", "index", "total"],
               "code": ["code", "key", "tag", "token", "reference"],
               "word": ["word", "name", "label", "term"],
               "date": ["date", "day"],
               "string": ["setting", "value", "string", "entry", "mark"],
               "phrase": ["phrase", "motif", "line"],
               "mixed": ["reading", "record", "figure", "entry"]}
_EVAL_ATTRS = {a for names in _ATTRIBUTES["eval"].values() for a in names}

# Kinds of value each split draws (the held-out split also draws the training kinds, with held-out
# attributes, so that its accuracy is not only about unfamiliar value formats). Version 4's training
# adds random strings and phrases; "time" and "measure" stay held out, and no training value is
# written in their notations (no ":", no unit words) or in the held-out date notation.
_VALUE_KINDS = {"train": grammar3._VALUE_KINDS["train"] + ["string", "phrase"], "eval": grammar3._VALUE_KINDS["eval"]}
_VALUE_KINDS_V5_TRAIN = _VALUE_KINDS["train"] + ["mixed"]


def _train_value_word(rng, avoid=()):
    """A value word of training: a training value word or a pseudo-word, never a word of the
    filler's lexicon (avoid), so that the asked value is stated once in a document."""
    for _ in range(100):
        w = rng.choice(_VALUE_WORDS_BY_SPLIT["train"]) if rng.random() < 0.2 else pseudo_word(rng, rng.randint(2, 3))
        if train_word_ok(w) and w not in avoid:
            return w
    raise RuntimeError("no value word found")


_STRING_CHARS = _LETTERS + _LETTERS.upper() + "0123456789" * 2


def make_value(rng, kind, split, attr=None, avoid=(), version=GENERATOR_VERSION):
    if split == "train" and kind == "word":
        return _train_value_word(rng, avoid)
    if kind == "phrase":
        sep = rng.choice([" ", " ", "-"])
        return sep.join(_train_value_word(rng, avoid) for _ in range(rng.randint(2, 3)))
    if kind == "mixed":  # version 5: numbers and words in one value, "228.0 velmor", "8 brask 2042"
        n = rng.choice([2, 2, 3])
        numeric = [rng.random() < 0.5 for _ in range(n)]
        if all(numeric) or not any(numeric):
            numeric[rng.randrange(n)] = not numeric[0]
        parts = []
        for is_number in numeric:
            if not is_number:
                parts.append(_train_value_word(rng, avoid))
            elif rng.random() < 0.4:
                parts.append("%d.%d" % (rng.randint(1, 999), rng.randint(0, 9)))
            else:
                parts.append(str(rng.randrange(1, 10 ** rng.randint(1, 4))))
        return rng.choice([" "] * 6 + [" / ", "-"]).join(parts)  # no ", ": multi-value answers list with it
    if kind == "string":
        n = rng.randint(4, 11)
        out = "".join(rng.choice(_STRING_CHARS) for _ in range(n))
        # punctuation inside, never a space; version 5 also ":" (never between digits: the held-out
        # times' notation), so a held-out time asks for a character that training values copy
        marks = "-_./#+:" if version >= 5 else "-_./#+"
        for _ in range(rng.randint(0, 2)):
            i = rng.randrange(1, len(out))
            mark = rng.choice(marks)
            if mark == ":" and (out[i - 1].isdigit() or out[i].isdigit()):
                mark = "-"
            out = out[:i] + mark + out[i:]
        return out
    if split == "train" and kind == "date" and rng.random() < 0.4:
        y, m, d = rng.randint(1990, 2059), rng.randint(1, 12), rng.randint(1, 28)
        return rng.choice(["%04d/%02d/%02d" % (y, m, d), "%02d.%02d.%04d" % (d, m, y)])
    if split == "train" and kind == "number" and rng.random() < 0.3:
        digits = rng.choice([2, 8, 9])
        return str(rng.randrange(10 ** (digits - 1), 10 ** digits))
    return grammar3.make_value(rng, kind, split, attr)  # version 3's kinds and notations


# ---------------------------------------------------------------------------------------------
# Frames. {K}: the key as it reads in running text ("the archive room", "Mara Holm",
# "config/net.ini"); {k}: the bare key ("archive room"); {a}: the attribute; {v}: the value.
# Frames of kind "block" stand on lines of their own (list items, table rows, code comments);
# "inline" ones go at sentence starts in the filler's paragraphs.
_FRAMES = {
    "train": grammar3._FRAMES["train"] + [  # version 4 adds
        ("inline", "In the ledger, {K} is entered with {a} {v}."),
        ("inline", "Someone wrote that the {a} of {K} had changed to {v}."),
        ("inline", "The {a}, for {K}, reads {v}."),
        ("inline", "Our records give {v} as the {a} for {K}."),
        ("inline", "If you need the {a} of {K}, it is {v}."),
        ("inline", "{K} keeps {v} as its {a}."),
        ("block", "{k} -> {a}: {v}"),
        ("block", "[{k}] {a} = {v}"),
        ("block", "\"{k}\": {{\"{a}\": \"{v}\"}}"),
        ("block", "{k}\t{a}\t{v}"),
        ("block", "UPDATE items SET {a} = '{v}' WHERE name = '{k}';"),
        ("block", "{a} ({k}) .......... {v}"),
    ],
    "eval": grammar3._FRAMES["eval"],
}

# Version 4: lead-ins before a training inline frame ({W}: a training word), so that no fixed
# words precede a fact.
_LEAD_INS = ["By the way, ", "Earlier today, ", "As {W} noted, ", "In the {W} file, ", "Separately, ",
             "For {W}: ", "Update: ", "After the {W} review, ", "On page {n}, ", "Also, "]
_QUESTION_LEAD_INS = ["Quick question: ", "About the document: ", "One more thing. ", "{W} wants to know: "]
_QUESTIONS = {
    "train": grammar3._QUESTIONS["train"] + [  # version 4 adds
        "Which value does the text give as the {a} of {K}?",
        "I am looking for the {a} of {K}.",
        "What {a} is listed for {K}?",
        "Give me the {a} for {K}.",
        "Regarding {K}, what is the {a}?",
    ],
    "eval": grammar3._QUESTIONS["eval"],
}
_MULTI_QUESTIONS = {
    "train": ["What are all the {A} of {K}?", "List all {A} given for {K}.", "Which {A} does {K} have?",
              "Give all {A} of {K}, in order."],
    "eval": ["Name all of the {A} that {K} has, please."],
}


# Version 6: training questions in generated frames (60%): random words before, between and after
# the attribute and the key, the key first or last, so that the key and attribute to copy can only
# be told by what the document says, not by where a known frame puts them. The random words are
# never words that only the held-out question frames use ("belongs", "say", "please", ...), so no
# generated frame is a held-out one.
_QUESTION_LINKS = ["of", "for", "on", "about", "from", "at", "in", "under", "with"]
_GENERATED_QUESTIONS = ["{P} the {a} {L} {K}{S}?", "{P} the {a} {L} {K}{S}.", "{P} {K}{S}, the {a}?",
                        "{K}: {a}?", "{P} {K} {L} the {a}{S}?", "The {a} {L} {K}, {S2}?", "{a} {L} {K}?"]
_TRAIN_QUESTION_WORDS = {w.lower() for q in _QUESTIONS["train"] + _MULTI_QUESTIONS["train"] + _QUESTION_LEAD_INS
                         for w in re.findall(r"[A-Za-z]+", q)}
_EVAL_ONLY_QUESTION_WORDS = {w.lower() for q in _QUESTIONS["eval"] + _MULTI_QUESTIONS["eval"]
                             for w in re.findall(r"[A-Za-z]+", q)} - _TRAIN_QUESTION_WORDS - {"a", "k"}


class Grammar:
    """The vocabulary, frames and questions of one split; draws keys, values and facts."""

    def __init__(self, split, record=False, lexicon=None, version=GENERATOR_VERSION):
        """lexicon (training only): words for keys and attributes besides the pools and
        pseudo-words, filler_lexicon(filler); make_sample sets it from its filler when None.
        version: 6, 5 or 4 (5 draws no generated question frames, 4 no mixed values either; the
        held-out split is the same in all three)."""
        if split not in SPLITS:
            raise ValueError("split must be one of %s, not %r" % (SPLITS, split))
        if version not in VERSIONS:
            raise ValueError("grammar.py draws versions %s, not %r" % (VERSIONS, version))
        self.split, self.version = split, version
        self.adjectives = _words(_ADJECTIVES, split)
        self.nouns = _words(_NOUNS, split)
        self.given = _words(_GIVEN, split)
        self.family = _words(_FAMILY, split)
        self.place_heads = _words(_PLACE_HEADS, split)
        self.place_tails = _PLACE_TAILS
        self.dirs = _words(_PATH_DIRS, split)
        self.attributes = _ATTRIBUTES[split]
        self.value_kinds = _VALUE_KINDS_V5_TRAIN if split == "train" and version >= 5 else _VALUE_KINDS[split]
        self.frames = _FRAMES[split]
        self.block_heads = _BLOCK_HEADS[split]
        self.questions = _QUESTIONS[split]
        self.multi_questions = _MULTI_QUESTIONS[split]
        self.vt_frames = _VT_FRAMES[split]
        self.vt_questions = _VT_QUESTIONS[split]
        self.manual = _MANUAL[split]
        self.device_kinds = _DEVICE_KINDS[split]
        self.parts = _PARTS[split]
        # With record (the tests), every frame rendered, key and attribute drawn is kept.
        self.record = record
        self.used_frames, self.used_keys, self.used_attrs, self.used_values = [], [], [], []
        self.value_words = _words(_VALUE_WORDS, split)
        self.lexicon = None
        self.set_lexicon(lexicon)
        self.kind_of = {}  # generated attributes' value kinds

    def set_lexicon(self, lexicon):
        if lexicon is None:
            return
        if self.split != "train":
            lexicon = []  # the held-out split draws its own pools only
        bad = [w for w in lexicon if not train_word_ok(w)]
        if bad:
            raise ValueError("lexicon words not allowed in training: %s" % bad[:5])
        self.lexicon = list(lexicon)
        self.lexicon_set = frozenset(lexicon)

    # Version 4, training only: a word of a key or attribute from the pools, the lexicon, a
    # pseudo-word or random letters; always a training word (train_word_ok).
    def word(self, rng):
        lex = self.lexicon or []
        for _ in range(100):
            r = rng.random()
            if r < 0.25:
                w = rng.choice(self.adjectives if rng.random() < 0.4 else self.nouns)
            elif r < 0.55 and lex:
                w = rng.choice(lex)
            elif r < 0.9:
                w = pseudo_word(rng)
            else:
                w = letter_string(rng)
            if len(w) >= 2 and train_word_ok(w):
                return w
        raise RuntimeError("no training word found")

    def _name_part(self, rng, pool):
        if rng.random() < 0.5:
            return rng.choice(pool)
        for _ in range(100):
            w = pseudo_word(rng, rng.randint(1, 3))
            if len(w) >= 3 and train_word_ok(w):
                return w.capitalize()
        raise RuntimeError("no name found")

    def _key_train(self, rng, kind=None, share=None):
        """A training key (version 4): the kinds of version 3, their words from far larger spaces."""
        kind = kind or rng.choices(["phrase", "name", "place", "path", "ident", "letters"],
                                   weights=[5, 2, 1, 1, 1.5, 1])[0]
        if kind == "phrase":
            n = rng.choices([1, 2, 3, 4], weights=[2, 5, 3, 1.5])[0]
            words = [self.word(rng) for _ in range(n)]
            if share:
                w = rng.choice(share.split(" "))
                if len(words) > 1 and rng.random() < 0.7:
                    words[rng.randrange(len(words))] = w
                else:
                    words.insert(rng.randrange(len(words) + 1), w)
            bare = " ".join(words)
            return bare, "the " + bare
        if kind == "name":
            given = share.split(" ")[0] if share and " " in share and share[:1].isupper() else None
            bare = (given or self._name_part(rng, self.given)) + " " + self._name_part(rng, self.family)
            if rng.random() < 0.15:
                bare = self._name_part(rng, self.given) + " " + bare
            return bare, bare
        if kind == "place":
            for _ in range(100):
                head = rng.choice(self.place_heads) if rng.random() < 0.5 else self.word(rng).capitalize()
                bare = head + rng.choice(self.place_tails)
                if bare.lower() not in _EVAL_PLACES:
                    break
            if rng.random() < 0.3:
                bare += " " + rng.choice(["Station", "Harbour", "Green", "Cross", "Park", "Hill", "Row", "Yard"])
            return bare, bare
        if kind == "path":
            parts = [rng.choice(self.dirs) if rng.random() < 0.5 else self.word(rng) for _ in range(rng.randint(1, 3))]
            stem = rng.choice(["_", "-", ""]).join(self.word(rng) for _ in range(rng.randint(1, 2)))
            if rng.random() < 0.3:
                stem += rng.choice(["_", "-", ""]) + str(rng.randrange(1, 100))
            bare = "/".join(parts) + "/" + stem + rng.choice(_PATH_EXTS)
            if rng.random() < 0.15:
                bare = rng.choice(["/", "./", "~/"]) + bare
            return bare, bare
        if kind == "ident":
            words = [self.word(rng) for _ in range(rng.randint(1, 3))]
            style = rng.choice(["snake", "camel", "upper", "kebab"])
            if style == "snake":
                bare = "_".join(words)
            elif style == "camel":
                bare = words[0] + "".join(w.capitalize() for w in words[1:])
            elif style == "kebab":
                bare = "-".join(words)
            else:
                bare = "_".join(words).upper()
            if rng.random() < 0.4:
                bare += rng.choice(["_", "", "-"]) + str(rng.randrange(0, 1000))
            return bare, bare
        if kind == "letters":  # character-level keys: "the unit qzkv-48", "XTRWB"
            for _ in range(100):
                w = letter_string(rng, 3, 6)
                if train_word_ok(w):
                    break
            style = rng.random()
            if style < 0.4:
                return w.upper(), w.upper()
            if style < 0.7:
                bare = "%s %s-%d" % (rng.choice(["unit", "item", "node", "box", "cell"]), w, rng.randrange(1, 100))
                return bare, "the " + bare
            return w, "the " + w
        raise ValueError("unknown key kind " + kind)

    def near_miss(self, rng, key):
        """The key with one letter changed ("velmor" for "velmar"), still a training key; None when
        no such key is found."""
        bare, ref = key
        spots = [i for i, c in enumerate(bare) if c.islower()]
        for _ in range(20):
            if not spots:
                return None
            i = rng.choice(spots)
            new = bare[:i] + rng.choice(_LETTERS.replace(bare[i], "")) + bare[i + 1:]
            if all(train_word_ok(w) for w in re.findall(r"[A-Za-z]+", new)) and new.lower() not in _EVAL_PLACES:
                return new, ref[:len(ref) - len(bare)] + new
        return None

    # Keys: (bare, in running text). A key is one to four words; a held-out key has no word a
    # training key can have (names and place names by their parts, paths and identifiers too).
    def _key(self, rng, kind=None, share=None):
        """A key; with share (another key's bare form), a key that shares a word with it."""
        kind = kind or rng.choices(["phrase", "name", "place", "path", "ident"], weights=[5, 2, 1, 1, 1])[0]
        if kind == "phrase":
            n = rng.choices([1, 2, 3, 4], weights=[2, 5, 3, 1])[0]
            words = rng.sample(self.adjectives, n - 1) + [rng.choice(self.nouns)]
            if n >= 3 and rng.random() < 0.4:  # a noun compound: "harbor lock gate"
                words[-2] = rng.choice(self.nouns)
            if share:
                shared = share.split(" ")
                w = rng.choice(shared)
                if w in self.nouns:
                    words[-1] = w
                elif len(words) > 1:
                    words[0] = w
                else:
                    words.insert(0, w)
            bare = " ".join(words)
            return bare, "the " + bare
        if kind == "name":
            bare = rng.choice(self.given) + " " + rng.choice(self.family)
            if share and " " in share and share.split(" ")[0] in self.given:
                bare = share.split(" ")[0] + " " + rng.choice(self.family)
            return bare, bare
        if kind == "place":
            bare = rng.choice(self.place_heads) + rng.choice(self.place_tails)
            if rng.random() < 0.3:
                bare += " " + rng.choice(["Station", "Harbour", "Green", "Cross", "Park", "Hill"])
            return bare, bare
        if kind == "path":
            parts = rng.sample(self.dirs, rng.randint(1, 3))
            stem = rng.choice(self.nouns).replace(" ", "_")
            if rng.random() < 0.5:
                stem = rng.choice(self.adjectives) + rng.choice(["_", "-"]) + stem
            bare = "/".join(parts) + "/" + stem + rng.choice(_PATH_EXTS)
            return bare, bare
        if kind == "ident":
            words = rng.sample(self.adjectives + self.nouns, rng.randint(2, 3))
            style = rng.choice(["snake", "camel", "upper"])
            if style == "snake":
                bare = "_".join(w.replace(" ", "_") for w in words)
            elif style == "camel":
                bare = words[0] + "".join(w.capitalize() for w in words[1:])
            else:
                bare = "_".join(words).upper()
            return bare, bare
        raise ValueError("unknown key kind " + kind)

    def key(self, rng, kind=None, share=None):
        k = self._key_train(rng, kind, share) if self.split == "train" else self._key(rng, kind, share)
        if self.record:
            self.used_keys.append(k[0])
        return k

    def attribute(self, rng, kind=None):
        kind = kind or rng.choice(self.value_kinds)
        if self.split == "train" and (kind not in self.attributes or rng.random() < 0.6):
            attr = self._generated_attribute(rng, kind)
        else:
            attr = rng.choice(self.attributes[kind])
        if self.record:
            self.used_attrs.append(attr)
        return kind, attr

    def _generated_attribute(self, rng, kind):
        for _ in range(100):
            words = [self.word(rng) for _ in range(rng.choice([1, 1, 2]))]
            if rng.random() < 0.75:
                words.append(rng.choice(_ATTR_HEADS[kind]))
            attr = " ".join(words)
            if attr not in _EVAL_ATTRS:
                self.kind_of[attr] = kind
                return attr
        raise RuntimeError("no attribute found")

    def value(self, rng, kind, attr):
        v = make_value(rng, kind, self.split, attr, avoid=getattr(self, "lexicon_set", ()), version=self.version)
        if self.record:
            self.used_values.append(v)
        return v

    def question_frame(self, rng, multi=False):
        """A question frame with {a} (multi: {A}, the plural) and {K}: one of the split's frames, or
        (version 6, training, 60%) a generated one."""
        frames = self.multi_questions if multi else self.questions
        if self.split != "train" or self.version < 6 or rng.random() < 0.4:
            return rng.choice(frames)
        words = lambda lo, hi: " ".join(self.question_word(rng) for _ in range(rng.randint(lo, hi)))
        link = rng.choice(_QUESTION_LINKS) if rng.random() < 0.5 else words(1, 3)
        suffix = "" if rng.random() < 0.6 else " " + words(1, 3)
        q = rng.choice(_GENERATED_QUESTIONS).format(P=words(0, 4), L=link, S=suffix, S2=words(1, 3),
                                                    a="{A}" if multi else "{a}", K="{K}")
        q = " ".join(q.split())  # no double spaces where a part is empty
        if q.startswith(("{K}", "{a}", "{A}")):  # a word first: a key or attribute "the ..." would be
            q = self.question_word(rng).capitalize() + " " + q  # capitalized there, and no copy
        return q

    def question_word(self, rng):
        """A word of a generated question frame (version 6): any training word but those only the
        held-out question frames use."""
        for _ in range(100):
            w = self.word(rng)
            if w.lower() not in _EVAL_ONLY_QUESTION_WORDS:
                return w
        raise RuntimeError("no question word found")

    def question(self, rng, q):
        q = _cap(q)
        if self.split == "train" and rng.random() < 0.2:
            q = rng.choice(_QUESTION_LEAD_INS).format(W=self.word(rng).capitalize()) + q
        return q

    def variable(self, rng):
        """A training variable name (version 4): upper-case letters, a pseudo-word, or words joined."""
        for _ in range(100):
            r = rng.random()
            if r < 0.35:
                v = letter_string(rng, 3, 7).upper()
            elif r < 0.6:
                v = pseudo_word(rng) + ("" if rng.random() < 0.6 else str(rng.randrange(10)))
            elif r < 0.85:
                v = "_".join(self.word(rng) for _ in range(2))
            else:
                w = [self.word(rng) for _ in range(2)]
                v = w[0] + w[1].capitalize()
            if all(train_word_ok(x) for x in re.findall(r"[A-Za-z]+", v)):
                return v
        raise RuntimeError("no variable name found")

    def value_kind(self, attr):
        for kind, names in self.attributes.items():
            if attr in names:
                return kind
        return self.kind_of[attr]

    def render(self, rng, frame, key, attr, value):
        """(needle text, whether it stands as a paragraph of its own) of a fact in a frame; block
        frames may get a heading line."""
        kind, text = frame
        if self.record:
            self.used_frames.append(text)
        bare, ref = key
        s = text.format(K=ref, k=bare, a=attr, v=value)
        s = _cap(s)
        if self.split == "train" and kind == "inline" and text[0] not in "(\"" and rng.random() < 0.35:
            lead = rng.choice(_LEAD_INS).format(W=self.word(rng), n=rng.randrange(2, 400))
            first = text.split(" ")[0]
            if s.startswith("The ") or (not text.startswith("{") and not first.isupper()):
                s = s[0].lower() + s[1:]  # "By the way, the ...", "Also, someone wrote ..."
            s = lead + s
        if kind == "block":
            head = rng.choice(self.block_heads)
            if head == "```":
                s = "```\n" + s + "\n```"
            elif head:
                s = head + "\n" + s
        return s, kind == "block"


def _fact_needles(rng, g, task, train):
    """(needles, ordered, question, answer, items, copies) of a task; needles are (text, is_block);
    copies the spans of the answer copied verbatim, each (text, "question" or "document"): the
    rest of the answer is its fixed frame."""
    if task in ("single", "multikey"):
        if task == "single":
            n_other = rng.choice([0, 1, 1, 2, 3, 4]) if train else 0
        else:
            n_other = rng.randint(1, 7) if train else 3
        kind, attr = g.attribute(rng)
        target = g.key(rng)
        keys = [target]
        facts = []  # (key, attr, value)
        value = g.value(rng, kind, attr)
        facts.append((target, attr, value))
        used = {(target[0], attr)}
        for _ in range(50 * (n_other + 1)):
            if len(facts) == n_other + 1:
                break
            r = rng.random()
            # version 4 (training): shares of the distractor kinds, near misses among them
            share, other_attr, near = (0.35, 0.55, 0.7) if g.split == "train" else (0.45, 0.7, 0.7)
            if r < share:  # a key sharing a word with the asked one, same attribute
                k = g.key(rng, kind="phrase", share=target[0]) if target[1].startswith("the ") else g.key(rng)
                a = attr
            elif r < other_attr:  # the asked key, another attribute
                k, (okind, a) = target, g.attribute(rng)
            elif r < near:  # the asked key with one letter changed, same attribute
                k, a = g.near_miss(rng, target), attr
                if k is None:
                    continue
            else:  # another key altogether, same attribute kind
                k, a = g.key(rng), attr
            if (k[0], a) in used:
                continue
            used.add((k[0], a))
            facts.append((k, a, g.value(rng, g.value_kind(a), a)))
        needles = []
        for i, (k, a, v) in enumerate(facts):
            # A distractor never states the asked value (nor contains it): the answer stays unique.
            while i and (value in v or v in value):
                v = g.value(rng, g.value_kind(a), a)
            needles.append(g.render(rng, rng.choice(g.frames), k, a, v))
        q = g.question(rng, g.question_frame(rng).format(a=attr, K=target[1]))
        return needles, False, q, _answer(target, attr, value), [value], \
            [(attr, "question"), (target[1], "question"), (value, "document")]
    if task == "multivalue":
        n = rng.randint(2, 5) if train else 4
        kind, attr = g.attribute(rng)
        key = g.key(rng)
        values = _distinct(rng, n, lambda: g.value(rng, kind, attr))
        frame = rng.choice(g.frames)  # one frame for all values of a key, as a document would
        needles = [g.render(rng, frame if rng.random() < 0.7 else rng.choice(g.frames), key, attr, v) for v in values]
        plural = _plural(attr)
        q = g.question(rng, g.question_frame(rng, multi=True).format(a=attr, A=plural, K=key[1]))
        ans = _cap(MULTI_ANSWER.format(A=plural, K=key[1], vs=", ".join(values)))
        return needles, True, q, ans, values, \
            [(plural, "question"), (key[1], "question")] + [(v, "document") for v in values]
    if task == "vt":
        hops = rng.randint(1, 4) if train else 4
        n_distract = rng.randint(0, 4) if train else 4
        first, hop = rng.choice(g.vt_frames)

        def name():
            if g.split == "train":
                return g.variable(rng)
            return rng.choice(g.adjectives) + "_" + rng.choice(g.nouns).replace(" ", "_")

        names = _distinct(rng, hops + 1 + n_distract + 1, name)
        value, other = _distinct(rng, 2, lambda: str(rng.randrange(10000, 100000)))
        chain, distract = names[: hops + 1], names[hops + 1:]
        main = [first.format(x=chain[0], v=value)] + [hop.format(x=chain[i], y=chain[i - 1])
                                                        for i in range(1, len(chain))]
        side = [first.format(x=distract[0], v=other)] + [hop.format(x=distract[i], y=distract[i - 1])
                                                          for i in range(1, len(distract))]
        needles = [(t, not t.endswith(".")) for t in tasks.interleave(rng, main, side)]  # code-like lines stand alone
        q = rng.choice(g.vt_questions).format(v=value)
        return needles, True, q, VT_ANSWER.format(v=value, names=", ".join(chain)), chain, \
            [(value, "question")] + [(x, "document") for x in chain]
    if task == "manual":
        needles_t, questions_t, answer_t = rng.choice(g.manual)
        model = "%s-%d" % ("".join(rng.choice("ABCDEFGHKLMNPRSTVXZ") for _ in range(rng.randint(1, 2))),
                           rng.randrange(10, 1000) * rng.choice([1, 10]))
        device = "the %s %s" % (model, rng.choice(g.device_kinds))
        part = rng.choice(g.parts)
        if g.split == "train":  # version 4: devices and parts in words of their own, too
            if rng.random() < 0.3:
                device = "the %s %s" % (model, g.word(rng))
            if rng.random() < 0.4:
                part = g.word(rng) + " " + (part if rng.random() < 0.5 else g.word(rng))
        n = str(rng.randrange(2, 5000))
        needle = rng.choice(needles_t).format(D=device, P=part, n=n)
        needles = [(_cap(needle), False)]
        if train and rng.random() < 0.6:  # the same part of another model, another number
            other = device.replace(model, model + rng.choice(["X", "S", "0", "B"]))
            o = rng.choice(needles_t).format(D=other, P=part, n=str(int(n) + rng.randint(1, 99)))
            needles.append((_cap(o), False))
        q = rng.choice(questions_t).format(D=device, P=part)
        q = _cap(q)
        return needles, False, q, _cap(answer_t.format(D=device, P=part, n=n)), [n], \
            [(device, "question"), (part, "question" if part in q else "document"), (n, "document")]
    raise ValueError("unknown task " + task)


def task_needles(rng, task, split, train=None):
    """(needles, ordered, question, answer, items) of one task in one split (see tasks.py).

    train widens the counts (the default: split == "train"); evaluation uses fixed counts.
    """
    if train is None:
        train = split == "train"
    needles, ordered, q, a, items, _ = _fact_needles(rng, Grammar(split), task, train)
    return [t for t, _ in needles], ordered, q, a, items


def make_sample(rng, filler, task, total_tokens, split, fmt="cli", train=None, name=None, grammar=None):
    """One sample of about total_tokens tokens in a split: like tasks.make_sample, with a Grammar
    of that split (pass grammar= to reuse one) and the filler of that split."""
    g = grammar or Grammar(split)
    if g.split != split:
        raise ValueError("grammar of split %s given for split %s" % (g.split, split))
    if g.lexicon is None:  # version 4: training keys also use the words of the training filler
        g.set_lexicon(filler_lexicon(filler) if split == "train" else [])
    if train is None:
        train = split == "train"
    needles, ordered, question, answer, items, copies = _fact_needles(rng, g, task, train)
    # random strings and pseudo-words take more tokens a character than version 3's words
    needle_tokens = sum(len(t) for t, _ in needles) * 2 // 3 + 6 * len(needles)
    sections = (total_tokens // 8000 + 1) * 14 if fmt == "gui" else 0
    budget = max(0, total_tokens - OVERHEAD_TOKENS[fmt] - needle_tokens - sections - len(question) // 3)
    paragraphs = filler.window(rng, budget)
    document = plant(rng, paragraphs, needles, ordered)
    name = name or tasks.file_name(rng)
    prompt = tasks.chatml(tasks.wrap(fmt, name, document, question))
    return {"task": task, "split": split, "format": fmt, "name": name, "prompt": prompt, "answer": answer,
            "items": items, "document": document, "question": question, "needles": [t for t, _ in needles],
            "copies": copies}


def tokenizer_corpus(rng, n):
    """Short texts in the markup and phrasing of the training split (never the held-out one)."""
    g = Grammar("train")
    out = []
    for _ in range(n):
        task = rng.choice(TASKS)
        needles, _, question, answer, _, _ = _fact_needles(rng, g, task, True)
        fmt = rng.choice(tasks.FORMATS)
        doc = "\n\n".join(t for t, _ in needles)
        out.append(tasks.chatml(tasks.wrap(fmt, tasks.file_name(rng), doc, question), answer))
    return out
