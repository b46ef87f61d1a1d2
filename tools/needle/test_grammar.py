#!/usr/bin/env python3
"""Tests of grammar.py (generator version 3): the held-out split cannot be drawn by the training
generator, and a seed gives the same sample every time. No data files needed (a small filler of
its own); a few seconds.

  python3 tools/needle/test_grammar.py
"""

import os
import random
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grammar  # noqa: E402
import tasks  # noqa: E402


class SmallFiller:
    """Filler without a tokenizer: paragraphs of a few sentences, about 4 characters a token."""

    def __init__(self):
        rng = random.Random(7)
        words = "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega".split()
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
        self.assertTrue(set(ev.value_kinds) - set(tr.value_kinds), "no value kind held out")
        words = lambda g: set(grammar._words(grammar._VALUE_WORDS, g.split))  # noqa: E731
        self.assertFalse(words(tr) & words(ev))

    def test_no_frame_of_one_split_reads_as_one_of_the_other(self):
        # A held-out frame must not be a training frame with other words filled in.
        for t in [f for _, f in grammar._FRAMES["train"]]:
            for e in [f for _, f in grammar._FRAMES["eval"]]:
                self.assertNotEqual(_skeleton(t).pattern, _skeleton(e).pattern, (t, e))

    def test_training_samples_draw_nothing_held_out(self):
        g = grammar.Grammar("train", record=True)
        ev = grammar.Grammar("eval")
        eval_words = set(ev.adjectives) | set(ev.nouns) | set(ev.given) | set(ev.family) | set(ev.dirs)
        eval_places = {h + t for h in ev.place_heads for t in ev.place_tails}
        eval_attrs = {a for names in ev.attributes.values() for a in names}
        eval_frames = [f for _, f in ev.frames]
        filler = SmallFiller()
        rng = random.Random("test-train")
        for i in range(3000):
            task = grammar.TASKS[i % len(grammar.TASKS)]
            grammar.make_sample(rng, filler, task, 600, "train", grammar=g)
        self.assertFalse(set(g.used_attrs) & eval_attrs)
        for key in g.used_keys:
            for w in re.split(r"[ _/.\-]|(?<=[a-z])(?=[A-Z])", key):
                self.assertNotIn(w.lower(), eval_words, key)
            self.assertNotIn(key.split(" ")[0], eval_places, key)
        for f in g.used_frames:
            self.assertNotIn(f, eval_frames)
        self.assertGreater(len(set(g.used_frames)), 20)
        self.assertGreater(len(set(g.used_keys)), 2000)

    def test_wrong_split_is_refused(self):
        with self.assertRaises(ValueError):
            grammar.Grammar("test")
        with self.assertRaises(ValueError):
            grammar.make_sample(random.Random(1), SmallFiller(), "single", 500, "train",
                                grammar=grammar.Grammar("eval"))


class SampleTest(unittest.TestCase):
    def test_seed_gives_the_same_sample(self):
        filler = SmallFiller()
        for split in grammar.SPLITS:
            for task in grammar.TASKS:
                a = grammar.make_sample(random.Random("s-%s" % task), filler, task, 800, split)
                b = grammar.make_sample(random.Random("s-%s" % task), filler, task, 800, split)
                self.assertEqual(a, b)
                c = grammar.make_sample(random.Random("t-%s" % task), filler, task, 800, split)
                self.assertNotEqual(a["prompt"], c["prompt"])

    def test_pinned_sample(self):
        # Changing what a seed gives needs a new GENERATOR_VERSION (and this digest).
        import hashlib
        s = grammar.make_sample(random.Random("pinned"), SmallFiller(), "multikey", 800, "eval")
        digest = hashlib.sha256((s["prompt"] + s["answer"]).encode()).hexdigest()[:16]
        self.assertEqual(grammar.GENERATOR_VERSION, 3)
        self.assertEqual(digest, PINNED)

    def test_answers_are_in_the_document(self):
        filler = SmallFiller()
        for split in grammar.SPLITS:
            rng = random.Random("doc-" + split)
            for i in range(500):
                task = grammar.TASKS[i % len(grammar.TASKS)]
                s = grammar.make_sample(rng, filler, task, 700, split)
                for item in s["items"]:
                    self.assertIn(item, s["document"], s)
                    self.assertIn(item, s["answer"])
                for n in s["needles"]:
                    self.assertIn(n, s["document"])
                if s["task"] in ("multivalue", "vt"):  # listed in document order
                    pos = [s["document"].index(n) for n in s["needles"]]
                    self.assertEqual(pos, sorted(pos))
                if s["task"] in ("single", "multikey"):
                    # the asked value is stated once
                    pattern = r"(?<![\w-])%s(?![\w-])" % re.escape(s["items"][0])
                    self.assertEqual(len(re.findall(pattern, s["document"])), 1, s["needles"])

    def test_eval_counts_are_fixed(self):
        filler = SmallFiller()
        for i in range(50):
            s = grammar.make_sample(random.Random(i), filler, "multikey", 800, "eval")
            self.assertEqual(len(s["needles"]), 4)
            s = grammar.make_sample(random.Random(i), filler, "single", 800, "eval")
            self.assertEqual(len(s["needles"]), 1)
            s = grammar.make_sample(random.Random(i), filler, "vt", 800, "eval")
            self.assertEqual(len(s["items"]), 5)

    def test_old_generator_unchanged(self):
        self.assertEqual(tasks.GENERATOR_VERSION, 2)


PINNED = "341f49b20dee2753"

if __name__ == "__main__":
    unittest.main()
