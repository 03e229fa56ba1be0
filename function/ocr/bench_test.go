package ocr

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// synthPage draws a w x h grayscale page with dark text-like bars in rows.
func synthPage(w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 250
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for y := h / 10; y+40 < h*9/10; y += 70 {
		for x := w / 10; x < w*9/10; {
			wordW := 40 + rng.IntN(120)
			for yy := y; yy < y+40; yy++ {
				for xx := x; xx < min(x+wordW, w); xx++ {
					if (xx+yy)%3 != 0 {
						img.SetGray(xx, yy, color.Gray{Y: 20})
					}
				}
			}
			x += wordW + 25
		}
	}
	return img
}

func encodePNG(tb testing.TB, img image.Image) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// BenchmarkDecodePNG decodes an A4 page at 300 dpi: a synthetic corpus
// page ("page": scanned-looking noise, half its rows Paeth-filtered), a
// colour one ("colour", 8-bit RGB) and a real scan ("scan": grey paper
// texture, literal-heavy deflate data) when the corpus is there, else a
// drawn page; "fast" is decodeImage, "image-png" the standard decoder and
// the conversion it would need.
func BenchmarkDecodePNG(b *testing.B) {
	inputs := []struct{ name, path string }{
		{"page", "pages/pub_p001.png"}, {"colour", "pages/pub_p012.png"}, {"scan", "real/pages/vd_bankgraf_0078.png"},
	}
	a, _ := findAssets()
	for _, in := range inputs {
		data, err := os.ReadFile(filepath.Join(a.corpus, in.path))
		if a.corpus == "" || err != nil {
			g := synthPage(2480, 3508)
			if in.name != "colour" {
				data = encodePNG(b, g)
			} else {
				rgb := image.NewNRGBA(g.Bounds())
				draw.Draw(rgb, rgb.Bounds(), g, image.Point{}, draw.Src)
				data = encodePNG(b, rgb)
			}
		}
		b.Run("fast/"+in.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := decodeImage(data, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("image-png/"+in.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				img, err := png.Decode(bytes.NewReader(data))
				if err != nil {
					b.Fatal(err)
				}
				toRaster(img)
			}
		})
	}
}

func BenchmarkDetInput(b *testing.B) {
	r := toRaster(synthPage(2480, 3508))
	dw, dh := detSize(r.w, r.h, DefaultConfig("").Detect)
	dst := make([]float32, 3*dw*dh)
	for b.Loop() {
		detInput(r, dw, dh, dst)
	}
}

// BenchmarkInkWindow finds the inked window of an A4 page resized for the
// detector (the corpus page when it is there, else a drawn one).
func BenchmarkInkWindow(b *testing.B) {
	r := toRaster(synthPage(2480, 3508))
	if a, _ := findAssets(); a.corpus != "" {
		if data, err := os.ReadFile(filepath.Join(a.corpus, "pages/pub_p001.png")); err == nil {
			if r, err = decodeImage(data, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	dw, dh := detSize(r.w, r.h, DefaultConfig("").Detect)
	levels := make([]float32, r.c*dw*dh)
	detResize(r, dw, dh, levels)
	for b.Loop() {
		inkWindow(levels, r.c, dw, dh)
	}
}

// synthProb is a probability map with n text-line blobs.
func synthProb(w, h, n int) []float32 {
	p := make([]float32, w*h)
	for i := range n {
		y0 := 20 + i*(h-40)/n
		for y := y0; y < y0+(h-40)/n/2 && y < h; y++ {
			for x := w / 10; x < w*9/10; x++ {
				p[y*w+x] = 0.9
			}
		}
	}
	return p
}

func BenchmarkDBPostprocess(b *testing.B) {
	const w, h = 672, 960
	prob := synthProb(w, h, 40)
	cfg := DefaultConfig("").Detect
	for b.Loop() {
		if len(dbBoxes(prob, w, h, mapWindow{dw: w, dh: h}, 2480, 3508, cfg)) != 40 {
			b.Fatal("wrong box count")
		}
	}
}

// BenchmarkLineSample crops a 2000 x 80 line to the recognizer's height:
// an upright box, a skewed parallelogram and a box whose whole-pixel
// corners make its map a (slight) perspective one, as most detected boxes.
func BenchmarkLineSample(b *testing.B) {
	r := toRaster(synthPage(2480, 3508))
	for name, q := range map[string]quad{
		"upright":     {{200, 300}, {2200, 300}, {2200, 380}, {200, 380}},
		"skewed":      {{200, 300}, {2200, 310}, {2200, 390}, {200, 380}},
		"perspective": {{200, 300}, {2200, 306}, {2199, 384}, {200, 379}},
	} {
		g := newLineGeometry(q)
		rw := g.scaledWidth(48)
		dst := make([]float32, 3*48*rw)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				g.sample(r, rw, 48, rw, 48*rw, dst)
			}
		})
	}
}

func BenchmarkCTCDecode(b *testing.B) {
	const T, C = 160, 6625
	rng := rand.New(rand.NewPCG(3, 4))
	probs := make([]float32, T*C)
	for i := range probs {
		probs[i] = rng.Float32() * 0.01
	}
	for t := range T {
		probs[t*C+rng.IntN(C)] = 0.9
	}
	dict := make([]string, C-1)
	for i := range dict {
		dict[i] = "x"
	}
	for b.Loop() {
		ctcText(ctcGreedy(probs, T, C), dict)
	}
}

func BenchmarkReadingOrder(b *testing.B) {
	var quads []quad
	for col := range 2 {
		for i := range 40 {
			x0, y0 := 100+float64(col)*1200, 100+float64(i)*70
			quads = append(quads, quad{{x0, y0}, {x0 + 1000, y0}, {x0 + 1000, y0 + 50}, {x0, y0 + 50}})
		}
	}
	for b.Loop() {
		readingOrder(quads)
	}
}

// BenchmarkPage runs a whole corpus page through the engine on one worker,
// reporting where the time goes (needs the models and the corpus).
func BenchmarkPage(b *testing.B) {
	a := needCorpus(b)
	for _, spec := range []string{"batch_size = 1", "batch_size = 4", "batch_size = 8"} {
		cfg, err := testConfig(a, "[runtime]\nworkers = 1\n[recognize]\n"+spec)
		if err != nil {
			b.Fatal(err)
		}
		e, err := NewEngine(cfg, Needs{Detect: true, Recognize: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		page := os.Getenv("BENCH_PAGE")
		if page == "" {
			page = "pages/pub_p013.png"
		}
		data, err := os.ReadFile(filepath.Join(a.corpus, page))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(spec, func(b *testing.B) {
			var total Timing
			for b.Loop() {
				_, t, err := e.OCR(context.Background(), "p", data)
				if err != nil {
					b.Fatal(err)
				}
				total.Decode += t.Decode
				total.Detect += t.Detect
				total.DetectModel += t.DetectModel
				total.Recognize += t.Recognize
				total.RecognizeModel += t.RecognizeModel
			}
			n := float64(b.N)
			b.ReportMetric(total.Decode.Seconds()*1000/n, "decode-ms")
			b.ReportMetric(total.DetectModel.Seconds()*1000/n, "det-model-ms")
			b.ReportMetric((total.Detect-total.DetectModel).Seconds()*1000/n, "det-other-ms")
			b.ReportMetric(total.RecognizeModel.Seconds()*1000/n, "rec-model-ms")
			b.ReportMetric((total.Recognize-total.RecognizeModel).Seconds()*1000/n, "rec-other-ms")
		})
		e.Close()
	}
}

var _ = fmt.Sprint

// lineEngine loads the default recognizer on one worker, with the corpus
// (needs the models and the corpus).
func lineEngine(b *testing.B) (testAssets, *Engine) {
	a := needCorpus(b)
	cfg, err := testConfig(a, "[runtime]\nworkers = 1\n")
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(cfg, Needs{Recognize: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return a, e
}

// BenchmarkReadLine reads corpus line images (one line each) on one
// worker, as `pero ocr --lines` does, reporting per line where the time
// goes (needs the models and the corpus).
func BenchmarkReadLine(b *testing.B) {
	a, e := lineEngine(b)
	var lines [][]byte
	for i := 1; i <= 50; i++ {
		data, err := os.ReadFile(filepath.Join(a.corpus, "lines", fmt.Sprintf("pub_l%04d.png", i)))
		if err != nil {
			b.Fatal(err)
		}
		lines = append(lines, data)
	}
	var total Timing
	n := 0
	for b.Loop() {
		data := lines[n%len(lines)]
		n++
		_, t, err := e.ReadLine(context.Background(), "l", data)
		if err != nil {
			b.Fatal(err)
		}
		total.Add(t)
	}
	per := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(n) }
	b.ReportMetric(per(total.Decode), "decode-ms")
	b.ReportMetric(per(total.RecognizeModel), "rec-model-ms")
	b.ReportMetric(per(total.Recognize-total.RecognizeModel), "rec-other-ms")
}

// BenchmarkCTCLine decodes the recognizer's output for 50 corpus lines:
// greedily, and as the engine does (the greedy pass, the beam search with
// the language model, and the alignment where the two read differently)
// (needs the models and the corpus).
func BenchmarkCTCLine(b *testing.B) {
	a, e := lineEngine(b)
	outs := corpusLineOutputs(b, a, e, 50)
	b.Run("greedy", func(b *testing.B) {
		for b.Loop() {
			for _, o := range outs {
				ctcGreedy(o.probs, o.T, o.C)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(outs)), "µs/line")
	})
	b.Run("beam", func(b *testing.B) {
		for b.Loop() {
			for _, o := range outs {
				e.decodeCTC(o.probs, o.T, o.C)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(outs)), "µs/line")
	})
}

// recOutput is the recognizer's output for one line: T steps of C classes.
type recOutput struct {
	probs []float32
	T, C  int
}

// corpusLineOutputs runs e's recognizer over the first n corpus lines.
func corpusLineOutputs(tb testing.TB, a testAssets, e *Engine, n int) []recOutput {
	tb.Helper()
	var outs []recOutput
	for i := 1; i <= n; i++ {
		img := loadLine(tb, filepath.Join(a.corpus, "lines", fmt.Sprintf("pub_l%04d.png", i)))
		q, _ := inkBox(img, 0.25)
		g := newLineGeometry(q)
		h := e.cfg.Recognize.Height
		w := (g.scaledWidth(h) + 7) &^ 7
		in := make([]float32, 3*h*w)
		g.sample(img, g.scaledWidth(h), h, w, h*w, in)
		probs, shape, err := e.rec.run(in, []int64{1, 3, int64(h), int64(w)})
		if err != nil {
			tb.Fatal(err)
		}
		outs = append(outs, recOutput{probs, int(shape[1]), int(shape[2])})
	}
	return outs
}

// BenchmarkLoadCharLM loads pero-latin's language model, as every runner
// start does (needs the models).
func BenchmarkLoadCharLM(b *testing.B) {
	a := needAssets(b)
	for b.Loop() {
		if _, err := loadCharLM(filepath.Join(a.modelDir, DefaultLanguageModel), 0.25); err != nil {
			b.Fatal(err)
		}
	}
}
