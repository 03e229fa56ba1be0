package ocr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pero-worker/pero-worker/function"
)

// Stage is one of the OCR functions: "ocr" (detect and read), "detect"
// (lines as PAGE XML) or "recognize" (read the lines of a PAGE XML).
type Stage struct {
	kind   string
	engine *Engine
	now    func() time.Time
}

var _ function.Function = (*Stage)(nil)

// NewOCR is the factory of the "ocr" function.
func NewOCR(ctx context.Context, opts function.Options) (function.Function, error) {
	return newStage(opts, "ocr", Needs{Detect: true, Recognize: true})
}

// NewDetect is the factory of the "detect" function.
func NewDetect(ctx context.Context, opts function.Options) (function.Function, error) {
	return newStage(opts, "detect", Needs{Detect: true})
}

// NewRecognize is the factory of the "recognize" function.
func NewRecognize(ctx context.Context, opts function.Options) (function.Function, error) {
	return newStage(opts, "recognize", Needs{Recognize: true})
}

func newStage(opts function.Options, kind string, needs Needs) (*Stage, error) {
	cfg, err := ParseConfig(opts.Config, opts.Dir, os.Getenv)
	if err != nil {
		return nil, err
	}
	e, err := NewEngine(cfg, needs, opts.Logger)
	if err != nil {
		return nil, err
	}
	return &Stage{kind: kind, engine: e, now: time.Now}, nil
}

// Close releases the models.
func (s *Stage) Close() error { return s.engine.Close() }

// Process handles the pages of a batch in parallel, up to the engine's
// worker count at a time.
func (s *Stage) Process(ctx context.Context, batch []function.Page) []function.Output {
	out := make([]function.Output, len(batch))
	sem := make(chan struct{}, s.engine.cfg.Workers)
	var wg sync.WaitGroup
	for i := range batch {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			function.Cancelled(ctx, out, i)
			wg.Wait()
			return out
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = s.page(ctx, batch[i])
		}()
	}
	wg.Wait()
	return out
}

func (s *Stage) page(ctx context.Context, p function.Page) (out function.Output) {
	defer func() {
		// A bug on one odd page must not take the batch (or the process) down.
		if r := recover(); r != nil {
			out = function.Output{Err: fmt.Errorf("page %s: internal error: %v", p.Name, r)}
		}
	}()
	if err := ctx.Err(); err != nil {
		return function.Output{Err: err}
	}
	var (
		lay *Layout
		t   Timing
		err error
	)
	switch s.kind {
	case "ocr":
		lay, t, err = s.engine.OCR(ctx, p.Name, p.Image)
	case "detect":
		lay, t, err = s.engine.Detect(ctx, p.Name, p.Image)
	case "recognize":
		lay, err = pageInput(p)
		if err == nil {
			t, err = s.engine.Recognize(ctx, p.Image, lay)
		}
	}
	if err != nil {
		return function.Output{Err: fmt.Errorf("page %s: %w", p.Name, err)}
	}
	if lay.ImageName == "" {
		lay.ImageName = p.Name
	}
	formats := s.engine.cfg.Formats
	if s.kind == "detect" {
		formats = []string{"page"}
	}
	files, err := Render(lay, p.Name, formats, s.now())
	if err != nil {
		return function.Output{Err: fmt.Errorf("page %s: %w", p.Name, err)}
	}
	return function.Output{Files: files, Log: fmt.Sprintf("%s: %d lines; %s", s.kind, len(lay.Lines()), t)}
}

// ErrNoPAGE is the error of a recognize page that carries no PAGE XML.
var ErrNoPAGE = errors.New("no PAGE XML among the inputs")

// pageInput finds the page's PAGE XML among its inputs: "<stem>_page.xml",
// then "<name>_page.xml", then the only input ending in "_page.xml".
func pageInput(p function.Page) (*Layout, error) {
	want := []string{function.Stem(p.Name) + "_page.xml", p.Name + "_page.xml"}
	for _, n := range want {
		if f, ok := p.Input(n); ok {
			return ReadPAGE(f.Content)
		}
	}
	var found []function.File
	for _, f := range p.Inputs {
		if strings.HasSuffix(f.Name, "_page.xml") {
			found = append(found, f)
		}
	}
	if len(found) == 1 {
		return ReadPAGE(found[0].Content)
	}
	return nil, fmt.Errorf("%w (want %s)", ErrNoPAGE, want[0])
}

// Render writes lay in the given formats as the files a stage returns:
// "<stem>_page.xml", "<stem>.alto.xml", "<stem>.txt".
func Render(lay *Layout, name string, formats []string, now time.Time) ([]function.File, error) {
	stem := function.Stem(name)
	var files []function.File
	for _, f := range formats {
		var b bytes.Buffer
		var fname string
		var err error
		switch f {
		case "page":
			fname, err = stem+"_page.xml", WritePAGE(&b, lay, now)
		case "alto":
			fname, err = stem+".alto.xml", WriteALTO(&b, lay, now)
		case "txt":
			fname = stem + ".txt"
			b.WriteString(lay.Text())
		default:
			return nil, fmt.Errorf("unknown output format %q", f)
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", fname, err)
		}
		files = append(files, function.File{Name: fname, Content: b.Bytes()})
	}
	return files, nil
}
