package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/cli"
	"github.com/pero-worker/pero-worker/function/ocr"
)

// ocrAssets finds the models directory (holding ocr/ and
// onnxruntime/ as `make models` lays them out) and a corpus page, or skips;
// under CI=true a missing models directory fails.
func ocrAssets(t *testing.T) (models, corpus string) {
	t.Helper()
	if !ocr.RuntimeAvailable {
		t.Skip("built without cgo: no ONNX Runtime")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	for _, m := range []string{os.Getenv("PERO_MODELS_DIR"), filepath.Join(root, "models")} {
		if m != "" && exists(filepath.Join(m, "ocr", ocr.DefaultRecognizeModel)) && exists(filepath.Join(m, "onnxruntime", "libonnxruntime.so.1")) {
			models = m
			break
		}
	}
	corpus = filepath.Join(root, "..", "shared", "corpus", "public")
	if models == "" || !exists(corpus) {
		if os.Getenv("CI") == "true" {
			t.Fatal("models or corpus missing; CI runs `make models` first")
		}
		t.Skip("models not found: run `make models` or set PERO_MODELS_DIR")
	}
	return models, corpus
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func runPero(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := cli.Main(ctx, e, args)
	return out.String(), errb.String(), code
}

func TestOCRCommand(t *testing.T) {
	models, corpus := ocrAssets(t)
	in := t.TempDir()
	page, err := os.ReadFile(filepath.Join(corpus, "pages", "pub_p005.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(in, "book"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"book/p1.png": page, "book/broken.png": page[:100], "notes.txt": []byte("x")} {
		if err := os.WriteFile(filepath.Join(in, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	env := map[string]string{"PERO_MODELS_DIR": models}
	_, stderr, code := runPero(t, env, "ocr", "--out", out, "--format", "page,txt,alto", "--workers", "2", in)
	if code != cli.ExitFailed {
		t.Fatalf("exit %d, want %d (one broken page)\n%s", code, cli.ExitFailed, stderr)
	}
	if !strings.Contains(stderr, "broken.png") || !strings.Contains(stderr, "1 failed") {
		t.Errorf("stderr does not report the broken page:\n%s", stderr)
	}
	for _, f := range []string{"book/p1_page.xml", "book/p1.txt", "book/p1.alto.xml"} {
		if !exists(filepath.Join(out, f)) {
			t.Errorf("missing result %s", f)
		}
	}
	txt, _ := os.ReadFile(filepath.Join(out, "book", "p1.txt"))
	if len(bytes.TrimSpace(txt)) == 0 {
		t.Error("empty text result")
	}

	// Only good pages: exit 0.
	_, stderr, code = runPero(t, env, "ocr", "--out", out, "--format", "txt", filepath.Join(in, "book", "p1.png"))
	if code != cli.ExitOK {
		t.Errorf("good page: exit %d\n%s", code, stderr)
	}
}

func TestOCRCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ocr"}, cli.ExitUsage, "no files given"},
		{[]string{"ocr", "--format", "pdf", "x.png"}, cli.ExitUsage, "unknown format"},
		{[]string{"ocr", "--workers", "-1", "x.png"}, cli.ExitUsage, "--workers"},
		{[]string{"ocr", "--lines", "--detect-only", "x.png"}, cli.ExitUsage, "exclude"},
		{[]string{"ocr", "--config", "/nonexistent.ini", "x.png"}, cli.ExitUsage, "--config"},
		{[]string{"ocr", "/nonexistent-dir/"}, cli.ExitFailed, "no images"},
	} {
		_, stderr, code := runPero(t, nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	// Missing models: a clear failure with a hint, not a crash.
	dir := t.TempDir()
	img := filepath.Join(dir, "a.png")
	if err := os.WriteFile(img, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runPero(t, nil, "ocr", "--models", dir, "--out", dir, img)
	if code != cli.ExitFailed || !strings.Contains(stderr, "make models") {
		t.Errorf("missing models: exit %d\n%s", code, stderr)
	}
}
