package ocr

import (
	"bytes"
	"context"
	"errors"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/ocr/eval"
)

func stageOptions(a testAssets, ini string) function.Options {
	os.Setenv(EnvLibrary, a.library) // the factories read the library path from the environment
	return function.Options{Dir: a.modelDir, Config: ini}
}

func corpusPage(tb testing.TB, a testAssets, rel string) []byte {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(a.corpus, rel))
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestMissingFiles(t *testing.T) {
	a := needAssets(t)
	empty := t.TempDir()
	_, err := NewOCR(context.Background(), stageOptions(a, ""))
	if err != nil {
		t.Fatalf("with the models: %v", err)
	}
	_, err = NewOCR(context.Background(), function.Options{Dir: empty})
	if err == nil || !strings.Contains(err.Error(), "ch_PP-OCRv4_det_infer.onnx") || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing model: %v", err)
	}
	// Models present, dictionary missing.
	for _, f := range []string{"ch_PP-OCRv4_det_infer.onnx", DefaultRecognizeModel} {
		if err := os.Symlink(filepath.Join(a.modelDir, f), filepath.Join(empty, f)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = NewOCR(context.Background(), function.Options{Dir: empty})
	if err == nil || !strings.Contains(err.Error(), DefaultDictionary) {
		t.Errorf("missing dictionary: %v", err)
	}
	// Dictionary present, language model missing.
	if err := os.Symlink(filepath.Join(a.modelDir, DefaultDictionary), filepath.Join(empty, DefaultDictionary)); err != nil {
		t.Fatal(err)
	}
	_, err = NewOCR(context.Background(), function.Options{Dir: empty})
	if err == nil || !strings.Contains(err.Error(), DefaultLanguageModel) || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing language model: %v", err)
	}
	if _, err = NewOCR(context.Background(), function.Options{Dir: empty, Config: "[recognize]\nlanguage_model = none\n"}); err != nil {
		t.Errorf("language_model = none needs no file: %v", err)
	}
	_, err = NewOCR(context.Background(), function.Options{Dir: a.modelDir, Config: "[runtime]\nlibrary = /nonexistent/libonnxruntime.so.1"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/libonnxruntime.so.1") || !strings.Contains(err.Error(), "make models") {
		t.Errorf("missing library: %v", err)
	}
}

func TestOCRStageBatch(t *testing.T) {
	a := needCorpus(t)
	fn, err := NewOCR(context.Background(), stageOptions(a, "[output]\nformats = page,alto,txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	good := corpusPage(t, a, "pages/pub_p005.png")
	tiny := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	blank := encodePNG(t, image.NewGray(image.Rect(0, 0, 300, 200)))
	out := fn.Process(context.Background(), []function.Page{
		{Name: "p005.png", Image: good},
		{Name: "truncated.png", Image: good[:len(good)/3]},
		{Name: "tiny.png", Image: tiny},
		{Name: "blank.png", Image: blank},
	})
	if len(out) != 4 {
		t.Fatalf("%d outputs", len(out))
	}
	if out[0].Err != nil || len(out[0].Files) != 3 || out[0].Files[0].Name != "p005_page.xml" || out[0].Files[2].Name != "p005.txt" {
		t.Fatalf("good page: %+v", out[0])
	}
	ref, _ := os.ReadFile(filepath.Join(a.corpus, "pages/pub_p005.txt"))
	if c := eval.Compare(string(ref), string(out[0].Files[2].Content)); c.CER() > 0.02 {
		t.Errorf("good page CER %.2f%%:\n%s", 100*c.CER(), out[0].Files[2].Content)
	}
	for _, i := range []int{1, 2} {
		if !errors.Is(out[i].Err, ErrBadImage) || !strings.Contains(out[i].Err.Error(), out[i].Err.Error()) {
			t.Errorf("page %d: err = %v, want ErrBadImage", i, out[i].Err)
		}
	}
	if out[3].Err != nil || !bytes.Contains(out[3].Files[0].Content, []byte("<Page")) || len(out[3].Files[2].Content) != 0 {
		t.Errorf("blank page: %v %s", out[3].Err, out[3].Files[0].Content)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i, o := range fn.Process(ctx, []function.Page{{Name: "a", Image: good}, {Name: "b", Image: good}}) {
		if !errors.Is(o.Err, context.Canceled) {
			t.Errorf("cancelled page %d: %v", i, o.Err)
		}
	}
}

func TestDetectThenRecognize(t *testing.T) {
	a := needCorpus(t)
	det, err := NewDetect(context.Background(), stageOptions(a, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	rec, err := NewRecognize(context.Background(), stageOptions(a, "[output]\nformats = page,txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	img := corpusPage(t, a, "pages/pub_p010.png")
	d := det.Process(context.Background(), []function.Page{{Name: "p010.png", Image: img}})
	if d[0].Err != nil || len(d[0].Files) != 1 || d[0].Files[0].Name != "p010_page.xml" {
		t.Fatalf("detect: %+v", d[0])
	}
	if bytes.Contains(d[0].Files[0].Content, []byte("<Unicode>")) {
		t.Error("detect output has text")
	}
	r := rec.Process(context.Background(), []function.Page{
		{Name: "p010.png", Image: img, Inputs: d[0].Files},
		{Name: "nopage.png", Image: img},
	})
	if r[0].Err != nil || len(r[0].Files) != 2 {
		t.Fatalf("recognize: %+v", r[0])
	}
	ref, _ := os.ReadFile(filepath.Join(a.corpus, "pages/pub_p010.txt"))
	if c := eval.Compare(string(ref), string(r[0].Files[1].Content)); c.CER() > 0.02 {
		t.Errorf("detect+recognize CER %.2f%% (two columns: reading order?):\n%s", 100*c.CER(), r[0].Files[1].Content)
	}
	if !errors.Is(r[1].Err, ErrNoPAGE) {
		t.Errorf("no PAGE input: %v", r[1].Err)
	}
}

func TestOtherRecognizerByConfig(t *testing.T) {
	a := needCorpus(t)
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(a.modelDir, "ch_PP-OCRv4_rec_infer.onnx"), filepath.Join(dir, "latin.onnx")); err != nil {
		t.Fatal(err)
	}
	dict, err := os.ReadFile(filepath.Join(a.modelDir, "ppocr_keys_v1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "latin.txt"), dict, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "short.txt"), []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := corpusPage(t, a, "lines/pub_l0001.png")
	for _, tc := range []struct{ dict, wantErr string }{{"latin.txt", ""}, {"short.txt", "dictionary"}} {
		cfg := "[recognize]\nmodel = latin.onnx\ndictionary = " + tc.dict + "\n[output]\nformats = txt\n"
		e, err := NewEngine(mustConfig(t, cfg, dir, a), Needs{Recognize: true}, nil)
		if tc.wantErr != "" {
			// A dictionary that does not fit the model fails at load.
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one about the %s", tc.dict, err, tc.wantErr)
			}
			if e != nil {
				e.Close()
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if h := e.Config().Recognize.Height; h != 48 {
			t.Errorf("height from the PP-OCRv4 model = %d, want 48", h)
		}
		lay, _, err := e.ReadLine(context.Background(), "l.png", lines)
		e.Close()
		if err != nil || !strings.Contains(lay.Text(), "trimestre") {
			t.Errorf("%s: %v %q", tc.dict, err, lay.Text())
		}
	}
}

func mustConfig(t *testing.T, ini, dir string, a testAssets) Config {
	t.Helper()
	c, err := ParseConfig(ini, dir, func(string) string { return a.library })
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAccuracy reads with the default models a synthetic page of each
// language (two of them two-column, some degraded), five lines of each
// language and a held-out real scan (one the recognizer never trained on, see
// training/README.md). The bounds come from `make bench-ocr`, which measures
// the default model at 0.04% CER on all synthetic pages, 0.03% on all lines and
// 2.7% on the held-out real pages: the bounds leave room for platform
// differences in the runtime's arithmetic while catching a real regression
// (a broken crop, order, dictionary or decoder costs far more).
func TestAccuracy(t *testing.T) {
	a := needCorpus(t)
	cfg := mustConfig(t, "", a.modelDir, a)
	e, err := NewEngine(cfg, Needs{Detect: true, Recognize: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	samples, err := eval.Load(a.corpus)
	if err != nil {
		t.Fatal(err)
	}
	pick := map[string]bool{"pub_p013": true, "pub_p017": true, "pub_p002": true, "pub_p009": true, "pub_p019": true, "vd_fiscfrie_0016": true}
	const (
		maxPages = 0.02
		maxLines = 0.02
		maxReal  = 0.08
	)
	var pages, lines, real eval.Counts
	perLang := map[string]int{}
	for _, s := range samples {
		switch s.Group {
		case "pages", "real-pages":
			if !pick[s.ID] {
				continue
			}
		case "lines":
			if perLang[s.Lang] >= 5 {
				continue
			}
			perLang[s.Lang]++
		default:
			continue
		}
		data := corpusPage(t, a, strings.TrimPrefix(s.Image, a.corpus+"/"))
		var lay *Layout
		if s.Line() {
			lay, _, err = e.ReadLine(context.Background(), s.ID, data)
		} else {
			lay, _, err = e.OCR(context.Background(), s.ID, data)
		}
		if err != nil {
			t.Fatalf("%s: %v", s.ID, err)
		}
		c := eval.Compare(s.Ref, eval.FoldLongS(lay.Text()))
		switch s.Group {
		case "lines":
			lines.Add(c)
		case "pages":
			pages.Add(c)
		default:
			real.Add(c)
		}
		t.Logf("%s (%s) CER %.2f%%", s.ID, s.Lang, 100*c.CER())
	}
	if pages.Chars == 0 || lines.Chars == 0 || real.Chars == 0 {
		t.Fatal("no samples read")
	}
	if pages.CER() > maxPages || lines.CER() > maxLines || real.CER() > maxReal {
		t.Errorf("CER pages %.2f%%, lines %.2f%%, real scan %.2f%%; want under %.0f%%, %.0f%% and %.0f%%",
			100*pages.CER(), 100*lines.CER(), 100*real.CER(), 100*maxPages, 100*maxLines, 100*maxReal)
	}
}

func TestCUDAFallsBackToCPU(t *testing.T) {
	a := needCorpus(t)
	var logs bytes.Buffer
	opts := stageOptions(a, "[runtime]\ndevice = cuda:0\n[output]\nformats = txt")
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	fn, err := NewRecognize(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fn.Close()
	if !strings.Contains(logs.String(), "running on CPU") {
		t.Skipf("the runtime has CUDA here; log: %s", logs.String())
	}
}

// TestLanguageModel reads the corpus lines with the default decoding (the
// beam search with pero-latin's language model) and greedily. Three lines
// hold errors of the kind it is there for: l read as I where the two are
// one glyph ("Iost"), a gap after a hyphen in a monospaced font ("elle-
// même") and a stray apostrophe ("constr'uction"); with it they read
// exactly, and over all lines it makes fewer errors, not more.
func TestLanguageModel(t *testing.T) {
	a := needCorpus(t)
	read := func(ini string) map[string]string {
		e, err := NewEngine(mustConfig(t, ini, a.modelDir, a), Needs{Recognize: true}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if (e.beam != nil) != (ini == "") {
			t.Fatalf("config %q: beam search %v", ini, e.beam != nil)
		}
		out := map[string]string{}
		samples, err := eval.Load(a.corpus)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			if s.Group != "lines" {
				continue
			}
			lay, _, err := e.ReadLine(context.Background(), s.ID, corpusPage(t, a, strings.TrimPrefix(s.Image, a.corpus+"/")))
			if err != nil {
				t.Fatalf("%s: %v", s.ID, err)
			}
			out[s.ID] = lay.Text()
		}
		return out
	}
	beam, greedy := read(""), read("[recognize]\nlanguage_model = none\n")
	samples, _ := eval.Load(a.corpus)
	var withLM, without eval.Counts
	for _, s := range samples {
		if s.Group != "lines" {
			continue
		}
		withLM.Add(eval.Compare(s.Ref, beam[s.ID]))
		without.Add(eval.Compare(s.Ref, greedy[s.ID]))
		switch s.ID {
		case "pub_l0010", "pub_l0032", "pub_l0125":
			if strings.TrimSpace(beam[s.ID]) != strings.TrimSpace(s.Ref) {
				t.Errorf("%s: read %q, want %q (greedy: %q)", s.ID, beam[s.ID], s.Ref, greedy[s.ID])
			}
		}
	}
	t.Logf("lines: %d errors with the language model, %d without", withLM.CharErrs, without.CharErrs)
	if withLM.CharErrs > without.CharErrs {
		t.Errorf("the language model adds errors: %d against %d without", withLM.CharErrs, without.CharErrs)
	}
}
