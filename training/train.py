"""Train the line recognizer from scratch, or further from an exported model.

  /usr/bin/python3 training/train.py --out training/runs/latin --steps 60000 --minutes 120
  /usr/bin/python3 training/train.py --init training/model/pero-latin-rec.onnx --out training/runs/more --lr 5e-4

Runs until --steps are done or --minutes of this run have passed, whichever
comes first; a later run with the same --out resumes from the last
checkpoint (model, optimiser, step and training time; the sample stream is re-seeded from the step). Every --eval-every
steps the CER on held-out lines is appended to <out>/log.tsv.

Data rules: texts from the corpus generation sources minus every paragraph
that holds a scored line (texts.py), the fonts the corpus config lists, and
the real line crops of the TRAIN_PAGES only; the other real pages and all
synthetic corpus pages and lines are never trained on.
"""

import argparse
import math
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import charset  # noqa: E402
import model as modelmod  # noqa: E402
import render  # noqa: E402
import texts as textmod  # noqa: E402
import warmstart  # noqa: E402

# The real scans come from three works, four pages each; the first two pages
# of each are trained on, the last two are held out and scored.
TRAIN_PAGES = {
    "vd_bankgraf_0076", "vd_bankgraf_0077",
    "vd_borrdisc_0018", "vd_borrdisc_0019",
    "vd_fiscfrie_0014", "vd_fiscfrie_0015",
}
HELDOUT_PAGES = {
    "vd_bankgraf_0078", "vd_bankgraf_0079",
    "vd_borrdisc_0020", "vd_borrdisc_0021",
    "vd_fiscfrie_0016", "vd_fiscfrie_0017",
}


default_corpus = textmod.default_corpus


def batch_tensors(samples):
    """Pad a list of (image, text) to one batch: images N x 3 x 32 x W,
    flat targets, target lengths and input lengths."""
    width = max(img.width for img, _ in samples)
    width = (width + 7) // 8 * 8
    x = np.zeros((len(samples), 1, render.HEIGHT, width), dtype=np.float32)
    targets, tlens, ilens = [], [], []
    for i, (img, text) in enumerate(samples):
        x[i, 0, :, : img.width] = render.to_array(img)
        enc = charset.encode(text)
        targets.extend(enc)
        tlens.append(len(enc))
        ilens.append(modelmod.steps(img.width))
    x = np.repeat(x, 3, axis=1)
    return (torch.from_numpy(x), torch.tensor(targets, dtype=torch.long),
            torch.tensor(tlens, dtype=torch.long), torch.tensor(ilens, dtype=torch.long))


class Stream(torch.utils.data.IterableDataset):
    """Endless batches; samples are drawn in groups of four batches and
    sorted by width so that little of each batch is padding."""

    def __init__(self, sampler, batch, seed):
        self.sampler, self.batch, self.seed = sampler, batch, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        rng = random.Random(self.seed * 1000 + wid)
        while True:
            group = []
            while len(group) < 4 * self.batch:
                img, text = self.sampler.sample(rng)
                # CTC needs a step per character and one between repeats.
                need = len(text) + sum(1 for a, b in zip(text, text[1:]) if a == b)
                if modelmod.steps(img.width) >= need and text:
                    group.append((img, text))
            group.sort(key=lambda s: s[0].width)
            batches = [group[i: i + self.batch] for i in range(0, len(group), self.batch)]
            rng.shuffle(batches)
            for b in batches:
                yield batch_tensors(b)


def lr_at(step, total, peak):
    warm = 500
    if step < warm:
        return peak * (step + 1) / warm
    hold = int(total * 0.6)
    if step < hold:
        return peak
    p = (step - hold) / max(1, total - hold)
    return peak * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def recognize(net, images):
    """Greedy CTC text of each PIL line image, one at a time as the engine
    runs them."""
    net.eval()
    out = []
    with torch.no_grad():
        for img in images:
            x, _, _, _ = batch_tensors([(img, "a")])
            p = net(x)[0]
            out.append(charset.decode(p.argmax(dim=1).tolist()))
    net.train()
    return out


def cer(hyps, refs):
    errs = sum(charset.levenshtein(charset.fold(h), charset.fold(r)) for h, r in zip(hyps, refs))
    return errs / max(1, sum(len(charset.fold(r)) for r in refs))


def eval_sets(corpus, texts, fonts, seed, n=150, small=False):
    """Held-out lines: rendered with another seed, and the real lines of
    the held-out pages (monitoring only; the final model is the last
    checkpoint, not the best one on these)."""
    rng = random.Random(seed + 7777)
    synth = render.Sampler(texts, fonts, None)
    val = [synth.sample(rng) for _ in range(n)]
    real = render.RealLines(corpus, HELDOUT_PAGES)
    if small:
        real.items = real.items[:n]
    return {
        "synthetic": ([render.to_height(i) for i, _ in val], [t for _, t in val]),
        "real_heldout": ([render.to_height(i) for i, _, _ in real.items], [t for _, t, _ in real.items]),
    }


def _quiet_worker(_):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def save(path, state):
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=default_corpus(), help="the public corpus (texts config, real lines)")
    ap.add_argument("--out", default="training/runs/latin", help="checkpoint and log directory")
    ap.add_argument("--steps", type=int, default=60000, help="total optimiser steps of the schedule")
    ap.add_argument("--minutes", type=float, default=0, help="stop this run after so many minutes (0: no limit)")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="data loader processes (0: render in the training process)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--real-share", type=float, default=0.12, help="share of real training lines in a batch")
    ap.add_argument("--structured-share", type=float, default=0.12, help="share of form-like lines (amounts, dates, numbers)")
    ap.add_argument("--rare-share", type=float, default=0.0,
                    help="share of text lines given words with rare letters and signs (texts.rare_words)")
    ap.add_argument("--small", action="store_true", help="a tiny model and set, for the smoke test")
    ap.add_argument("--init", default="", help="start a new run from this exported model (ONNX) instead of from scratch")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(args.out, "checkpoint.pt")

    texts = textmod.Texts(args.corpus, max_per_source=200 if args.small else 20000)
    fonts = render.Fonts(args.corpus)
    real = render.RealLines(args.corpus, TRAIN_PAGES)
    net = modelmod.Recognizer(width=32, blocks=1) if args.small else modelmod.Recognizer()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sampler = render.Sampler(texts, fonts, real, args.real_share, args.structured_share, args.rare_share)
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt_path):
        st = torch.load(ckpt_path, map_location="cpu")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min trained)", flush=True)
    elif args.init:
        # Batch norm statistics from batches made as the training ones are
        # (sorted by width, little padding), so that train mode starts
        # where the exported model is.
        calib_stream = iter(Stream(sampler, args.batch, args.seed - 1))
        warmstart.from_onnx(net, args.init, [next(calib_stream)[0] for _ in range(8)])
        print(f"started from {args.init}", flush=True)
    params = sum(p.numel() for p in net.parameters())
    print(f"{params} parameters, {charset.NUM_CLASSES} classes, {len(real.items)} real training lines, "
          f"{texts.dropped} paragraphs dropped for holding a scored line", flush=True)

    # Re-seed by step, so a resumed run draws new samples.
    stream = Stream(sampler, args.batch, args.seed + step)
    # Loader processes leave SIGINT/SIGTERM to this one, which saves a
    # checkpoint before it stops them.
    extra = {"prefetch_factor": 4, "worker_init_fn": _quiet_worker} if args.workers else {}
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers, **extra)
    evals = eval_sets(args.corpus, texts, fonts, args.seed, n=10 if args.small else 150, small=args.small)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    log_path = os.path.join(args.out, "log.tsv")
    if not os.path.exists(log_path):
        with open(log_path, "w") as f:
            f.write("step\tminutes\tloss\tlr\t" + "\t".join(f"cer_{k}" for k in evals) + "\n")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    start = time.time()
    base = elapsed
    losses = []
    net.train()

    def checkpoint():
        save(ckpt_path, {"model": net.state_dict(), "opt": opt.state_dict(), "step": step,
                         "elapsed": base + time.time() - start, "small": args.small, "init": args.init})

    for x, y, tl, il in loader:
        if step >= args.steps or stop or (args.minutes and time.time() - start > args.minutes * 60):
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        logp = torch.log_softmax(net.logits(x), dim=1).permute(2, 0, 1)  # T N C
        loss = ctc(logp, y, il, tl)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            mins = (base + time.time() - start) / 60
            print(f"step {step} {mins:.1f} min loss {np.mean(losses[-50:]):.3f} lr {opt.param_groups[0]['lr']:.2e}", flush=True)
        if step % args.save_every == 0:
            checkpoint()
        if step % args.eval_every == 0:
            scores = {k: cer(recognize(net, imgs), refs) for k, (imgs, refs) in evals.items()}
            mins = (base + time.time() - start) / 60
            with open(log_path, "a") as f:
                f.write(f"{step}\t{mins:.1f}\t{np.mean(losses[-args.eval_every:]):.4f}\t{opt.param_groups[0]['lr']:.2e}\t"
                        + "\t".join(f"{v:.4f}" for v in scores.values()) + "\n")
            print("eval", step, {k: f"{v:.2%}" for k, v in scores.items()}, flush=True)
    checkpoint()
    print(f"stopped at step {step}", flush=True)
    return step


if __name__ == "__main__":
    steps = main()
    want = parser().parse_args().steps
    if steps < want:
        # Stopped by --minutes or a signal: a non-zero status stops make
        # before it exports an unfinished model; the next run resumes.
        print(f"schedule not finished ({steps} of {want} steps): run again to resume", file=sys.stderr)
        sys.exit(75)
