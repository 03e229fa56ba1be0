package runner

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry describes one archive member for the test archives.
type entry struct {
	name string
	body string
	mode fs.FileMode // 0: a regular file 0644, or a directory when name ends in "/"
	link string      // target of a symlink or hard link
	typ  byte        // tar type flag; 0: from name and mode
}

func tarGz(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	writeTar(t, zw, entries)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func plainTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	writeTar(t, &buf, entries)
	return buf.Bytes()
}

func writeTar(t testing.TB, w interface{ Write([]byte) (int, error) }, entries []entry) {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: e.typ, Linkname: e.link, Format: tar.FormatPAX}
		if e.mode != 0 {
			h.Mode = int64(e.mode.Perm())
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			if strings.HasSuffix(e.name, "/") {
				h.Typeflag = tar.TypeDir
			}
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func zipOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if strings.HasSuffix(e.name, "/") {
				mode = fs.ModeDir | 0o755
			}
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		body := e.body
		if mode&fs.ModeSymlink != 0 {
			body = e.link
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func extractBytes(t *testing.T, data []byte, lim ExtractLimits) (string, extractStats, error) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "archive")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := extractArchive(src, dst, lim)
	return dst, st, err
}

func TestExtractGood(t *testing.T) {
	entries := []entry{
		{name: "model/"},
		{name: "model/config.ini", body: "[x]\na = 1\n"},
		{name: "model/bin/run.sh", body: "#!/bin/sh\n", mode: 0o755},
		{name: "./top.txt", body: "top"},
	}
	for name, data := range map[string][]byte{
		"zip": zipOf(t, entries...), "tar.gz": tarGz(t, entries...), "tar": plainTar(t, entries...),
	} {
		t.Run(name, func(t *testing.T) {
			dst, st, err := extractBytes(t, data, ExtractLimits{})
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 4 || st.Bytes != int64(len("[x]\na = 1\n")+len("#!/bin/sh\n")+3) {
				t.Errorf("stats %+v", st)
			}
			b, err := os.ReadFile(filepath.Join(dst, "model", "config.ini"))
			if err != nil || string(b) != "[x]\na = 1\n" {
				t.Errorf("config.ini = %q, %v", b, err)
			}
			info, err := os.Stat(filepath.Join(dst, "model", "bin", "run.sh"))
			if err != nil || info.Mode().Perm() != 0o755 {
				t.Errorf("run.sh: %v %v", info.Mode(), err)
			}
			if _, err := os.Stat(filepath.Join(dst, "top.txt")); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestExtractRejectsUnsafe(t *testing.T) {
	tests := []struct {
		name string
		data func(t *testing.T) []byte
		want error
	}{
		{"tar traversal", func(t *testing.T) []byte { return tarGz(t, entry{name: "../evil", body: "x"}) }, ErrUnsafeArchive},
		{"tar nested traversal", func(t *testing.T) []byte { return tarGz(t, entry{name: "a/../../evil", body: "x"}) }, ErrUnsafeArchive},
		{"tar inner dotdot", func(t *testing.T) []byte { return tarGz(t, entry{name: "a/../b", body: "x"}) }, ErrUnsafeArchive},
		{"tar absolute", func(t *testing.T) []byte { return tarGz(t, entry{name: "/etc/evil", body: "x"}) }, ErrUnsafeArchive},
		{"tar symlink", func(t *testing.T) []byte {
			return tarGz(t, entry{name: "link", link: "/etc/passwd", typ: tar.TypeSymlink})
		}, ErrUnsafeArchive},
		{"tar symlink then write through it", func(t *testing.T) []byte {
			return tarGz(t, entry{name: "d", link: "/tmp", typ: tar.TypeSymlink}, entry{name: "d/x", body: "x"})
		}, ErrUnsafeArchive},
		{"tar hardlink", func(t *testing.T) []byte {
			return tarGz(t, entry{name: "a", body: "x"}, entry{name: "b", link: "/etc/shadow", typ: tar.TypeLink})
		}, ErrUnsafeArchive},
		{"tar char device", func(t *testing.T) []byte { return tarGz(t, entry{name: "null", typ: tar.TypeChar}) }, ErrUnsafeArchive},
		{"tar block device", func(t *testing.T) []byte { return tarGz(t, entry{name: "sda", typ: tar.TypeBlock}) }, ErrUnsafeArchive},
		{"tar fifo", func(t *testing.T) []byte { return tarGz(t, entry{name: "p", typ: tar.TypeFifo}) }, ErrUnsafeArchive},
		{"tar duplicate", func(t *testing.T) []byte {
			return tarGz(t, entry{name: "a", body: "1"}, entry{name: "a", body: "2"})
		}, ErrUnsafeArchive},
		{"zip traversal", func(t *testing.T) []byte { return zipOf(t, entry{name: "../evil", body: "x"}) }, ErrUnsafeArchive},
		{"zip absolute", func(t *testing.T) []byte { return zipOf(t, entry{name: "/evil", body: "x"}) }, ErrUnsafeArchive},
		{"zip backslash", func(t *testing.T) []byte { return zipOf(t, entry{name: `..\evil`, body: "x"}) }, ErrUnsafeArchive},
		{"zip symlink", func(t *testing.T) []byte {
			return zipOf(t, entry{name: "link", link: "/etc/passwd", mode: fs.ModeSymlink | 0o777})
		}, ErrUnsafeArchive},
		{"zip device", func(t *testing.T) []byte {
			return zipOf(t, entry{name: "dev", mode: fs.ModeDevice | fs.ModeCharDevice | 0o600})
		}, ErrUnsafeArchive},
		{"not an archive", func(t *testing.T) []byte { return []byte("this is not an archive at all") }, ErrCorruptArchive},
		{"truncated tar.gz", func(t *testing.T) []byte {
			b := tarGz(t, entry{name: "a", body: strings.Repeat("x", 10000)})
			return b[:len(b)/2]
		}, ErrCorruptArchive},
		{"truncated zip", func(t *testing.T) []byte {
			b := zipOf(t, entry{name: "a", body: strings.Repeat("x", 10000)})
			return b[:len(b)-30]
		}, ErrCorruptArchive},
		{"empty tar", func(t *testing.T) []byte { return tarGz(t) }, ErrCorruptArchive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst, _, err := extractBytes(t, tc.data(t), ExtractLimits{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			// Nothing may have been written outside dst.
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dst), "evil")); err == nil {
				t.Error("an entry escaped the target directory")
			}
		})
	}
}

func TestExtractRejectsBombs(t *testing.T) {
	zeros := strings.Repeat("\x00", 1<<20) // 1 MiB compresses to about 1 KiB
	tests := []struct {
		name string
		data []byte
		lim  ExtractLimits
	}{
		{"tar.gz total", tarGz(t, entry{name: "a", body: zeros}, entry{name: "b", body: zeros}), ExtractLimits{MaxBytes: 1 << 20}},
		{"zip total", zipOf(t, entry{name: "a", body: zeros}, entry{name: "b", body: zeros}), ExtractLimits{MaxBytes: 1 << 20}},
		{"zip declared size", zipOf(t, entry{name: "a", body: zeros + zeros}), ExtractLimits{MaxBytes: 1 << 20}},
		{"tar files", tarGz(t, entry{name: "a", body: "1"}, entry{name: "b", body: "2"}, entry{name: "c", body: "3"}), ExtractLimits{MaxFiles: 2}},
		{"zip files", zipOf(t, entry{name: "a", body: "1"}, entry{name: "b", body: "2"}, entry{name: "c", body: "3"}), ExtractLimits{MaxFiles: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := extractBytes(t, tc.data, tc.lim)
			if !errors.Is(err, ErrArchiveTooLarge) {
				t.Fatalf("err = %v, want ErrArchiveTooLarge", err)
			}
		})
	}
}

func TestExtractRatioLimit(t *testing.T) {
	// 80 MiB of zeros packs into well under 1 MiB: far above a ratio of 10 once past the 64 MiB floor.
	big := strings.Repeat("\x00", 80<<20)
	data := tarGz(t, entry{name: "zeros", body: big})
	if _, _, err := extractBytes(t, data, ExtractLimits{MaxRatio: 10}); !errors.Is(err, ErrArchiveTooLarge) {
		t.Fatalf("err = %v, want ErrArchiveTooLarge", err)
	}
	// Small archives of zeros stay below the floor and unpack.
	small := tarGz(t, entry{name: "zeros", body: big[:1<<20]})
	if _, _, err := extractBytes(t, small, ExtractLimits{MaxRatio: 10}); err != nil {
		t.Fatalf("small archive: %v", err)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add(tarGz(f, entry{name: "a/b", body: "x"}))
	f.Add(zipOf(f, entry{name: "a/b", body: "x"}))
	f.Add(plainTar(f, entry{name: "a/", body: ""}))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		src := filepath.Join(dir, "archive")
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "out")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		_, _ = extractArchive(src, dst, ExtractLimits{MaxBytes: 1 << 20, MaxFiles: 100})
		// Whatever happened, only regular files and directories exist, all inside dst.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "archive" && e.Name() != "out" {
				t.Fatalf("entry %q escaped", e.Name())
			}
		}
		_ = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && !d.Type().IsRegular() {
				t.Fatalf("%s is %v", p, d.Type())
			}
			return nil
		})
	})
}
