"""Smoke test of the training code: a few steps of a tiny model on the
corpus texts and fonts, a resume, and an export whose class count matches
the dictionary. Nothing is downloaded.

  /usr/bin/python3 -m unittest discover -s training
"""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import charset  # noqa: E402
import train  # noqa: E402


class SmokeTest(unittest.TestCase):
    def setUp(self):
        self.corpus = train.default_corpus()
        if not os.path.exists(os.path.join(self.corpus, "GENERATION", "config.json")):
            if os.environ.get("CI") == "true":
                self.fail(f"corpus missing at {self.corpus}")
            self.skipTest("corpus missing (set PERO_CORPUS)")

    def test_language_model(self):
        """Kneser-Ney on a tiny text: every context's probabilities sum to
        one, and the file has the header and n-grams lm.go reads."""
        import gzip
        import math
        import lm
        paras = [" abab abba ", " baab ab ", " ſab "]
        paras = [p.replace("ſ", "s") for p in paras]
        model, _ = lm.kneser_ney(lm.count(paras, 3), 3, min_count=1)
        vocab = sorted({c for p in paras for c in p})

        def prob(ctx, c):
            bo = 0.0
            for k in range(len(ctx), -1, -1):
                h = ctx[len(ctx) - k:]
                if h + c in model:
                    return math.exp(bo + model[h + c][0])
                if h in model:
                    bo += model[h][1]
            self.fail(f"{c!r} unseen")

        for ctx in ["", "a", "b", " ", "ab", "ba", "bb", " a"]:
            self.assertAlmostEqual(sum(prob(ctx, c) for c in vocab), 1.0, places=6, msg=ctx)
        self.assertGreater(prob("a", "b"), prob("a", "a"))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.lm.gz")
            lm.write(path, model, 3)
            with gzip.open(path, "rt", encoding="utf-8") as f:
                lines = f.read().splitlines()
            self.assertEqual(lines[:2], ["pero-charlm 1", "order 3"])
            self.assertEqual(len(lines) - 2, len(model))
            lp, bo, g = lines[2].split("\t")
            self.assertEqual(len(g), 1)
            with open(path, "rb") as f:
                first = f.read()
            lm.write(path, model, 3)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), first)

    def test_charset(self):
        self.assertEqual(charset.NUM_CLASSES, len(charset.dictionary_text().splitlines()) + 2)
        self.assertEqual(charset.normalize("Wu\u0364rdig  ge\u2e17 Pﬂicht"), "Würdig ge- Pflicht")
        self.assertEqual(charset.fold("Meiſter"), "Meister")
        enc = charset.encode("Größe „x“ ſ")
        self.assertIsNotNone(enc)
        self.assertEqual(charset.decode([0] + enc + [0]), "Größe „x“ ſ")
        self.assertIsNone(charset.encode("中"))

    def test_train_resume_export(self):
        import export
        import onnx
        with tempfile.TemporaryDirectory() as d:
            run = os.path.join(d, "run")
            args = ["--corpus", self.corpus, "--out", run, "--small", "--batch", "4", "--workers", "0",
                    "--eval-every", "2", "--save-every", "2"]
            self.assertEqual(train.main(args + ["--steps", "2"]), 2)
            with open(os.path.join(run, "log.tsv")) as f:
                rows = f.read().splitlines()
            self.assertEqual(rows[0].split("\t")[:2], ["step", "minutes"])
            self.assertEqual(len(rows), 2)
            # A second run resumes from the checkpoint.
            self.assertEqual(train.main(args + ["--steps", "3"]), 3)
            out = os.path.join(d, "model")
            export.main(["--checkpoint", os.path.join(run, "checkpoint.pt"), "--out", out, "--corpus", self.corpus])
            m = onnx.load(os.path.join(out, "pero-latin-rec.onnx"))
            dims = m.graph.output[0].type.tensor_type.shape.dim
            with open(os.path.join(out, "pero-latin.dict"), encoding="utf-8") as f:
                dict_lines = f.read().splitlines()
            self.assertEqual(dims[2].dim_value, len(dict_lines) + 2)  # blank and space
            self.assertEqual(m.graph.input[0].type.tensor_type.shape.dim[2].dim_value, 32)
            self.assertTrue(os.path.exists(os.path.join(out, "testdata", "samples.json")))

            # The exported model loads back for further training: in eval
            # mode the rebuilt network computes what the checkpoint did.
            import torch
            import model as modelmod
            import warmstart
            onnx_path = os.path.join(out, "pero-latin-rec.onnx")
            ref, _ = export.load(os.path.join(run, "checkpoint.pt"))
            x = torch.rand(3, 3, 32, 96) * 2 - 1
            net = warmstart.from_onnx(modelmod.Recognizer(width=32, blocks=1), onnx_path, x)
            net.eval()
            with torch.no_grad():
                self.assertLess((net(x) - ref(x)).abs().max().item(), 1e-5)
            with self.assertRaises(ValueError):
                warmstart.from_onnx(modelmod.Recognizer(width=32, blocks=2), onnx_path, x)
            # Its integer version: every convolution's weights in int8.
            import numpy as np
            import quantize
            from PIL import Image
            rng = np.random.default_rng(0)
            lines = [(Image.fromarray(rng.integers(0, 256, (32, 64 + 8 * i), dtype=np.uint8)), "a") for i in range(4)]
            int8_path = os.path.join(out, "int8.onnx")
            quantize.quantize(onnx_path, int8_path, quantize.activation_samples(net, lines, 0.999))
            q = onnx.load(int8_path)
            convs = [n for n in q.graph.node if n.op_type == "Conv"]
            int8 = {i.name for i in q.graph.initializer if i.data_type == onnx.TensorProto.INT8}
            self.assertEqual(len(convs), len(warmstart.convolutions(net)))
            self.assertTrue(all(any(n.input[1].startswith(w.rsplit("/", 1)[0]) for w in int8) for n in convs))
            ft = os.path.join(d, "finetune")
            self.assertEqual(train.main(["--corpus", self.corpus, "--out", ft, "--small", "--batch", "4", "--workers", "0",
                                         "--eval-every", "2", "--save-every", "2", "--steps", "2", "--init", onnx_path]), 2)

    def test_structured_and_typographic_text(self):
        import random
        import texts
        rng = random.Random(5)
        for _ in range(300):
            line = texts.structured_line(rng)
            self.assertTrue(0 < len(line) <= 90, line)
            self.assertIsNotNone(charset.encode(line), line)
        de = [texts.typographic('He said "go - now".', "de", random.Random(i)) for i in range(40)]
        self.assertIn("He said „go – now“.", de)
        fr = [texts.typographic('Il dit "non" - puis partit.', "fr", random.Random(i)) for i in range(40)]
        self.assertIn("Il dit « non » – puis partit.", fr)
        self.assertTrue(all(charset.encode(t) for t in de + fr))

    def test_rare_words(self):
        """Every listed word can be encoded, and substituted lines carry
        the letters the sources lack, capitals included."""
        import random
        import texts
        for w in texts._RARE_ANY + [w for ws in texts._RARE_WORDS.values() for w in ws]:
            self.assertIsNotNone(charset.encode(w), w)
        rng = random.Random(3)
        base = "le chat dort sur le tapis rouge"
        lines = [texts.rare_words(base, "fr", rng) for _ in range(400)]
        self.assertTrue(all(charset.encode(t) for t in lines))
        self.assertTrue(all(t != base and len(t.split(" ")) >= 7 for t in lines))
        seen = set("".join(lines))
        for c in "ïëÿÏËÉÈ/²":
            self.assertIn(c, seen)
        cs = "".join(texts.rare_words(base, "cs", rng) for _ in range(400))
        for c in "ťďňůěŤĎŇŮĚ":
            self.assertIn(c, cs)


if __name__ == "__main__":
    unittest.main()
