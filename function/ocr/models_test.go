package ocr

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// testAssets locates the models and the runtime library for tests:
// $PERO_MODELS_DIR, else the repository's models/ (`make models`). Without them a test skips, except
// under CI=true where they must be present.
type testAssets struct {
	modelDir string // the stage model directory make models fills
	library  string
	corpus   string // public corpus, "" when absent
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func findAssets() (testAssets, bool) {
	root := repoRoot()
	var a testAssets
	candidates := []struct{ models, lib string }{
		{filepath.Join(os.Getenv("PERO_MODELS_DIR"), "ocr"), filepath.Join(os.Getenv("PERO_MODELS_DIR"), "onnxruntime", "libonnxruntime.so.1")},
		{filepath.Join(root, "models", "ocr"), filepath.Join(root, "models", "onnxruntime", "libonnxruntime.so.1")},
	}
	for i, c := range candidates {
		if i == 0 && os.Getenv("PERO_MODELS_DIR") == "" {
			continue
		}
		if fileExists(filepath.Join(c.models, DefaultRecognizeModel)) && fileExists(c.lib) {
			a.modelDir, a.library = c.models, c.lib
			break
		}
	}
	if lib := os.Getenv(EnvLibrary); lib != "" && a.modelDir != "" {
		a.library = lib
	}
	for _, c := range []string{os.Getenv("PERO_CORPUS_DIR"), filepath.Join(root, "..", "shared", "corpus", "public")} {
		if c != "" && fileExists(filepath.Join(c, "README.md")) {
			a.corpus = c
			break
		}
	}
	return a, a.modelDir != ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func needAssets(tb testing.TB) testAssets {
	tb.Helper()
	if !RuntimeAvailable {
		tb.Skip("built without cgo: no ONNX Runtime")
	}
	a, ok := findAssets()
	if !ok {
		if os.Getenv("CI") == "true" {
			tb.Fatal("models not found (PERO_MODELS_DIR, models/ or ../shared/assets); CI must have them")
		}
		tb.Skip("models not found: run `make models` or set PERO_MODELS_DIR")
	}
	return a
}

func needCorpus(tb testing.TB) testAssets {
	tb.Helper()
	a := needAssets(tb)
	if a.corpus == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("corpus not found (PERO_CORPUS_DIR or ../shared/corpus/public); CI must have it")
		}
		tb.Skip("corpus not found: set PERO_CORPUS_DIR")
	}
	return a
}

func testConfig(a testAssets, ini string) (Config, error) {
	return ParseConfig(ini, a.modelDir, func(string) string { return a.library })
}
