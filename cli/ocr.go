package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/ocr"
)

func ocrCommand() *Command {
	return &Command{
		Name:    "ocr",
		Summary: "OCR page images locally, in one process, with no services",
		Run:     runOCR,
	}
}

const ocrHelp = `Run the OCR function on local images: text lines are detected, read, and written as
PAGE XML (<name>_page.xml), ALTO (<name>.alto.xml) and/or plain text (<name>.txt).
Pages run in parallel on every core. A page that cannot be read is reported and the run
goes on; the exit status is 1 when any page failed.

Directories are searched recursively for .png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp and
.gif files; results keep their path below the directory.

Models: --models DIR holds the model files; paths in --config are relative to it (default:
$PERO_MODELS_DIR/ocr, else ./models/ocr, else models/ocr of the checkout holding this
binary, as put there by ` + "`make models`" + `). Lines are read by pero-latin, the project's own
Latin-script recognizer, in its 8-bit version (pero-latin-rec-int8.onnx), its output decoded
by a beam search with its character language model (pero-latin.lm.gz; [recognize]
language_model = none decodes greedily); a config with [recognize] model =
pero-latin-rec.onnx selects its float original, and model = ch_PP-OCRv4_rec_infer.onnx with
dictionary = ppocr_keys_v1.txt PP-OCRv4's. The detector runs on
the inked part of each page ([detect] crop_margins). The ONNX Runtime library comes from
--ort-lib, $PERO_ORT_LIB, the config's [runtime] library, models/onnxruntime/ or the system
library path, in that order. --config takes a stage config.ini (see function/ocr).

Examples:
  pero ocr --out results scans/
  pero ocr --format page,alto,txt --workers 4 page1.png page2.tif
  pero ocr --lines --format txt line-crops/`

var ocrImageExts = []string{".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}

func runOCR(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "ocr", "ocr [--config FILE] [--out DIR] [--format page,alto,txt] FILE|DIR...", ocrHelp)
	configPath := fs.String("config", "", "stage config.ini (default: built-in defaults)")
	outDir := fs.String("out", ".", "directory for the results")
	formats := fs.StringSlice("format", nil, "outputs: page, alto, txt (default: the config's [output] formats, else page)")
	modelsDir := fs.String("models", "", "directory of the model files named in the config")
	ortLib := fs.String("ort-lib", "", "ONNX Runtime library (env "+ocr.EnvLibrary+")")
	workers := fs.Int("workers", 0, "model runs at once, pages in parallel (default: number of cores)")
	threads := fs.Int("threads", 0, "intra-op threads per model run (default: the config's, else 1)")
	lines := fs.Bool("lines", false, "each image is a single text line (no detection)")
	detectOnly := fs.Bool("detect-only", false, "only detect lines (PAGE XML without text)")
	stats := fs.Bool("stats", false, "print where the time went: decoding, detection, recognition (each with its part inside the models), writing the outputs")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("no files given")
	}
	if *workers < 0 || *threads < 0 {
		return usageErr("--workers and --threads must not be negative")
	}
	if *lines && *detectOnly {
		return usageErr("--lines and --detect-only exclude each other")
	}

	cfgText := ""
	if *configPath != "" {
		b, err := os.ReadFile(*configPath)
		if err != nil {
			return usageErr("--config: %v", err)
		}
		cfgText = string(b)
	}
	dir := *modelsDir
	if dir == "" {
		dir = defaultModelsDir(env)
	}
	getenv := func(k string) string {
		if k == ocr.EnvLibrary {
			if *ortLib != "" {
				return *ortLib
			}
			if v := env.Getenv(k); v != "" {
				return v
			}
			if p := filepath.Join(filepath.Dir(dir), "onnxruntime", "libonnxruntime.so.1"); fileExists(p) {
				return p
			}
		}
		return env.Getenv(k)
	}
	cfg, err := ocr.ParseConfig(cfgText, dir, getenv)
	if err != nil {
		return usageErr("%v", err)
	}
	if *ortLib != "" {
		cfg.Library = *ortLib
	}
	if *workers > 0 {
		cfg.Workers = *workers
	}
	if *threads > 0 {
		cfg.Threads = *threads
	}
	if len(*formats) > 0 {
		cfg.Formats = nil
		for _, f := range *formats {
			f = strings.ToLower(strings.TrimSpace(f))
			if f != "page" && f != "alto" && f != "txt" {
				return usageErr("--format: unknown format %q (want page, alto, txt)", f)
			}
			cfg.Formats = append(cfg.Formats, f)
		}
	}
	if *detectOnly {
		cfg.Formats = []string{"page"}
	}

	inputs, bad := collectOCRInputs(fs.Args())
	for _, b := range bad {
		fmt.Fprintf(env.Stderr, "pero ocr: %s\n", b)
	}
	if len(inputs) == 0 {
		return failed(errors.New("no images to read"), "give image files or directories holding .png, .jpg, .tif ... files")
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return failed(fmt.Errorf("--out: %w", err), "")
	}

	needs := ocr.Needs{Detect: !*lines, Recognize: !*detectOnly}
	engine, err := ocr.NewEngine(cfg, needs, env.Logger)
	if err != nil {
		return failed(err, "run `make models`, or point --models and --ort-lib at the model files and the ONNX Runtime library")
	}
	defer engine.Close()

	start := time.Now()
	bar := newProgress(env.Stderr, int64(len(inputs)), "ocr")
	var (
		failedPages atomic.Int64
		mu          sync.Mutex // serialises error lines with the bar, guards total
		total       ocr.Timing
		wg          sync.WaitGroup
	)
	jobs := make(chan ocrInput)
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range jobs {
				t, err := ocrOne(ctx, engine, cfg, in, *outDir, *lines, *detectOnly)
				mu.Lock()
				total.Add(t)
				mu.Unlock()
				if err != nil && ctx.Err() == nil {
					failedPages.Add(1)
					mu.Lock()
					fmt.Fprintf(env.Stderr, "\npero ocr: %s: %v\n", in.path, err)
					mu.Unlock()
				}
				bar.Add(1)
			}
		}()
	}
feed:
	for _, in := range inputs {
		select {
		case jobs <- in:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	bar.Finish()
	if err := ctx.Err(); err != nil {
		return err
	}
	elapsed := time.Since(start)
	nf := int(failedPages.Load()) + len(bad)
	fmt.Fprintf(env.Stderr, "pero ocr: %d pages in %s (%.2f pages/s), %d failed; results in %s\n",
		len(inputs), elapsed.Round(time.Millisecond), float64(len(inputs))/elapsed.Seconds(), nf, *outDir)
	if *stats {
		fmt.Fprintf(env.Stderr, "pero ocr: stats: %s; outside the models %.1f%% of the page time\n",
			total, 100*(1-total.Model().Seconds()/max(total.Busy().Seconds(), 1e-9)))
	}
	if nf > 0 {
		return failed(fmt.Errorf("%d of %d pages failed", nf, len(inputs)+len(bad)), "see the errors above")
	}
	return nil
}

// ocrInput is an image to read and the name its results take.
type ocrInput struct {
	path string
	rel  string // path of the results below --out, without extension
}

func ocrOne(ctx context.Context, e *ocr.Engine, cfg ocr.Config, in ocrInput, outDir string, lines, detectOnly bool) (t ocr.Timing, err error) {
	defer func() {
		// One odd page must not end the run.
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	data, err := os.ReadFile(in.path)
	if err != nil {
		return t, err
	}
	name := filepath.Base(in.path)
	var lay *ocr.Layout
	switch {
	case lines:
		lay, t, err = e.ReadLine(ctx, name, data)
	case detectOnly:
		lay, t, err = e.Detect(ctx, name, data)
	default:
		lay, t, err = e.OCR(ctx, name, data)
	}
	if err != nil {
		return t, err
	}
	start := time.Now()
	files, err := ocr.Render(lay, name, cfg.Formats, start)
	t.Output = time.Since(start)
	if err != nil {
		return t, err
	}
	base := filepath.Join(outDir, in.rel)
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return t, err
	}
	stem := function.Stem(name)
	for _, f := range files {
		// Results are named after the image; keep the suffix and place it at rel.
		p := base + strings.TrimPrefix(f.Name, stem)
		if err := writeFileAtomic(p, f.Content); err != nil {
			return t, err
		}
	}
	return t, nil
}

// writeFileAtomic writes through a temporary file so that an interrupted
// run never leaves a half-written result behind.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// collectOCRInputs expands files and directories into images to read.
func collectOCRInputs(args []string) (inputs []ocrInput, bad []string) {
	seen := map[string]bool{}
	add := func(path, rel string) {
		if seen[path] {
			return
		}
		seen[path] = true
		inputs = append(inputs, ocrInput{path: path, rel: strings.TrimSuffix(rel, filepath.Ext(rel))})
	}
	for _, arg := range args {
		info, err := os.Stat(arg)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", arg, errors.Unwrap(err)))
			continue
		}
		if !info.IsDir() {
			add(arg, filepath.Base(arg))
			continue
		}
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				bad = append(bad, fmt.Sprintf("%s: %v", p, err))
				return nil
			}
			if d.IsDir() || !slices.Contains(ocrImageExts, strings.ToLower(filepath.Ext(p))) {
				return nil
			}
			rel, err := filepath.Rel(arg, p)
			if err != nil {
				rel = filepath.Base(p)
			}
			add(p, rel)
			return nil
		})
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", arg, err))
		}
	}
	return inputs, bad
}

// defaultModelsDir is where pero ocr looks for the models: $PERO_MODELS_DIR, else ./models
// (make models), else models/ beside the directory of the pero binary (bin/pero of a
// checkout), each with the ocr set inside.
func defaultModelsDir(env *Env) string {
	root := env.Getenv("PERO_MODELS_DIR")
	if root == "" {
		root = "models"
		if !fileExists(root) {
			if exe, err := os.Executable(); err == nil {
				if beside := filepath.Join(filepath.Dir(filepath.Dir(exe)), "models"); fileExists(beside) {
					root = beside
				}
			}
		}
	}
	return filepath.Join(root, "ocr")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
