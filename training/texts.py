"""Training texts: the sources the public corpus was generated from (its
GENERATION/config.json), with every paragraph that holds a line of a corpus
page or line removed, so that no scored text is ever trained on."""

import glob
import json
import os
import random

import charset


def _paragraphs(kind, path):
    with open(path, encoding="utf-8", errors="replace") as f:
        data = f.read()
    if kind == "fortune":
        parts = data.split("\n%\n")
    elif kind == "sentences":
        parts = data.split("\n")
    else:
        parts = data.split("\n\n")
    return [p for p in (charset.normalize(p) for p in parts) if len(p) >= 8]


def _scored_lines(corpus):
    """Normalised text of every line the benchmark scores."""
    lines = set()
    pats = ["pages/*.txt", "lines/*.gt.txt", "real/pages/*.txt", "real/lines/*.gt.txt"]
    for pat in pats:
        for path in glob.glob(os.path.join(corpus, pat)):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    t = charset.fold(line)
                    if len(t) >= 12:
                        lines.add(t)
    return lines


class Texts:
    """Paragraph pools per language, sampled by the source weights."""

    def __init__(self, corpus, max_per_source=20000):
        gen = os.path.join(corpus, "GENERATION")
        with open(os.path.join(gen, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        scored = _scored_lines(corpus)
        self.pools = {}
        self.dropped = 0
        for lang, sources in cfg["texts"].items():
            pool = []
            for src in sources:
                path = src["path"]
                if not os.path.isabs(path):
                    path = os.path.join(gen, path)
                if not os.path.exists(path):
                    raise FileNotFoundError(
                        f"text source {path} is missing (install fortunes fortunes-cs fortunes-de)")
                paras = _paragraphs(src["kind"], path)[: src.get("max", max_per_source)]
                for p in paras:
                    folded = p.replace("ſ", "s")
                    if any(s in folded for s in scored if len(s) <= len(folded)):
                        self.dropped += 1
                        continue
                    pool.append(p)
            if not pool:
                raise ValueError(f"no training text for {lang}")
            self.pools[lang] = pool
        self.langs = sorted(self.pools)

    def line(self, rng: random.Random, lang=None):
        """A run of whole words of 2-90 characters from one paragraph."""
        lang = lang or rng.choice(self.langs)
        pool = self.pools[lang]
        while True:
            words = rng.choice(pool).split(" ")
            target = int(rng.triangular(2, 90, 50))
            start = rng.randrange(len(words))
            out = []
            n = 0
            for w in words[start:]:
                if n and n + 1 + len(w) > target:
                    break
                out.append(w)
                n += len(w) + (1 if n else 0)
            text = " ".join(out)
            if text and charset.encode(text) is not None:
                return text


def random_line(rng: random.Random):
    """A line of characters drawn from the whole set, so that rare ones are
    seen: digits and signs, capitals, or any character."""
    kind = rng.random()
    n = rng.randint(3, 40)
    if kind < 0.4:
        pool = "0123456789.,:;-–—/()%+=§€$°'\"„“”‚‘’«» "
    elif kind < 0.6:
        pool = "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÜÉÈÀÇČŘŠŽĎŤŇĚŮÚÍÝÁ "
    else:
        pool = charset.CHARS + "     "
    text = "".join(rng.choice(pool) for _ in range(n))
    return " ".join(text.split()) or "0"


def long_s(text, rng: random.Random):
    """Historical spelling: s as ſ except at the end of a word."""
    out = []
    for i, c in enumerate(text):
        nxt = text[i + 1] if i + 1 < len(text) else " "
        out.append("ſ" if c == "s" and nxt.isalpha() else c)
    return "".join(out)
