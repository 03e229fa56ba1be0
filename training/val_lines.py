"""Writes a validation set of line images for tuning decoding settings
(the language model's weight and bonus) without touching scored corpus
text: lines rendered as the training ones are, from another seed, and the
real lines of the pages the recognizer was trained on (TRAIN_PAGES), which
the benchmark never scores. Each line is NAME.png with NAME.gt.txt, the
layout of the corpus's lines directory, so `pero ocr --lines` reads it.

    python3 training/val_lines.py --out /tmp/val --n 600
"""

import argparse
import os
import random
import shutil

import render
import texts as textmod
from train import TRAIN_PAGES


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=textmod.default_corpus())
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=600, help="rendered lines")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--rare-share", type=float, default=0.0,
                    help="share of lines given words with rare letters and signs, as train.py --rare-share")
    ap.add_argument("--no-real", action="store_true", help="rendered lines only")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    sampler = render.Sampler(textmod.Texts(args.corpus), render.Fonts(args.corpus), None, rare_share=args.rare_share)
    for i in range(args.n):
        img, text = sampler.sample(rng)
        name = os.path.join(args.out, f"synth_{i:04d}")
        img.save(name + ".png")
        with open(name + ".gt.txt", "w", encoding="utf-8") as f:
            f.write(text + "\n")
    real_dir = os.path.join(args.corpus, "real", "lines")
    n_real = 0
    for f in [] if args.no_real else sorted(os.listdir(real_dir)):
        page = f.rsplit("_l", 1)[0]
        if page in TRAIN_PAGES and (f.endswith(".png") or f.endswith(".gt.txt") and not f.endswith(".norm.gt.txt")):
            shutil.copy(os.path.join(real_dir, f), os.path.join(args.out, "real_" + f))
            n_real += f.endswith(".png")
    print(f"{args.n} rendered and {n_real} real training-page lines in {args.out}")


if __name__ == "__main__":
    main()
