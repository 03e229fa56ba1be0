"""Synthetic text lines that look like what the detector crops from a page:
the line's ink with 10-40% of its height above and below, neighbouring
lines reaching in, small rotations, and the wear of print and scanning
(ink weight, italic shear, paper texture, blur, noise, low resolution,
JPEG)."""

import io
import json
import os
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

import charset
import texts as textmod

HEIGHT = 32


class Fonts:
    """The font families the corpus config lists, weighted by kind."""

    def __init__(self, corpus):
        with open(os.path.join(corpus, "GENERATION", "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        self.fonts = []
        missing = []
        for fnt in cfg["fonts"]:
            for style in ("regular", "bold"):
                if not os.path.exists(fnt[style]):
                    missing.append(fnt[style])
            self.fonts.append((fnt["kind"], fnt["regular"], fnt["bold"]))
        if missing:
            raise FileNotFoundError("fonts missing (see training/README.md): " + ", ".join(missing))
        self.weights = cfg["font_kind_weights"]
        self._cache = {}

    def pick(self, rng):
        kinds = list(self.weights)
        kind = rng.choices(kinds, [self.weights[k] for k in kinds])[0]
        fonts = [f for f in self.fonts if f[0] == kind]
        return rng.choice(fonts)

    def get(self, path, size):
        key = (path, size)
        f = self._cache.get(key)
        if f is None:
            if len(self._cache) > 400:
                self._cache.clear()
            f = self._cache[key] = ImageFont.truetype(path, size)
        return f


def to_height(img, height=HEIGHT):
    """Scale a grayscale line to the model height, keeping its aspect."""
    w, h = img.size
    nw = max(8, int(round(w * height / h)))
    return img.resize((nw, height), Image.BILINEAR)


def _paper(rng, w, h, level):
    """Background with low-frequency unevenness."""
    small = np.random.default_rng(rng.randrange(1 << 30)).normal(0, 1, (max(2, h // 24), max(2, w // 24)))
    tex = np.asarray(Image.fromarray(small.astype(np.float32), "F").resize((w, h), Image.BILINEAR))
    return level + tex * rng.uniform(0, 8)


def degrade(img, rng, strong=False):
    """Blur, resolution loss, noise and JPEG on a grayscale line."""
    w, h = img.size
    if rng.random() < 0.3:
        f = rng.uniform(0.45, 0.9)
        img = img.resize((max(4, int(w * f)), max(4, int(h * f))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2) * h / 48))
    a = np.asarray(img, dtype=np.float32)
    if rng.random() < (0.6 if strong else 0.4):
        a = a + np.random.default_rng(rng.randrange(1 << 30)).normal(0, rng.uniform(2, 14), a.shape)
    if rng.random() < 0.3:
        # contrast: squeeze towards the mean
        m = a.mean()
        a = m + (a - m) * rng.uniform(0.45, 1.0)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if rng.random() < 0.3:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=rng.randint(25, 80))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("L")
    return img


def render(text, fonts, rng, neighbours=None):
    """One synthetic line image (grayscale, any height) for text."""
    kind, regular, bold = fonts.pick(rng)
    path = bold if rng.random() < 0.2 else regular
    size = rng.randint(18, 64)
    font = fonts.get(path, size)
    spacing = rng.uniform(1.1, 1.9) * size
    rows = [text]
    if neighbours and rng.random() < 0.5:
        rows = [neighbours[0], text, neighbours[1]]
    widths = [font.getlength(r) for r in rows]
    margin = size * 2
    W = int(max(widths) + 2 * margin)
    H = int(spacing * (len(rows) - 1) + size * 2 + 2 * margin)
    mask = Image.new("L", (W, H), 0)
    d = ImageDraw.Draw(mask)
    mid = len(rows) // 2
    for i, r in enumerate(rows):
        x = margin + (rng.uniform(-0.3, 0.3) * size if i != mid else 0)
        d.text((x, margin + i * spacing), r, font=font, fill=255)
    # The middle line's ink box, before any warp.
    mline = Image.new("L", (W, H), 0)
    ImageDraw.Draw(mline).text((margin, margin + mid * spacing), text, font=font, fill=255)
    r = rng.random()
    if r < 0.12 and size >= 24:
        mask = mask.filter(ImageFilter.MaxFilter(3))
        mline = mline.filter(ImageFilter.MaxFilter(3))
    elif r < 0.2 and size >= 36:
        mask = mask.filter(ImageFilter.MinFilter(3))
        mline = mline.filter(ImageFilter.MinFilter(3))
    warps = []
    if rng.random() < 0.12:
        sh = rng.uniform(0.12, 0.25)
        warps.append(lambda im: im.transform(im.size, Image.AFFINE, (1, sh, -sh * H / 2, 0, 1, 0), Image.BILINEAR))
    if rng.random() < 0.5:
        ang = rng.uniform(-1.2, 1.2)
        warps.append(lambda im: im.rotate(ang, Image.BILINEAR, fillcolor=0))
    for wfn in warps:
        mask, mline = wfn(mask), wfn(mline)
    box = mline.point(lambda v: 255 if v > 80 else 0).getbbox()
    if box is None:
        return None
    x0, y0, x1, y1 = box
    ih = y1 - y0
    top, bottom = rng.uniform(0.08, 0.42) * ih, rng.uniform(0.08, 0.42) * ih
    left, right = rng.uniform(0.03, 0.7) * ih, rng.uniform(0.03, 0.7) * ih
    crop = (max(0, int(x0 - left)), max(0, int(y0 - top)), min(W, int(x1 + right)), min(H, int(y1 + bottom)))
    m = np.asarray(mask.crop(crop), dtype=np.float32) / 255.0
    h, w = m.shape
    bg = _paper(rng, w, h, rng.uniform(165, 255))
    ink = rng.uniform(0, 90)
    a = bg * (1 - m) + ink * m
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    return degrade(img, rng)


class RealLines:
    """Line crops of the real scans whose page is in pages."""

    def __init__(self, corpus, pages):
        d = os.path.join(corpus, "real", "lines")
        self.items = []
        for name in sorted(os.listdir(d)):
            if not name.endswith(".png"):
                continue
            stem = name[:-4]
            page = stem.rsplit("_l", 1)[0]
            if page not in pages:
                continue
            with open(os.path.join(d, stem + ".gt.txt"), encoding="utf-8") as f:
                text = charset.normalize(f.read())
            if not text or charset.encode(text) is None:
                continue
            img = Image.open(os.path.join(d, name)).convert("L")
            self.items.append((img, text, page))

    def augmented(self, rng, i=None):
        img, text, _ = self.items[rng.randrange(len(self.items)) if i is None else i]
        w, h = img.size
        # Move each edge: the detector's boxes are not the transcriber's.
        l, r = rng.uniform(-0.05, 0.3) * h, rng.uniform(-0.05, 0.3) * h
        t, b = rng.uniform(-0.12, 0.2) * h, rng.uniform(-0.12, 0.2) * h
        bgv = int(np.percentile(np.asarray(img), 90))
        canvas = Image.new("L", (int(w + 2 * h), int(h * 2)), bgv)
        canvas.paste(img, (h, h // 2))
        box = (int(h - l), int(h // 2 - t), int(h + w + r), int(h // 2 + h + b))
        out = canvas.crop(box)
        if rng.random() < 0.4:
            out = out.rotate(rng.uniform(-1, 1), Image.BILINEAR, fillcolor=bgv)
        return degrade(out, rng), text


class Sampler:
    """Training samples: mostly synthetic lines in the four languages, some
    set with typographic dashes and quotes, some with words of rare letters
    and signs (rare_share), some with the long s, some of
    random characters, some of forms and page furniture (amounts, dates,
    numbers), and real training lines."""

    def __init__(self, texts, fonts, real=None, real_share=0.15, structured_share=0.12, rare_share=0.0):
        self.texts, self.fonts, self.real = texts, fonts, real
        self.structured_share = structured_share
        self.rare_share = rare_share
        self.real_share = real_share if real and real.items else 0

    def sample(self, rng):
        while True:
            if rng.random() < self.real_share:
                img, text = self.real.augmented(rng)
            else:
                kind = rng.random()
                if kind < 0.08:
                    text = textmod.random_line(rng)
                elif kind < 0.08 + self.structured_share:
                    text = textmod.structured_line(rng)
                else:
                    lang = rng.choice(self.texts.langs)
                    text = self.texts.line(rng, lang)
                    if rng.random() < 0.4:
                        text = textmod.typographic(text, lang, rng)
                    if self.rare_share and rng.random() < self.rare_share:
                        text = textmod.rare_words(text, lang, rng)
                    if lang in ("de", "fr") and rng.random() < 0.15:
                        text = textmod.long_s(text, rng)
                nb = (self.texts.line(rng), self.texts.line(rng))
                img = render(text, self.fonts, rng, nb)
                if img is None:
                    continue
            return to_height(img), text


def to_array(img):
    """Normalised pixels as the Go engine feeds them: 2*v/255 - 1."""
    return np.asarray(img, dtype=np.float32) * (2.0 / 255.0) - 1.0
