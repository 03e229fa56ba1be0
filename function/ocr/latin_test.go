package ocr

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// latinDir is where the repository keeps the trained recognizer (see
// training/MODEL_CARD.md); make models installs it into models/ocr.
func latinDir() string { return filepath.Join(repoRoot(), "training", "model") }

type latinSample struct {
	File    string    `json:"file"`
	Font    string    `json:"font"`
	Text    string    `json:"text"`
	Classes []int     `json:"classes"`
	Probs   []float64 `json:"probs"`
}

func latinSamples(t *testing.T) []latinSample {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(latinDir(), "testdata", "samples.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s []latinSample
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if len(s) == 0 {
		t.Fatal("no samples")
	}
	return s
}

func latinEngine(t *testing.T, a testAssets, ini string) (*Engine, error) {
	t.Helper()
	cfg, err := ParseConfig(ini, latinDir(), func(string) string { return a.library })
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(cfg, Needs{Recognize: true}, nil)
}

func loadLine(t testing.TB, path string) *raster {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := decodeImage(data, 0)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// readSample reads a sample line, the whole image as one line, as the
// engine reads a detected one.
func readSample(t *testing.T, e *Engine, s latinSample) (*raster, lineGeometry, *recLine) {
	t.Helper()
	img := loadLine(t, filepath.Join(latinDir(), "testdata", s.File))
	w, h := float64(img.w), float64(img.h)
	geo := newLineGeometry(quad{{0, 0}, {w, 0}, {w, h}, {0, h}})
	var tm Timing
	lines, err := e.recognize(context.Background(), img, []lineGeometry{geo}, &tm)
	if err != nil {
		t.Fatal(err)
	}
	return img, geo, lines[0]
}

// argmaxPath runs the recognizer on one line directly and returns the best
// class and its probability at each time step (the engine keeps only the
// decoded characters).
func argmaxPath(t *testing.T, e *Engine, img *raster, geo lineGeometry, l *recLine) ([]int, []float32) {
	t.Helper()
	in := make([]float32, 3*img.h*l.width)
	geo.sample(img, l.rw, img.h, l.width, img.h*l.width, in)
	out, shape, err := e.rec.run(in, []int64{1, 3, int64(img.h), int64(l.width)})
	if err != nil {
		t.Fatal(err)
	}
	T, C := int(shape[1]), int(shape[2])
	classes, probs := make([]int, T), make([]float32, T)
	for ts := range T {
		best, bp := 0, float32(-1)
		for c := range C {
			if p := out[ts*C+c]; p > bp {
				best, bp = c, p
			}
		}
		classes[ts], probs[ts] = best, bp
	}
	return classes, probs
}

// latinFloat is the exported model as torch computes it; the default,
// DefaultRecognizeModel, is its integer version (training/quantize.py).
const latinFloat = "pero-latin-rec.onnx"

// The exported model, run by ONNX Runtime through the engine's own
// pre-processing, picks the same class as torch at every time step with the
// same probability, and reads each fixed line exactly.
func TestLatinModelMatchesTorch(t *testing.T) {
	a := needAssets(t)
	e, err := latinEngine(t, a, "[recognize]\nmodel = "+latinFloat+"\n")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := e.Config().Recognize.Height; got != 32 {
		t.Fatalf("height from the model = %d, want 32", got)
	}
	for _, s := range latinSamples(t) {
		img, geo, l := readSample(t, e, s)
		if l.steps != len(s.Classes) {
			t.Fatalf("%s: %d time steps, torch had %d", s.File, l.steps, len(s.Classes))
		}
		classes, probs := argmaxPath(t, e, img, geo, l)
		for ts := range classes {
			if classes[ts] != s.Classes[ts] || math.Abs(float64(probs[ts])-s.Probs[ts]) > 1e-4 {
				t.Fatalf("%s step %d: onnx runtime class %d p=%.6f, torch class %d p=%.6f", s.File, ts, classes[ts], probs[ts], s.Classes[ts], s.Probs[ts])
			}
		}
		if l.text != s.Text {
			t.Errorf("%s (%s): read %q, want %q", s.File, s.Font, l.text, s.Text)
		}
	}
}

// The integer model, the default, reads each fixed line exactly too, and
// picks torch's class at nearly every time step.
func TestLatinInt8Model(t *testing.T) {
	a := needAssets(t)
	e, err := latinEngine(t, a, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := filepath.Base(e.Config().Recognize.Model); got != DefaultRecognizeModel {
		t.Fatalf("default model %s, want %s", got, DefaultRecognizeModel)
	}
	same, steps := 0, 0
	for _, s := range latinSamples(t) {
		img, geo, l := readSample(t, e, s)
		if l.text != s.Text {
			t.Errorf("%s (%s): read %q, want %q", s.File, s.Font, l.text, s.Text)
		}
		classes, _ := argmaxPath(t, e, img, geo, l)
		for i, c := range classes {
			steps++
			if i < len(s.Classes) && c == s.Classes[i] {
				same++
			}
		}
	}
	t.Logf("integer model: torch's class at %d of %d steps", same, steps)
	if float64(same) < 0.98*float64(steps) {
		t.Errorf("integer model picks torch's class at %d of %d steps, want 98%%", same, steps)
	}
}

// TestRecognizerOutputBuffer checks that the output length is worked out
// for pero-latin (4 pixels a step), and that reading into the pooled buffer
// and into the one ONNX Runtime allocates give the same lines.
func TestRecognizerOutputBuffer(t *testing.T) {
	a := needAssets(t)
	e, err := latinEngine(t, a, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.recStride != 4 {
		t.Fatalf("recStride = %d, want 4", e.recStride)
	}
	for _, s := range latinSamples(t) {
		e.recStride = 4
		_, _, pooled := readSample(t, e, s)
		e.recStride = 0
		_, _, allocated := readSample(t, e, s)
		if pooled.text != allocated.text || pooled.score != allocated.score || pooled.steps != allocated.steps {
			t.Errorf("%s: pooled output reads %q (%v, %d steps), allocated %q (%v, %d steps)", s.File,
				pooled.text, pooled.score, pooled.steps, allocated.text, allocated.score, allocated.steps)
		}
	}
}

func TestRecognizerDictionaryMismatch(t *testing.T) {
	a := needAssets(t)
	dir := t.TempDir()
	dict, err := os.ReadFile(filepath.Join(latinDir(), DefaultDictionary))
	if err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short.dict")
	if err := os.WriteFile(short, dict[:len(dict)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = latinEngine(t, a, "[recognize]\ndictionary = "+short+"\n")
	if err == nil || !strings.Contains(err.Error(), "does not belong to this model") {
		t.Fatalf("short dictionary: err = %v, want a class count mismatch at load", err)
	}
	_, err = latinEngine(t, a, "[recognize]\nheight = 48\n")
	if err == nil || !strings.Contains(err.Error(), "takes lines 32 pixels high") {
		t.Fatalf("height 48: err = %v, want the model's height in the error", err)
	}
}
