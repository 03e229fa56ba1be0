package ocr

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/pero-worker/pero-worker/function"
)

// The default recognizer: the project's own Latin-script model (see
// training/MODEL_CARD.md) in its integer version, about three times faster
// on CPUs than the float export pero-latin-rec.onnx, which stays selectable
// like PP-OCRv4's recognizer in config.ini. `make models` installs both.
const (
	DefaultRecognizeModel = "pero-latin-rec-int8.onnx"
	DefaultDictionary     = "pero-latin.dict"
	// DefaultLanguageModel is the character language model the beam search
	// reads pero-latin's output with (training/lm.py); it is the default
	// only with pero-latin's dictionary.
	DefaultLanguageModel = "pero-latin.lm.gz"
)

// Library location: the runtime is looked up by this name on the system
// library path unless a path is configured.
const (
	// DefaultLibrary is the ONNX Runtime library used when none is configured.
	DefaultLibrary = "libonnxruntime.so.1"
	// EnvLibrary names the environment variable that gives the library path.
	EnvLibrary = "PERO_ORT_LIB"
)

// Config is a stage's OCR configuration, read from its config.ini:
//
//	[runtime]
//	library = /opt/onnxruntime/libonnxruntime.so.1 ; default $PERO_ORT_LIB, else libonnxruntime.so.1
//	device = cpu          ; cpu or cuda:N (CUDA when the library has it, else CPU with a warning)
//	threads = 1           ; intra-op threads of each model run (default 1)
//	workers = 0           ; model runs at once: pages and line batches in parallel (0 = number of cores)
//	max_pixels = 100000000 ; larger images are refused before decoding (0 = no limit)
//
//	[detect]              ; see DetectConfig
//	model = ch_PP-OCRv4_det_infer.onnx
//	limit_side_len = 800
//	limit_type = max
//	threshold = 0.3
//	box_threshold = 0.5
//	unclip_ratio = 2.0
//	crop_margins = yes    ; run the detector on the inked part of the page only
//
//	[classify]            ; the 0/180 degree line classifier
//	enabled = no
//	model = ch_ppocr_mobile_v2.0_cls_infer.onnx
//	threshold = 0.9
//
//	[recognize]           ; see RecognizeConfig
//	model = pero-latin-rec-int8.onnx ; pero-latin-rec.onnx (float), ch_PP-OCRv4_rec_infer.onnx for PP-OCRv4
//	dictionary = pero-latin.dict  ; ppocr_keys_v1.txt for PP-OCRv4
//	use_space_char = yes
//	height = 0            ; 0: the model's own input height
//	min_width = 0
//	batch_size = 1
//	min_score = 0.5
//	language_model = pero-latin.lm.gz ; character n-gram model for the beam search (default with pero-latin.dict; none: greedy decoding)
//	lm_weight = 0.25      ; how much the language model counts against the recognizer
//	lm_bonus = 1.0        ; log-probability bonus per character, offsetting the language model's cost
//	beam_width = 8        ; prefixes kept per time step
//
//	[output]
//	formats = page        ; any of page, alto, txt
//
// Model and dictionary paths are relative to the stage's model directory.
type Config struct {
	Library   string
	Device    string
	Threads   int
	Workers   int
	MaxPixels int

	Detect    DetectConfig
	Classify  ClassifyConfig
	Recognize RecognizeConfig

	// Formats lists the outputs to write: "page", "alto", "txt".
	Formats []string
}

// ClassifyConfig holds the angle classifier settings ([classify]).
type ClassifyConfig struct {
	// Enabled turns the classifier on (default off).
	Enabled bool
	// Model is the classifier model file (default ch_ppocr_mobile_v2.0_cls_infer.onnx).
	Model string
	// Threshold is the score above which a line labelled 180 is turned (default 0.9).
	Threshold float64
	// BatchSize is the number of lines per run (default 8).
	BatchSize int
}

// RecognizeConfig holds the line recognition settings ([recognize]).
type RecognizeConfig struct {
	// Model is the CTC recognition model file (default pero-latin-rec-int8.onnx).
	Model string
	// Dictionary is the character list, one per line (default pero-latin.dict).
	Dictionary string
	// UseSpaceChar appends " " to the dictionary (default yes).
	UseSpaceChar bool
	// Height is the model's input height (default 0: read from the model,
	// which must then fix it; 32 for pero-latin, 48 for PP-OCRv4).
	Height int
	// MinWidth pads narrower lines to this width, as PaddleOCR does with 320
	// (default 0: no padding beyond the batch; the same text for less work).
	MinWidth int
	// MaxWidth caps a line's scaled width; longer lines are squeezed
	// (default 3200).
	MaxWidth int
	// BatchSize caps the lines per run (default 1: on CPU single lines were
	// both faster and more accurate than padded batches; raise it on GPU).
	BatchSize int
	// MaxPadding is the share of padded input a batch may waste before a
	// new batch is started (default 0.15).
	MaxPadding float64
	// MinScore drops lines whose mean character probability is below it (default 0.5).
	MinScore float64
	// LanguageModel is a character n-gram model (training/lm.py) that a
	// prefix beam search weighs the readings with (default pero-latin.lm.gz
	// with pero-latin.dict, else none; "none": greedy decoding).
	LanguageModel string
	// LMWeight is the language model's weight (default 0.25).
	LMWeight float64
	// LMBonus is added per character to offset the language model's cost (default 1.0).
	LMBonus float64
	// BeamWidth is the number of prefixes the search keeps (default 8).
	BeamWidth int
}

// ParseConfig reads a config.ini text, fills the defaults and resolves model
// paths against dir. getenv supplies PERO_ORT_LIB (nil: no environment).
func ParseConfig(text, dir string, getenv func(string) string) (Config, error) {
	ini, err := function.ParseINI(text)
	if err != nil {
		return Config{}, err
	}
	var c Config
	var errs []string
	check := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	geti := func(sec, key string, def int) int {
		v, err := ini.Int(sec, key, def)
		check(err)
		return v
	}
	getf := func(sec, key string, def float64) float64 {
		v, err := ini.Float(sec, key, def)
		check(err)
		return v
	}
	getb := func(sec, key string, def bool) bool {
		v, err := ini.Bool(sec, key, def)
		check(err)
		return v
	}
	env := ""
	if getenv != nil {
		env = getenv(EnvLibrary)
	}
	c.Library = cmp.Or(ini.String("runtime", "library", ""), env, DefaultLibrary)
	c.Device = strings.ToLower(ini.String("runtime", "device", "cpu"))
	c.Threads = geti("runtime", "threads", 1)
	c.Workers = geti("runtime", "workers", 0)
	c.MaxPixels = geti("runtime", "max_pixels", 100_000_000)

	c.Detect = DetectConfig{
		Model:         ini.String("detect", "model", "ch_PP-OCRv4_det_infer.onnx"),
		LimitSide:     geti("detect", "limit_side_len", 800),
		LimitType:     strings.ToLower(ini.String("detect", "limit_type", "max")),
		Threshold:     getf("detect", "threshold", 0.3),
		BoxThreshold:  getf("detect", "box_threshold", 0.5),
		UnclipRatio:   getf("detect", "unclip_ratio", 2.0),
		MaxCandidates: geti("detect", "max_candidates", 1000),
		MinSize:       getf("detect", "min_size", 3),
		CropMargins:   getb("detect", "crop_margins", true),
	}
	c.Classify = ClassifyConfig{
		Enabled:   getb("classify", "enabled", false),
		Model:     ini.String("classify", "model", "ch_ppocr_mobile_v2.0_cls_infer.onnx"),
		Threshold: getf("classify", "threshold", 0.9),
		BatchSize: geti("classify", "batch_size", 8),
	}
	c.Recognize = RecognizeConfig{
		Model:        ini.String("recognize", "model", DefaultRecognizeModel),
		Dictionary:   ini.String("recognize", "dictionary", DefaultDictionary),
		UseSpaceChar: getb("recognize", "use_space_char", true),
		Height:       geti("recognize", "height", 0),
		MinWidth:     geti("recognize", "min_width", 0),
		MaxWidth:     geti("recognize", "max_width", 3200),
		BatchSize:    geti("recognize", "batch_size", 1),
		MaxPadding:   getf("recognize", "max_padding", 0.15),
		MinScore:     getf("recognize", "min_score", 0.5),
		LMWeight:     getf("recognize", "lm_weight", 0.25),
		LMBonus:      getf("recognize", "lm_bonus", 1.0),
		BeamWidth:    geti("recognize", "beam_width", 8),
	}
	lmDefault := ""
	if c.Recognize.Dictionary == DefaultDictionary {
		lmDefault = DefaultLanguageModel
	}
	c.Recognize.LanguageModel = ini.String("recognize", "language_model", lmDefault)
	if strings.EqualFold(c.Recognize.LanguageModel, "none") {
		c.Recognize.LanguageModel = ""
	}
	for _, f := range strings.Split(ini.String("output", "formats", "page"), ",") {
		if f = strings.ToLower(strings.TrimSpace(f)); f != "" {
			c.Formats = append(c.Formats, f)
		}
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	if err := c.validate(); err != nil {
		return Config{}, err
	}
	c.Detect.Model = resolve(dir, c.Detect.Model)
	c.Classify.Model = resolve(dir, c.Classify.Model)
	c.Recognize.Model = resolve(dir, c.Recognize.Model)
	c.Recognize.Dictionary = resolve(dir, c.Recognize.Dictionary)
	c.Recognize.LanguageModel = resolve(dir, c.Recognize.LanguageModel)
	return c, nil
}

// DefaultConfig returns the defaults with models under dir.
func DefaultConfig(dir string) Config {
	c, err := ParseConfig("", dir, nil)
	if err != nil {
		panic(err) // the defaults are valid
	}
	return c
}

func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) || dir == "" {
		return p
	}
	return filepath.Join(dir, p)
}

func (c *Config) validate() error {
	var errs []string
	bad := func(field, why string) { errs = append(errs, field+": "+why) }
	if c.Device != "cpu" && !strings.HasPrefix(c.Device, "cuda") {
		bad("[runtime] device", fmt.Sprintf("%q is neither cpu nor cuda:N", c.Device))
	}
	if c.Threads < 1 {
		bad("[runtime] threads", "must be at least 1")
	}
	if c.Workers < 0 {
		bad("[runtime] workers", "must be 0 (cores) or more")
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxPixels < 0 {
		bad("[runtime] max_pixels", "must be 0 (no limit) or more")
	}
	d := &c.Detect
	if d.LimitSide < 32 {
		bad("[detect] limit_side_len", "must be at least 32")
	}
	if d.LimitType != "max" && d.LimitType != "min" {
		bad("[detect] limit_type", "must be max or min")
	}
	if d.Threshold <= 0 || d.Threshold >= 1 {
		bad("[detect] threshold", "must be in (0, 1)")
	}
	if d.BoxThreshold < 0 || d.BoxThreshold >= 1 {
		bad("[detect] box_threshold", "must be in [0, 1)")
	}
	if d.UnclipRatio < 0 {
		bad("[detect] unclip_ratio", "must not be negative")
	}
	if d.MaxCandidates < 1 {
		bad("[detect] max_candidates", "must be at least 1")
	}
	if c.Classify.BatchSize < 1 {
		bad("[classify] batch_size", "must be at least 1")
	}
	r := &c.Recognize
	if r.Height != 0 && r.Height < 8 {
		bad("[recognize] height", "must be 0 (the model's) or at least 8")
	}
	if r.MinWidth < 0 {
		bad("[recognize] min_width", "must not be negative")
	}
	if r.MaxWidth < r.Height {
		bad("[recognize] max_width", "must be at least the height")
	}
	if r.BatchSize < 1 {
		bad("[recognize] batch_size", "must be at least 1")
	}
	if r.MaxPadding < 0 {
		bad("[recognize] max_padding", "must not be negative")
	}
	if !(r.LMWeight >= 0 && r.LMWeight <= 10) {
		bad("[recognize] lm_weight", "must be 0-10")
	}
	if !(math.Abs(r.LMBonus) <= 100) {
		bad("[recognize] lm_bonus", "must be -100-100")
	}
	if r.BeamWidth < 1 || r.BeamWidth > 256 {
		bad("[recognize] beam_width", "must be 1-256")
	}
	if r.Dictionary == "" {
		bad("[recognize] dictionary", "must be set")
	}
	for _, f := range c.Formats {
		switch f {
		case "page", "alto", "txt":
		default:
			bad("[output] formats", fmt.Sprintf("unknown format %q (want page, alto, txt)", f))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// errNotExist shortens a missing-file error to what the user needs.
func errNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("no such file")
	}
	return err
}
