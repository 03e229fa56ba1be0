package cli

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestPackDirReproducible(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"a.onnx": "model", "sub/keys.txt": "a\nb\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first, err := packDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(first)
	// Touching the files must not change the archive.
	if err := os.Chtimes(filepath.Join(dir, "a.onnx"), fixedTime, fixedTime); err != nil {
		t.Fatal(err)
	}
	second, err := packDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(second)
	s1, _ := fileSHA256(first)
	s2, _ := fileSHA256(second)
	if s1 != s2 {
		t.Errorf("packing the same files twice gave different archives")
	}
	f, err := os.Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if len(names) != 2 || names[0] != "a.onnx" || names[1] != "sub/keys.txt" {
		t.Errorf("entries = %v", names)
	}
}

func TestPackDirRefusesLinksAndEmpty(t *testing.T) {
	empty := t.TempDir()
	if _, err := packDir(empty); err == nil {
		t.Error("packed an empty directory")
	}
	dir := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := packDir(dir); err == nil {
		t.Error("packed a symbolic link")
	}
}

var fixedTime = mustTime("2001-02-03T04:05:06Z")

func mustTime(s string) (t time.Time) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
