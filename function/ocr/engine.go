package ocr

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"
)

// Engine runs detection, the optional angle classifier and recognition. It
// is safe for concurrent use: model sessions accept concurrent runs, and a
// semaphore of Config.Workers slots bounds the runs in flight so that pages
// and line batches share the cores without oversubscribing them.
type Engine struct {
	cfg    Config
	logger *slog.Logger
	det    *ortSession
	cls    *ortSession
	rec    *ortSession
	dict   []string
	beam   *ctcBeam // nil: greedy decoding
	// recStride is the recognizer's input pixels per output time step when
	// the output length follows from the width, so that the model writes
	// into a pooled buffer; 0: an output ONNX Runtime allocates.
	recStride int
	slots     chan struct{}

	closeOnce sync.Once
}

// Needs lists what a stage needs of the engine.
type Needs struct{ Detect, Recognize bool }

// NewEngine loads the runtime library and the models the stage needs.
func NewEngine(cfg Config, needs Needs, logger *slog.Logger) (*Engine, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	e := &Engine{cfg: cfg, logger: logger, slots: make(chan struct{}, cfg.Workers)}
	// Check the files before loading the runtime: a missing model is the
	// more common mistake and its error is clearer.
	var files []string
	if needs.Detect {
		files = append(files, cfg.Detect.Model)
	}
	if needs.Recognize {
		files = append(files, cfg.Recognize.Model, cfg.Recognize.Dictionary)
		if cfg.Recognize.LanguageModel != "" {
			files = append(files, cfg.Recognize.LanguageModel)
		}
		if cfg.Classify.Enabled {
			files = append(files, cfg.Classify.Model)
		}
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("model file %s: %w (run `make models`, or set the path in config.ini)", f, errNotExist(err))
		}
	}
	if err := InitRuntime(cfg.Library); err != nil {
		return nil, err
	}
	if p := RuntimePath(); p != cfg.Library && p != "" {
		logger.Warn("onnx runtime already loaded from another path", "loaded", p, "configured", cfg.Library)
	}
	so := sessionOptions{threads: cfg.Threads, device: cfg.Device}
	// The sessions load side by side: building one is mostly single-threaded
	// graph optimisation, and the detector's is most of a start-up.
	type load struct {
		dst  **ortSession
		path string
	}
	var loads []load
	if needs.Detect {
		loads = append(loads, load{&e.det, cfg.Detect.Model})
	}
	if needs.Recognize {
		loads = append(loads, load{&e.rec, cfg.Recognize.Model})
		if cfg.Classify.Enabled {
			loads = append(loads, load{&e.cls, cfg.Classify.Model})
		}
	}
	errs := make([]error, len(loads)+1)
	var wg sync.WaitGroup
	var lm *charLM
	if needs.Recognize && cfg.Recognize.LanguageModel != "" {
		wg.Go(func() { lm, errs[len(loads)] = loadCharLM(cfg.Recognize.LanguageModel, cfg.Recognize.LMWeight) })
	}
	for i, l := range loads {
		wg.Go(func() {
			s, err := newSession(l.path, so)
			if s != nil && s.warning != "" {
				logger.Warn(s.warning, "model", l.path)
			}
			*l.dst, errs[i] = s, err
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if needs.Recognize && err == nil {
		e.dict, err = loadDictionary(cfg.Recognize.Dictionary, cfg.Recognize.UseSpaceChar)
		if err == nil {
			e.cfg.Recognize.Height, err = e.checkRecognizer(cfg.Recognize)
		}
		if err == nil && lm != nil {
			rc := cfg.Recognize
			e.beam = newCTCBeam(lm, e.dict, rc.LMBonus, rc.BeamWidth)
		}
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// checkRecognizer settles the recognizer's input height (the configured one,
// else the one the model fixes) and checks, with one run on a blank line,
// that the model's classes match the dictionary, so that a wrong pairing
// fails at load rather than on the first page.
func (e *Engine) checkRecognizer(rc RecognizeConfig) (int, error) {
	h := rc.Height
	in := e.rec.inShape
	if len(in) != 4 {
		return 0, fmt.Errorf("recognition model %s: input shape %v, want [N 3 H W]", rc.Model, in)
	}
	switch {
	case h == 0 && in[2] > 0:
		h = int(in[2])
	case h == 0:
		return 0, fmt.Errorf("recognition model %s has no fixed input height: set [recognize] height", rc.Model)
	case in[2] > 0 && int64(h) != in[2]:
		return 0, fmt.Errorf("[recognize] height = %d but model %s takes lines %d pixels high", h, rc.Model, in[2])
	}
	const w = 64
	_, shape, err := e.rec.run(make([]float32, 3*h*w), []int64{1, 3, int64(h), w})
	if err != nil {
		return 0, fmt.Errorf("recognition model %s: test run: %w", rc.Model, err)
	}
	if len(shape) != 3 {
		return 0, fmt.Errorf("recognition model %s: output shape %v, want [N T C]", rc.Model, shape)
	}
	if c := int(shape[2]); c != len(e.dict)+1 {
		return 0, fmt.Errorf("recognition model %s has %d classes but dictionary %s gives %d (+1 blank, use_space_char=%v): the dictionary does not belong to this model",
			rc.Model, c, rc.Dictionary, len(e.dict), rc.UseSpaceChar)
	}
	// Widths are padded to multiples of 8: where the time steps are a
	// whole number of pixels that divides 8 (4 for pero-latin, 8 for
	// PP-OCRv4), and a second width confirms it, the output's length is
	// known before the run.
	if t := int(shape[1]); t > 0 && w%t == 0 && 8%(w/t) == 0 {
		stride := w / t
		_, shape2, err := e.rec.run(make([]float32, 3*h*2*w), []int64{1, 3, int64(h), 2 * w})
		if err == nil && len(shape2) == 3 && int(shape2[1]) == 2*w/stride {
			e.recStride = stride
		}
	}
	return h, nil
}

// Close releases the model sessions.
func (e *Engine) Close() error {
	var errs []error
	e.closeOnce.Do(func() {
		for _, s := range []*ortSession{e.det, e.cls, e.rec} {
			errs = append(errs, s.close())
		}
	})
	return errors.Join(errs...)
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

func loadDictionary(path string, space bool) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dictionary %s: %w", path, errNotExist(err))
	}
	var dict []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		dict = append(dict, string(bytes.TrimRight(sc.Bytes(), "\r")))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dictionary %s: %w", path, err)
	}
	if len(dict) == 0 {
		return nil, fmt.Errorf("dictionary %s: empty", path)
	}
	if space {
		dict = append(dict, " ")
	}
	return dict, nil
}

// run runs a model within a worker slot and adds the time the model took
// (not the wait for the slot) to *took.
func (e *Engine) run(ctx context.Context, s *ortSession, input []float32, shape []int64, took *time.Duration) ([]float32, []int64, error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	defer func() { <-e.slots }()
	start := time.Now()
	out, outShape, err := s.run(input, shape)
	*took += time.Since(start)
	return out, outShape, err
}

// runInto is run for a model whose output shape is known: the model writes
// straight into output.
func (e *Engine) runInto(ctx context.Context, s *ortSession, input []float32, shape []int64, output []float32, outShape []int64, took *time.Duration) error {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.slots }()
	start := time.Now()
	err := s.runInto(input, shape, output, outShape)
	*took += time.Since(start)
	return err
}

// Timing is where a page's time went. Detect, Classify and Recognize are
// the whole steps; the *Model fields the part spent inside ONNX Runtime.
type Timing struct {
	Decode                    time.Duration
	Detect, DetectModel       time.Duration
	Classify, ClassifyModel   time.Duration
	Recognize, RecognizeModel time.Duration
	// Output is the rendering of the results (PAGE XML, ALTO, text), which
	// the caller measures: the engine's steps end with the layout.
	Output time.Duration
}

// Add adds o to t.
func (t *Timing) Add(o Timing) {
	t.Decode += o.Decode
	t.Detect += o.Detect
	t.DetectModel += o.DetectModel
	t.Classify += o.Classify
	t.ClassifyModel += o.ClassifyModel
	t.Recognize += o.Recognize
	t.RecognizeModel += o.RecognizeModel
	t.Output += o.Output
}

// Busy is the time of all the steps; Model the part of it inside ONNX
// Runtime.
func (t Timing) Busy() time.Duration {
	return t.Decode + t.Detect + t.Classify + t.Recognize + t.Output
}

// Model is the time spent inside ONNX Runtime.
func (t Timing) Model() time.Duration {
	return t.DetectModel + t.ClassifyModel + t.RecognizeModel
}

func (t Timing) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("decode %s, detect %s (model %s), classify %s (model %s), recognize %s (model %s), output %s",
		r(t.Decode), r(t.Detect), r(t.DetectModel), r(t.Classify), r(t.ClassifyModel), r(t.Recognize), r(t.RecognizeModel), r(t.Output))
}

// decode decodes an image within the configured pixel limit.
func (e *Engine) decode(data []byte) (*raster, error) {
	return decodeImage(data, e.cfg.MaxPixels)
}

// detect finds the text line boxes of a page.
func (e *Engine) detect(ctx context.Context, img *raster, t *Timing) ([]quad, error) {
	if e.det == nil {
		return nil, errors.New("engine has no detection model")
	}
	start := time.Now()
	dw, dh := detSize(img.w, img.h, e.cfg.Detect)
	levels := floatPool.get(img.c * dw * dh)
	defer floatPool.put(levels)
	detResize(img, dw, dh, levels)
	// The model runs on the inked window only, at the page's scale, and the
	// post-processing on its map in place.
	x0, y0, x1, y1 := 0, 0, dw, dh
	if e.cfg.Detect.CropMargins {
		if a, b, c, d, ok := inkWindow(levels, img.c, dw, dh); ok {
			x0, y0, x1, y1 = a, b, c, d
		}
	}
	cw, ch := x1-x0, y1-y0
	input := floatPool.get(3 * cw * ch)
	defer floatPool.put(input)
	detPlanes(levels, img.c, dw, x0, y0, x1, y1, input)
	prob := floatPool.get(cw * ch)
	defer floatPool.put(prob)
	shape := []int64{1, 1, int64(ch), int64(cw)}
	if err := e.runInto(ctx, e.det, input, []int64{1, 3, int64(ch), int64(cw)}, prob, shape, &t.DetectModel); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	boxes := dbBoxes(prob, cw, ch, mapWindow{x0, y0, dw, dh}, img.w, img.h, e.cfg.Detect)
	quads := make([]quad, len(boxes))
	for i, b := range boxes {
		quads[i] = b.q
	}
	t.Detect += time.Since(start)
	return quads, nil
}

// recLine is a line on its way through recognition.
type recLine struct {
	g     lineGeometry
	rw    int // width once scaled to the model height
	text  string
	score float64
	chars []ctcChar
	steps int // model time steps over the padded width
	width int // padded width the line was run at
}

// classify turns the lines the angle classifier reads as upside down.
func (e *Engine) classify(ctx context.Context, img *raster, lines []*recLine, t *Timing) error {
	const h, w = 48, 192
	bs := e.cfg.Classify.BatchSize
	for start := 0; start < len(lines); start += bs {
		batch := lines[start:min(start+bs, len(lines))]
		plane := h * w
		input := make([]float32, len(batch)*3*plane)
		for i, l := range batch {
			rw := min(l.g.scaledWidth(h), w)
			l.g.sample(img, rw, h, w, plane, input[i*3*plane:])
		}
		out, shape, err := e.run(ctx, e.cls, input, []int64{int64(len(batch)), 3, h, w}, &t.ClassifyModel)
		if err != nil {
			return fmt.Errorf("classify: %w", err)
		}
		if len(shape) != 2 || shape[1] != 2 {
			return fmt.Errorf("classify: model output shape %v, want [N 2]", shape)
		}
		for i, l := range batch {
			if p := out[i*2+1]; p > out[i*2] && float64(p) > e.cfg.Classify.Threshold {
				l.g = l.g.flipped()
			}
		}
	}
	return nil
}

// recognize reads the lines, in batches of similar width run in parallel.
func (e *Engine) recognize(ctx context.Context, img *raster, geos []lineGeometry, t *Timing) ([]*recLine, error) {
	if e.rec == nil {
		return nil, errors.New("engine has no recognition model")
	}
	start := time.Now()
	rc := e.cfg.Recognize
	lines := make([]*recLine, len(geos))
	for i, g := range geos {
		lines[i] = &recLine{g: g}
	}
	if e.cls != nil && len(lines) > 0 {
		c0 := time.Now()
		if err := e.classify(ctx, img, lines, t); err != nil {
			return nil, err
		}
		t.Classify += time.Since(c0)
	}
	for _, l := range lines {
		l.rw = min(l.g.scaledWidth(rc.Height), rc.MaxWidth)
	}
	order := slices.Clone(lines)
	slices.SortStableFunc(order, func(a, b *recLine) int { return a.rw - b.rw })
	batches := widthBatches(order, rc)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		model    time.Duration
	)
	for _, b := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := e.recognizeBatch(ctx, img, b)
			mu.Lock()
			defer mu.Unlock()
			model += d
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	t.RecognizeModel += model
	t.Recognize += time.Since(start)
	if firstErr != nil {
		return nil, firstErr
	}
	return lines, nil
}

// widthBatches cuts lines sorted by width into batches of at most BatchSize
// lines whose padding to the widest stays under MaxPadding of the input.
func widthBatches(sorted []*recLine, rc RecognizeConfig) [][]*recLine {
	var batches [][]*recLine
	for i := 0; i < len(sorted); {
		j, sum := i, 0
		for j < len(sorted) && j-i < rc.BatchSize {
			w := max(sorted[j].rw, rc.MinWidth)
			padded := w * (j - i + 1)
			if j > i && float64(padded-sum-w) > rc.MaxPadding*float64(padded) {
				break
			}
			sum += w
			j++
		}
		batches = append(batches, sorted[i:j])
		i = j
	}
	return batches
}

// recognizeBatch runs one batch and decodes it; it returns the model time.
// The batch holds a worker slot from its crops to its decoding, not only
// for the model run: the crops are CPU work too, and on one core crops
// of one batch cut into the model time measured for another.
func (e *Engine) recognizeBatch(ctx context.Context, img *raster, batch []*recLine) (time.Duration, error) {
	select {
	case e.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-e.slots }()
	rc := e.cfg.Recognize
	h := rc.Height
	w := max(batch[len(batch)-1].rw, rc.MinWidth)
	w = (w + 7) &^ 7 // the model's time steps are 8 pixels wide
	plane := h * w
	input := floatPool.get(len(batch) * 3 * plane)
	defer floatPool.put(input)
	clear(input) // zero: the normalised padding value
	for i, l := range batch {
		l.g.sample(img, l.rw, h, w, plane, input[i*3*plane:])
	}
	inShape := []int64{int64(len(batch)), 3, int64(h), int64(w)}
	var (
		out   []float32
		shape []int64
		err   error
		start = time.Now()
	)
	if s := e.recStride; s > 0 {
		shape = []int64{int64(len(batch)), int64(w / s), int64(len(e.dict) + 1)}
		out = floatPool.get(int(shape[0] * shape[1] * shape[2]))
		defer floatPool.put(out)
		err = e.rec.runInto(input, inShape, out, shape)
	} else {
		out, shape, err = e.rec.run(input, inShape)
	}
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("recognize: %w", err)
	}
	if len(shape) != 3 || shape[0] != int64(len(batch)) {
		return d, fmt.Errorf("recognize: model output shape %v, want [%d T C]", shape, len(batch))
	}
	T, C := int(shape[1]), int(shape[2])
	if C != len(e.dict)+1 {
		return d, fmt.Errorf("recognize: model has %d classes but the dictionary gives %d (+1 blank): wrong dictionary for this model?", C, len(e.dict))
	}
	for i, l := range batch {
		l.chars = e.decodeCTC(out[i*T*C:(i+1)*T*C], T, C)
		l.text, l.score = ctcText(l.chars, e.dict)
		l.steps, l.width = T, w
	}
	return d, nil
}

// decodeCTC reads one line's output: greedily, or by the beam search with
// the language model when one is configured. A beam reading that spells the
// greedy one keeps the greedy time steps.
func (e *Engine) decodeCTC(probs []float32, T, C int) []ctcChar {
	greedy := ctcGreedy(probs, T, C)
	if e.beam == nil {
		return greedy
	}
	labels := e.beam.decode(probs, T, C)
	if slices.EqualFunc(labels, greedy, func(c int, g ctcChar) bool { return c == g.idx }) {
		return greedy
	}
	return ctcAlign(probs, T, C, labels)
}

// words splits a recognised line into words placed on the page: each
// character's time steps give its horizontal position in the line crop,
// which the line's perspective map takes back to the page.
func (l *recLine) words(dict []string) []Word {
	if len(l.chars) == 0 || l.steps == 0 {
		return nil
	}
	// Pixels of the scaled line per time step, and crop pixels per scaled pixel.
	step := float64(l.width) / float64(l.steps)
	toCrop := l.g.cw / float64(l.rw)
	hm := rectToQuad(l.g.cw, l.g.ch, l.g.q)
	corner := func(x, y float64) point {
		px, py := hm.apply(x, y)
		return point{px, py}
	}
	var words []Word
	var cur []ctcChar
	flush := func() {
		if len(cur) == 0 {
			return
		}
		var text []byte
		var sum float64
		for _, c := range cur {
			text = append(text, dict[c.idx-1]...)
			sum += float64(c.prob)
		}
		x0 := math.Max(float64(cur[0].t0)*step*toCrop, 0)
		x1 := math.Min(float64(cur[len(cur)-1].t1+1)*step*toCrop, l.g.cw)
		q := quad{corner(x0, 0), corner(x1, 0), corner(x1, l.g.ch), corner(x0, l.g.ch)}
		words = append(words, Word{Text: string(text), Coords: [4]image.Point(quadPoints(q)), Conf: sum / float64(len(cur))})
		cur = cur[:0]
	}
	for _, c := range l.chars {
		if c.idx-1 >= len(dict) {
			continue
		}
		if s := dict[c.idx-1]; s == " " {
			flush()
			continue
		}
		cur = append(cur, c)
	}
	flush()
	return words
}
