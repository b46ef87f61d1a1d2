#!/usr/bin/env python3
"""Tests of grammar.py (generator versions 6, 5 and 4) and of the frozen grammar3.py (version 3): the
held-out split cannot be drawn by the training generator, the answers are copies (of the question
and of the needle) in a fixed frame, training keys, attributes and values come from spaces too
large to memorize, and a seed gives the same sample every time. No data files needed (a small
filler of its own); a few seconds.

  python3 tools/needle/test_grammar.py        (ctest: needle_grammar)
"""

import hashlib
import os
import random
import re
import sys
import unittest
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grammar  # noqa: E402
import grammar3  # noqa: E402
import tasks  # noqa: E402


class SmallFiller:
    """Filler without a tokenizer: paragraphs of a few sentences, about 4 characters a token.
    With hostile, its words include every held-out word, place, attribute word and value word,
    month names and units: the training lexicon must leave all of them out."""

    def __init__(self, hostile=False):
        rng = random.Random(7)
        words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()
        if hostile:
            ev = grammar.Grammar("eval")
            words += [w.lower() for w in ev.adjectives + ev.nouns + ev.given + ev.family + ev.dirs +
                      ev.value_words] + sorted(grammar._EVAL_PLACES) + sorted(grammar._EVAL_NOTATION_WORDS)
            words += [w for a in grammar._EVAL_ATTRS for w in a.split(" ")]
        self.paragraphs = [" ".join(". ".join(" ".join(rng.choice(words) for _ in range(8)).capitalize()
                                              for _ in range(4)).split(" ")) + "." for _ in range(200)]

    def window(self, rng, budget_tokens):
        i = rng.randrange(len(self.paragraphs))
        n = max(1, budget_tokens // 60)
        return [self.paragraphs[(i + k) % len(self.paragraphs)] for k in range(n)]


def _skeleton(frame):
    """A regex of a frame's literal text: what any needle made from it contains."""
    parts = [re.escape(p) for p in re.split(r"\{[^}]*\}", frame)]
    return re.compile(".*".join(p for p in parts if p.strip()), re.S)


def _parts(key):
    """The words of a key, identifier or variable name, lower-case."""
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", key)]


def _eval_words():
    ev = grammar.Grammar("eval")
    return ({w.lower() for w in ev.adjectives + ev.nouns + ev.given + ev.family + ev.dirs + ev.place_heads},
            {h + t for h in ev.place_heads for t in ev.place_tails})


# The notations of the held-out value kinds (times, measures) and date format.
HELD_OUT_NOTATIONS = [re.compile(r"\d{1,2}:\d{2}"), re.compile(r"\d+\.\d (kg|grams|metres|cm|litres)\b"),
                      re.compile(r"\d{1,2} (%s) \d{4}" % "|".join(grammar._MONTHS))]


class SplitTest(unittest.TestCase):
    def test_pools_are_disjoint(self):
        tr, ev = grammar.Grammar("train"), grammar.Grammar("eval")
        for pool in ["adjectives", "nouns", "given", "family", "place_heads", "dirs", "device_kinds", "parts"]:
            a, b = set(getattr(tr, pool)), set(getattr(ev, pool))
            self.assertTrue(a and b, pool)
            self.assertFalse(a & b, pool)
        self.assertFalse({t for _, t in tr.frames} & {t for _, t in ev.frames})
        self.assertFalse(set(tr.questions) & set(ev.questions))
        self.assertFalse(set(tr.multi_questions) & set(ev.multi_questions))
        self.assertFalse(set(tr.vt_frames) & set(ev.vt_frames))
        self.assertFalse(set(tr.vt_questions) & set(ev.vt_questions))
        self.assertFalse({m[2] for m in tr.manual} & {m[2] for m in ev.manual})
        attrs = lambda g: {a for names in g.attributes.values() for a in names}  # noqa: E731
        self.assertFalse(attrs(tr) & attrs(ev))
        self.assertTrue({"time", "measure"} <= set(ev.value_kinds) - set(tr.value_kinds), "no value kind held out")
        self.assertFalse(set(tr.value_words) & set(ev.value_words))

    def test_no_frame_of_one_split_reads_as_one_of_the_other(self):
        # A held-out frame must not be a training frame with other words filled in (nor a training
        # question a held-out one).
        for group in (grammar._FRAMES, grammar._QUESTIONS, grammar._MULTI_QUESTIONS):
            texts = {split: [f[1] if isinstance(f, tuple) else f for f in group[split]] for split in grammar.SPLITS}
            for t in texts["train"]:
                for e in texts["eval"]:
                    self.assertNotEqual(_skeleton(t).pattern, _skeleton(e).pattern, (t, e))

    def test_lexicon_leaves_held_out_words_out(self):
        lex = grammar.filler_lexicon(SmallFiller(hostile=True))
        eval_words, eval_places = _eval_words()
        self.assertTrue(lex)
        for w in lex:
            self.assertEqual(grammar.split_of(w), "train", w)
            self.assertNotIn(w, eval_words)
            self.assertNotIn(w, eval_places)
            self.assertNotIn(w, grammar._EVAL_NOTATION_WORDS)
        with self.assertRaises(ValueError):
            grammar.Grammar("train", lexicon=sorted(eval_words))

    def test_training_samples_draw_nothing_held_out(self):
        g = grammar.Grammar("train", record=True)
        eval_words, eval_places = _eval_words()
        eval_frames = [f for _, f in grammar._FRAMES["eval"]]
        eval_value_words = set(grammar.Grammar("eval").value_words)
        filler = SmallFiller(hostile=True)
        rng = random.Random("test-train")
        vt_names, questions = [], []
        for i in range(3000):
            task = grammar.TASKS[i % len(grammar.TASKS)]
            s = grammar.make_sample(rng, filler, task, 600, "train", grammar=g)
            if task == "vt":
                vt_names += s["items"]
            questions.append(s["question"])
        self.assertFalse(set(g.used_attrs) & grammar._EVAL_ATTRS)
        for key in g.used_keys + vt_names:
            for w in _parts(key):
                self.assertNotIn(w, eval_words, key)
                self.assertNotIn(w, eval_places, key)
            self.assertNotIn(key.split(" ")[0].lower(), eval_places, key)
        for f in g.used_frames:
            self.assertNotIn(f, eval_frames)
        for q in questions:
            for e in grammar._QUESTIONS["eval"] + grammar._MULTI_QUESTIONS["eval"]:
                self.assertIsNone(_skeleton(e).fullmatch(q), (q, e))
        for v in g.used_values:
            for pattern in HELD_OUT_NOTATIONS:
                self.assertIsNone(pattern.search(v), v)
            for w in re.split(r"[ -]", v):
                self.assertNotIn(w, eval_value_words, v)
        self.assertGreater(len(set(g.used_frames)), 30)

    def test_training_keys_and_attributes_cannot_be_memorized(self):
        # Keys, attributes and word values come from spaces far larger than a run's draws: in
        # 3000 samples almost every key and most generated attributes are new, and the words of
        # keys number in the thousands (version 3: about 400 key words, 36 attributes).
        g = grammar.Grammar("train", record=True, lexicon=[])  # no filler words: pools and generated words
        filler = SmallFiller()
        rng = random.Random("test-space")
        for i in range(3000):
            grammar.make_sample(rng, filler, ["single", "multikey"][i % 2], 600, "train", grammar=g)
        keys = Counter(g.used_keys)
        self.assertGreater(len(keys), 0.9 * len(g.used_keys))
        words = Counter(w for k in g.used_keys for w in _parts(k))
        self.assertGreater(len(words), 4000)
        self.assertLess(words.most_common(1)[0][1] / sum(words.values()), 0.01, words.most_common(5))
        attrs = Counter(g.used_attrs)
        self.assertGreater(len(attrs), 0.5 * len(g.used_attrs))
        self.assertGreater(sum(1 for a in attrs if " " in a), 0.3 * len(attrs))  # multi-word attributes
        kinds = {grammar.Grammar.value_kind(g, a) for a in attrs}
        self.assertEqual(kinds, set(g.value_kinds))

    def test_training_has_the_held_out_surface_kinds(self):
        # What the held-out split's keys look like (phrases of several words, names, places, file
        # paths, identifiers) training has too, in its own words.
        g = grammar.Grammar("train", lexicon=grammar.filler_lexicon(SmallFiller()))
        rng = random.Random("kinds")
        shapes = {"phrase": r"the [a-z]+( [a-z]+)+", "name": r"[A-Z][a-z]+ [A-Z][a-z]+", "path": r"[^ ]+/[^ ]+\.[a-z]+",
                  "ident": r"[A-Za-z]+([_-][A-Za-z0-9]+)+|[a-z]+[A-Z][A-Za-z]+[0-9]*", "place": r"[A-Z][a-z]+( [A-Z][a-z]+)?"}
        for kind, shape in shapes.items():
            hits = sum(bool(re.fullmatch(shape, g.key(rng, kind)[1])) for _ in range(200))
            self.assertGreater(hits, 60, kind)

    def test_near_misses_differ_by_one_letter(self):
        g = grammar.Grammar("train")
        rng = random.Random("near")
        for _ in range(300):
            k = g.key(rng)
            m = g.near_miss(rng, k)
            if m is None:
                continue
            self.assertEqual(len(m[0]), len(k[0]))
            self.assertEqual(sum(a != b for a, b in zip(m[0], k[0])), 1, (k, m))
            self.assertTrue(m[1].endswith(m[0]))

    def test_wrong_split_is_refused(self):
        with self.assertRaises(ValueError):
            grammar.Grammar("test")
        with self.assertRaises(ValueError):
            grammar.make_sample(random.Random(1), SmallFiller(), "single", 500, "train",
                                grammar=grammar.Grammar("eval"))


# The words an answer has besides its copies: its fixed frame.
FRAME_WORDS = set(re.findall(r"[A-Za-z]+", " ".join(
    [grammar.ANSWER, grammar.MULTI_ANSWER, grammar.VT_ANSWER] +
    [m[2] for split in grammar.SPLITS for m in grammar._MANUAL[split]]).replace("{", " ").replace("}", " "))) - {
    "a", "K", "v", "A", "vs", "names", "D", "P", "n"}


class SampleTest(unittest.TestCase):
    def test_seed_gives_the_same_sample(self):
        filler = SmallFiller()
        for split in grammar.SPLITS:
            for task in grammar.TASKS:
                a = grammar.make_sample(random.Random("s-%s" % task), filler, task, 800, split)
                b = grammar.make_sample(random.Random("s-%s" % task), filler, task, 800, split,
                                        grammar=grammar.Grammar(split))
                self.assertEqual(a, b)
                c = grammar.make_sample(random.Random("t-%s" % task), filler, task, 800, split)
                self.assertNotEqual(a["prompt"], c["prompt"])

    def test_pinned_samples(self):
        # Changing what a seed gives needs a new GENERATOR_VERSION (and these digests). Version 4's
        # and 5's samples are still drawn by Grammar(version=...); the held-out split is the same in all.
        self.assertEqual(grammar.GENERATOR_VERSION, 6)
        for version, pinned in ((4, PINNED), (5, PINNED5), (6, PINNED6)):
            got = {}
            for split, task, seed in pinned:
                s = grammar.make_sample(random.Random(seed), SmallFiller(), task, 800, split,
                                        grammar=grammar.Grammar(split, version=version))
                got[(split, task, seed)] = hashlib.sha256((s["prompt"] + s["answer"]).encode()).hexdigest()[:16]
            self.assertEqual(got, pinned, "version %d" % version)
        with self.assertRaises(ValueError):
            grammar.Grammar("train", version=3)

    def test_version_5_adds_mixed_values_and_keeps_the_held_out_split(self):
        filler = SmallFiller()
        for task in grammar.TASKS:  # the held-out split: the same samples from the same seeds
            a = grammar.make_sample(random.Random("v-" + task), filler, task, 700, "eval",
                                    grammar=grammar.Grammar("eval", version=4))
            for version in (5, 6):
                b = grammar.make_sample(random.Random("v-" + task), filler, task, 700, "eval",
                                        grammar=grammar.Grammar("eval", version=version))
                self.assertEqual(a, b)
        self.assertNotIn("mixed", grammar.Grammar("train", version=4).value_kinds)
        self.assertNotIn("mixed", grammar.Grammar("eval").value_kinds)
        rng = random.Random("mixed")
        values = [grammar.make_value(rng, "mixed", "train") for _ in range(2000)]
        for v in values:  # numbers and words together, never a held-out notation or a list's ", "
            parts = re.split(r" / | |-", v)
            self.assertTrue(any(re.fullmatch(r"\d+(\.\d)?", p) for p in parts), v)
            self.assertTrue(any(re.fullmatch(r"[a-z]+", p) for p in parts), v)
            self.assertFalse(any(n.search(v) for n in HELD_OUT_NOTATIONS), v)
            self.assertNotIn(", ", v)
        self.assertGreater(sum(1 for v in values if re.match(r"\d+\.\d ", v)), 200)  # "228.0 velmor"
        self.assertGreater(len(set(values)), 1900)
        strings = [grammar.make_value(rng, "string", "train") for _ in range(3000)]
        self.assertGreater(sum(":" in v for v in strings), 200)  # version 5: ":" in strings ...
        for v in strings:  # ... never between digits (the held-out times' notation)
            self.assertIsNone(re.search(r"\d:|:\d", v), v)
        self.assertFalse(any(":" in grammar.make_value(rng, "string", "train", version=4) for _ in range(3000)))

    def test_version_6_generates_question_frames(self):
        # 60% of training questions in generated frames, none using a word only held-out question
        # frames use; the key and attribute stand in them verbatim (the copies test covers the rest).
        g = grammar.Grammar("train", lexicon=grammar.filler_lexicon(SmallFiller()))
        rng = random.Random("questions")
        frames = [g.question_frame(rng, multi=i % 4 == 0) for i in range(4000)]
        fixed = set(g.questions) | set(g.multi_questions)
        generated = [f for f in frames if f not in fixed]
        self.assertGreater(len(generated), 0.5 * len(frames))
        self.assertGreater(len(set(generated)), 0.8 * len(generated))  # short ones ("{a} of {K}?") repeat
        held_out_words = grammar._EVAL_ONLY_QUESTION_WORDS
        self.assertTrue({"belongs", "say", "please"} <= held_out_words)
        for f in generated:
            self.assertEqual(f.count("{K}"), 1, f)
            self.assertEqual(f.count("{A}" if "{A}" in f else "{a}"), 1, f)
            self.assertFalse(f.startswith(("{K}", "{a}", "{A}")), f)
            self.assertFalse({w.lower() for w in re.findall(r"[A-Za-z]+", f.replace("{K}", "").replace("{a}", "")
                                                              .replace("{A}", ""))} & held_out_words, f)
        self.assertGreater(sum(f.index("{K}") < f.index("{a}") for f in generated if "{a}" in f), 300)  # key first
        v5 = grammar.Grammar("train", version=5)
        self.assertTrue(all(v5.question_frame(rng) in v5.questions for _ in range(500)))
        self.assertTrue(all(grammar.Grammar("eval").question_frame(rng) in grammar._QUESTIONS["eval"]
                            for _ in range(500)))

    def test_answers_are_copies(self):
        # Every answer is its fixed frame around verbatim copies: the key and attribute (and a vt
        # question's value) from the question, the value(s) (and variable names) from the needles.
        filler = SmallFiller()
        for split in grammar.SPLITS:
            rng = random.Random("doc-" + split)
            for i in range(600):
                task = grammar.TASKS[i % len(grammar.TASKS)]
                s = grammar.make_sample(rng, filler, task, 700, split)
                rest = s["answer"]
                for text, source in s["copies"]:
                    self.assertIn(text, s["answer"], s)
                    self.assertIn(text, s["question"] if source == "question" else "\n".join(s["needles"]), s)
                    # as a whole word: a one-letter copy ("e", a variable) is not the "e" of "The"
                    rest = re.sub(r"(?<!\w)%s(?!\w)" % re.escape(text), " ", rest, count=1)
                for w in re.findall(r"[A-Za-z]+", rest):
                    self.assertIn(w, FRAME_WORDS, (w, s["answer"], s["copies"]))
                for item in s["items"]:
                    self.assertIn(item, s["document"], s)
                    self.assertIn(item, s["answer"])
                for n in s["needles"]:
                    self.assertIn(n, s["document"])
                if s["task"] in ("multivalue", "vt"):  # listed in document order
                    pos = [s["document"].index(n) for n in s["needles"]]
                    self.assertEqual(pos, sorted(pos))
                if s["task"] in ("single", "multikey"):
                    # the asked value is stated once, in a needle that names the asked key
                    value, key = s["items"][0], s["copies"][1][0]
                    pattern = r"(?<![\w-])%s(?![\w-])" % re.escape(value)
                    self.assertEqual(len(re.findall(pattern, s["document"])), 1, s["needles"])
                    bare = key[4:] if key.startswith("the ") else key
                    self.assertTrue(any(value in n and bare in n for n in s["needles"]), s)

    def test_eval_counts_are_fixed(self):
        filler = SmallFiller()
        for i in range(50):
            s = grammar.make_sample(random.Random(i), filler, "multikey", 800, "eval")
            self.assertEqual(len(s["needles"]), 4)
            s = grammar.make_sample(random.Random(i), filler, "single", 800, "eval")
            self.assertEqual(len(s["needles"]), 1)
            s = grammar.make_sample(random.Random(i), filler, "vt", 800, "eval")
            self.assertEqual(len(s["items"]), 5)

    def test_old_generators_unchanged(self):
        self.assertEqual(tasks.GENERATOR_VERSION, 2)
        self.assertEqual(grammar3.GENERATOR_VERSION, 3)
        s = grammar3.make_sample(random.Random("pinned"), SmallFiller(), "multikey", 800, "eval")
        digest = hashlib.sha256((s["prompt"] + s["answer"]).encode()).hexdigest()[:16]
        self.assertEqual(digest, "341f49b20dee2753")  # generator 3's pinned sample, as committed


PINNED = {
    ("eval", "multikey", "pinned"): "ebb03002c0365adb",
    ("eval", "single", "pinned-1"): "b6911894aa7a95e3",
    ("train", "single", "pinned-2"): "368be3dae576e355",
    ("train", "multikey", "pinned-3"): "5af13ddac4fb672a",
    ("train", "vt", "pinned-4"): "28a3c3de00a3ec2a",
    ("train", "manual", "pinned-5"): "a8b82e7a677bd153",
    ("train", "single", "pinned-9"): "c25dd57bdef236e0",
}
# Version 5 draws one more value kind; most seeds give version 4's sample (random.choice over 6 or 7
# kinds takes the same 3 random bits unless they make 6), pinned-9 draws a mixed value.
PINNED5 = dict(PINNED)
PINNED5[("train", "single", "pinned-9")] = "c4975ff21523fe4b"
# Version 6 draws question frames differently in training (the held-out digests stay).
PINNED6 = dict(PINNED5)
PINNED6[("train", "single", "pinned-2")] = "f59fe6845790b3d2"
PINNED6[("train", "multikey", "pinned-3")] = "430bafdff263191b"
PINNED6[("train", "single", "pinned-9")] = "713176a8fcdc0d2e"

if __name__ == "__main__":
    unittest.main()
