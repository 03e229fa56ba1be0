"""Builds the character language model that the recognizer's beam search
reads with (function/ocr/lm.go): an interpolated Kneser-Ney n-gram model
over characters, trained on the same decontaminated texts as the recognizer
(texts.py: no paragraph that holds a scored corpus line), with the lines of
our own form-like, typographic and rare-letter generators mixed in.

Written as gzip-compressed text, one n-gram per line after a header:

    pero-charlm 1
    order 5
    <log P(last char | the others)> TAB <log backoff weight as a context> TAB <n-gram>

Natural logarithms. An n-gram's own probability is the interpolated one; a
query for an n-gram not in the file backs off to the next shorter context,
adding that context's backoff weight, as in the ARPA format. The long s is
folded to s: the model scores spelling, not letterforms.

    python3 training/lm.py --out training/model/pero-latin.lm.gz   (make train-lm)
"""

import argparse
import collections
import gzip
import math
import random
import sys
import time

import texts


def training_text(corpus, seed, extra_lines):
    """Paragraphs as one long stream per paragraph, each padded with spaces
    (a line to read starts and ends at a word boundary)."""
    rng = random.Random(seed)
    t = texts.Texts(corpus)
    out = []
    for lang in t.langs:
        for p in t.pools[lang]:
            # Half as typed, half as a typesetter prints it (quotes, dashes, ligatures).
            out.append(texts.typographic(p, lang, rng) if rng.random() < 0.5 else p)
            # Now and then a line of the paragraph's language with words of
            # rare letters and signs, as the recognizer is trained with.
            if rng.random() < 0.2:
                out.append(texts.rare_words(t.line(rng, lang), lang, rng))
    for _ in range(extra_lines):
        out.append(texts.structured_line(rng))
    return [" " + p.replace("ſ", "s") + " " for p in out], t.dropped


def count(paras, order):
    """Raw counts of every n-gram up to order."""
    counts = [collections.Counter() for _ in range(order + 1)]
    for p in paras:
        for n in range(1, order + 1):
            c = counts[n]
            for i in range(len(p) - n + 1):
                c[p[i:i + n]] += 1
    return counts


def kneser_ney(counts, order, min_count):
    """Interpolated Kneser-Ney: the top order on raw counts, lower orders on
    continuation counts (how many distinct characters precede them), one
    discount per order from the counts of counts. Returns {ngram: (logp,
    logbackoff)}; n-grams of order 3 and up seen fewer than min_count times
    are pruned (their probability comes from backing off)."""
    # The counts each order is estimated on.
    est = [None] * (order + 1)
    est[order] = counts[order]
    for n in range(order - 1, 0, -1):
        cont = collections.Counter()
        for g in counts[n + 1]:
            cont[g[1:]] += 1
        # An n-gram that starts a paragraph has no left neighbour: count it once.
        for g, c in counts[n].items():
            if g not in cont:
                cont[g] = 1
        est[n] = cont
    discount = [0.0] * (order + 1)
    for n in range(1, order + 1):
        cc = collections.Counter(v for v in est[n].values() if v <= 2)
        n1, n2 = cc[1], cc[2]
        discount[n] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
    # Per context: the total count and the number of distinct followers.
    totals, followers = [None] * (order + 1), [None] * (order + 1)
    for n in range(1, order + 1):
        tot, fol = collections.Counter(), collections.Counter()
        for g, c in est[n].items():
            tot[g[:-1]] += c
            fol[g[:-1]] += 1
        totals[n], followers[n] = tot, fol
    vocab = len(est[1])
    prob = {}
    backoff = {}
    for n in range(1, order + 1):
        d = discount[n]
        for g, c in est[n].items():
            h = g[:-1]
            tot = totals[n][h]
            gamma = d * followers[n][h] / tot
            backoff[h] = gamma
            if n >= 3 and counts[n][g] < min_count:
                continue
            lower = prob[g[1:]] if n > 1 else 1.0 / vocab
            p = max(c - d, 0) / tot + gamma * lower
            prob[g] = p
    return {g: (math.log(p), math.log(backoff[g]) if g in backoff else 0.0) for g, p in prob.items()}, discount


def write(path, model, order):
    """The file function/ocr/lm.go reads; the same model gives the same bytes."""
    lines = [f"pero-charlm 1\norder {order}\n"]
    # Shorter n-grams first, each order sorted.
    for g in sorted(model, key=lambda g: (len(g), g)):
        lp, lb = model[g]
        lines.append(f"{lp:.3f}\t{lb:.3f}\t{g}\n")
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write("".join(lines).encode("utf-8"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=texts.default_corpus(), help="public corpus (its GENERATION/config.json names the texts)")
    ap.add_argument("--out", default="training/model/pero-latin.lm.gz")
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--min-count", type=int, default=2, help="n-grams of order 3 and up seen fewer times are pruned")
    ap.add_argument("--extra-lines", type=int, default=20000, help="form-like lines of our own generator mixed in")
    ap.add_argument("--seed", type=int, default=20261129)
    args = ap.parse_args()

    start = time.time()
    paras, dropped = training_text(args.corpus, args.seed, args.extra_lines)
    chars = sum(len(p) for p in paras)
    counts = count(paras, args.order)
    model, discount = kneser_ney(counts, args.order, args.min_count)
    write(args.out, model, args.order)
    per_order = collections.Counter(len(g) for g in model)
    print(f"lm: {len(paras)} paragraphs and lines, {chars} characters ({dropped} paragraphs dropped: they hold scored corpus text)",
          file=sys.stderr)
    print(f"lm: order {args.order}, {len(model)} n-grams ({', '.join(f'{n}: {per_order[n]}' for n in sorted(per_order))}), "
          f"discounts {', '.join(f'{d:.2f}' for d in discount[1:])}; {args.out} in {time.time() - start:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
