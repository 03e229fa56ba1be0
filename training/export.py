"""Export a trained checkpoint to ONNX, with its dictionary and the sample
lines the Go tests read back.

  /usr/bin/python3 training/export.py --checkpoint training/runs/latin/checkpoint.pt --out training/model

Writes <out>/pero-latin-rec.onnx (opset 13; input x: N x 3 x 32 x W, output
probs: N x W/4 x classes), <out>/pero-latin.dict (one character per line;
the space is appended by the engine, use_space_char = yes) and
<out>/testdata/: clean rendered lines (PNG), their text and, per line, the
class torch picks at each time step and its probability, which the Go
tests compare with what ONNX Runtime computes.
"""

import argparse
import json
import os
import random
import sys

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import charset  # noqa: E402
import model as modelmod  # noqa: E402
import render  # noqa: E402
from train import batch_tensors, default_corpus  # noqa: E402

SAMPLES = [
    ("DejaVu Serif", "The quick brown fox jumps over the lazy dog."),
    ("Liberation Sans", "Příliš žluťoučký kůň úpěl ďábelské ódy."),
    ("Noto Serif", "Größe, Übermut und Fleiß: „Zwölf Boxkämpfer“"),
    ("FreeSans", "Où est l'œuvre? À côté du garçon, déjà!"),
    ("DejaVu Sans Mono", "Invoice 1234-567/89, total €42.50 (3 × 7)"),
    ("Noto Serif", "Des ſiegreichen Meiſters Wort"),
]


def load(checkpoint):
    st = torch.load(checkpoint, map_location="cpu")
    net = modelmod.Recognizer(width=32, blocks=1) if st.get("small") else modelmod.Recognizer()
    net.load_state_dict(st["model"])
    net.eval()
    return net, st


def clean_line(text, font_path, size=40):
    """A clean rendering: black on white, the crop padded as the detector pads."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype(font_path, size)
    w = int(font.getlength(text)) + 2 * size
    im = Image.new("L", (w, size * 3), 255)
    ImageDraw.Draw(im).text((size, size), text, font=font, fill=0)
    x0, y0, x1, y1 = Image.eval(im, lambda v: 255 - v).getbbox()
    pad = (y1 - y0) * 0.25
    im = im.crop((int(x0 - pad), int(y0 - pad), int(x1 + pad), int(y1 + pad)))
    return render.to_height(im)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="training/runs/latin/checkpoint.pt")
    ap.add_argument("--out", default="training/model")
    ap.add_argument("--corpus", default=default_corpus())
    args = ap.parse_args(argv)

    net, st = load(args.checkpoint)
    os.makedirs(os.path.join(args.out, "testdata"), exist_ok=True)
    onnx_path = os.path.join(args.out, "pero-latin-rec.onnx")
    dummy = torch.zeros(1, 3, render.HEIGHT, 256)
    torch.onnx.export(net, dummy, onnx_path, opset_version=13, input_names=["x"], output_names=["probs"],
                      dynamic_axes={"x": {0: "n", 3: "w"}, "probs": {0: "n", 1: "t"}}, do_constant_folding=True)
    m = onnx.load(onnx_path)
    onnx.checker.check_model(m)
    with open(os.path.join(args.out, "pero-latin.dict"), "w", encoding="utf-8") as f:
        f.write(charset.dictionary_text())

    fonts = {}
    with open(os.path.join(args.corpus, "GENERATION", "config.json"), encoding="utf-8") as f:
        for fnt in json.load(f)["fonts"]:
            fonts[fnt["name"]] = fnt["regular"]
    samples = []
    for i, (name, text) in enumerate(SAMPLES):
        img = clean_line(text, fonts[name])
        x, _, _, _ = batch_tensors([(img, text)])
        # The Go engine pads lines to a multiple of 8 pixels; so does batch_tensors.
        with torch.no_grad():
            p = net(x)[0]
        top = p.max(dim=1)
        got = charset.decode(top.indices.tolist())
        file = f"line{i + 1}.png"
        img.save(os.path.join(args.out, "testdata", file))
        samples.append({"file": file, "font": name, "text": text, "torch_text": got,
                        "classes": top.indices.tolist(), "probs": [round(v, 6) for v in top.values.tolist()]})
        print(f"{'ok ' if got == text else 'MISS'} {name}: {got!r}")
    with open(os.path.join(args.out, "testdata", "samples.json"), "w", encoding="utf-8") as f:
        json.dump(samples, f, ensure_ascii=False, indent=1)
    size = os.path.getsize(onnx_path)
    print(f"{onnx_path}: {size / 1e6:.1f} MB, step {st['step']}, {st['elapsed'] / 60:.0f} min of training")


if __name__ == "__main__":
    main()
