package ocr

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("", "/models/x", func(k string) string {
		if k == EnvLibrary {
			return "/opt/ort.so"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Library != "/opt/ort.so" || c.Device != "cpu" || c.Threads != 1 || c.Workers < 1 || c.MaxPixels != 100_000_000 {
		t.Errorf("runtime defaults: %+v", c)
	}
	if c.Detect.Model != "/models/x/ch_PP-OCRv4_det_infer.onnx" || c.Detect.LimitSide != 800 || c.Detect.UnclipRatio != 2.0 {
		t.Errorf("detect defaults: %+v", c.Detect)
	}
	if c.Recognize.Model != "/models/x/pero-latin-rec-int8.onnx" || c.Recognize.Dictionary != "/models/x/pero-latin.dict" || c.Recognize.Height != 0 || !c.Recognize.UseSpaceChar {
		t.Errorf("recognize defaults: %+v", c.Recognize)
	}
	if rc := c.Recognize; rc.LanguageModel != "/models/x/pero-latin.lm.gz" || rc.LMWeight != 0.25 || rc.LMBonus != 1 || rc.BeamWidth != 8 {
		t.Errorf("language model defaults: %+v", rc)
	}
	if c.Classify.Enabled || strings.Join(c.Formats, ",") != "page" {
		t.Errorf("classify/output defaults: %+v %v", c.Classify, c.Formats)
	}
	if c, _ := ParseConfig("", "", nil); c.Library != DefaultLibrary {
		t.Errorf("library without env: %q", c.Library)
	}
}

func TestParseConfigOverrides(t *testing.T) {
	ini := `
[runtime]
library = /lib/ort.so
device = cuda:1
threads = 2
workers = 3
[detect]
limit_side_len = 1280
[classify]
enabled = yes
[recognize]
model = latin/rec.onnx
dictionary = /abs/latin_dict.txt
use_space_char = no
[output]
formats = page, ALTO ,txt
`
	c, err := ParseConfig(ini, "/m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Library != "/lib/ort.so" || c.Device != "cuda:1" || c.Threads != 2 || c.Workers != 3 || c.Detect.LimitSide != 1280 || !c.Classify.Enabled {
		t.Errorf("overrides: %+v", c)
	}
	if c.Recognize.Model != filepath.Join("/m", "latin/rec.onnx") || c.Recognize.Dictionary != "/abs/latin_dict.txt" || c.Recognize.UseSpaceChar {
		t.Errorf("recognize: %+v", c.Recognize)
	}
	if strings.Join(c.Formats, ",") != "page,alto,txt" {
		t.Errorf("formats %v", c.Formats)
	}
}

// The language model belongs to pero-latin's dictionary: another
// recognizer's dictionary reads greedily unless one is named.
func TestParseConfigLanguageModel(t *testing.T) {
	for ini, want := range map[string]string{
		"[recognize]\nlanguage_model = none":                                            "",
		"[recognize]\nlanguage_model = NONE":                                            "",
		"[recognize]\ndictionary = ppocr_keys_v1.txt":                                   "",
		"[recognize]\ndictionary = ppocr_keys_v1.txt\nlanguage_model = my.lm.gz":        "/m/my.lm.gz",
		"[recognize]\nmodel = pero-latin-rec.onnx":                                      "/m/pero-latin.lm.gz",
		"[recognize]\nlanguage_model = /abs/other.lm.gz\nlm_weight = 0\nbeam_width = 1": "/abs/other.lm.gz",
	} {
		c, err := ParseConfig(ini, "/m", nil)
		if err != nil {
			t.Fatalf("%q: %v", ini, err)
		}
		if c.Recognize.LanguageModel != want {
			t.Errorf("%q: language model %q, want %q", ini, c.Recognize.LanguageModel, want)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for ini, field := range map[string]string{
		"[runtime]\nthreads = many":           "threads",
		"[runtime]\nthreads = 0":              "threads",
		"[runtime]\ndevice = tpu":             "device",
		"[runtime]\nmax_pixels = -1":          "max_pixels",
		"[detect]\nthreshold = 1.5":           "threshold",
		"[detect]\nlimit_type = avg":          "limit_type",
		"[detect]\nlimit_side_len = 8":        "limit_side_len",
		"[recognize]\nbatch_size = 0":         "batch_size",
		"[recognize]\nlm_weight = -1":         "lm_weight",
		"[recognize]\nlm_weight = NaN":        "lm_weight",
		"[recognize]\nlm_bonus = Inf":         "lm_bonus",
		"[recognize]\nbeam_width = 0":         "beam_width",
		"[recognize]\nlm_bonus = high":        "lm_bonus",
		"[recognize]\nuse_space_char = maybe": "use_space_char",
		"[output]\nformats = pdf":             "formats",
		"[detect":                             "section",
	} {
		_, err := ParseConfig(ini, "", nil)
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%q: err = %v, want one naming %s", ini, err, field)
		}
	}
}
