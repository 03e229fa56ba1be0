package runner

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Sentinels of archive extraction; test with errors.Is.
var (
	// ErrUnsafeArchive: an entry would land outside the target directory or is not a plain file
	// or directory (a link, a device, a pipe).
	ErrUnsafeArchive = errors.New("unsafe model archive")
	// ErrArchiveTooLarge: the archive unpacks to more bytes or files than allowed, or expands
	// more than the allowed ratio (a decompression bomb).
	ErrArchiveTooLarge = errors.New("model archive too large")
	// ErrCorruptArchive: the archive is not a zip, tar or tar.gz, or it is damaged.
	ErrCorruptArchive = errors.New("corrupt model archive")
)

// ExtractLimits bound what one archive may unpack to.
type ExtractLimits struct {
	// MaxBytes caps the unpacked size. Default 16GiB; zero means the default.
	MaxBytes int64
	// MaxRatio caps unpacked size / archive size once the unpacked size passes 64MiB (small
	// archives of zeros are harmless). Default 200; zero means the default.
	MaxRatio float64
	// MaxFiles caps the number of entries. Default 100000; zero means the default.
	MaxFiles int
}

// Defaults of ExtractLimits.
const (
	DefaultMaxExtractBytes = 16 << 30
	DefaultMaxRatio        = 200
	DefaultMaxFiles        = 100000
	ratioFloor             = 64 << 20
)

func (l ExtractLimits) withDefaults() ExtractLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxExtractBytes
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = DefaultMaxRatio
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	return l
}

// extractStats is what an extraction produced.
type extractStats struct {
	Bytes int64
	Files int
}

// extractArchive unpacks the zip, tar or tar.gz archive at src into the existing, empty
// directory dst. The format is told by the content, not the name. Only regular files and
// directories are created (files 0644, or 0755 when any execute bit is set; directories 0755);
// every entry name must be a relative path that stays inside dst. On error dst holds a partial
// tree that the caller removes.
func extractArchive(src, dst string, lim ExtractLimits) (extractStats, error) {
	lim = lim.withDefaults()
	f, err := os.Open(src)
	if err != nil {
		return extractStats{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return extractStats{}, err
	}
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return extractStats{}, err
	}
	x := &extractor{dst: dst, lim: lim, budget: min(lim.MaxBytes, max(int64(lim.MaxRatio*float64(st.Size())), ratioFloor))}
	switch {
	case n >= 4 && bytes.Equal(head[:4], []byte("PK\x03\x04")), n >= 4 && bytes.Equal(head[:4], []byte("PK\x05\x06")):
		err = x.zip(f, st.Size())
	case n >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		zr, gerr := gzip.NewReader(bufio.NewReader(f))
		if gerr != nil {
			return extractStats{}, fmt.Errorf("%w: gzip: %v", ErrCorruptArchive, gerr)
		}
		err = x.tar(zr)
		if err == nil {
			// A trailing garbage or truncated gzip stream shows only at its end.
			if _, cerr := io.Copy(io.Discard, io.LimitReader(zr, 1<<20)); cerr != nil {
				err = fmt.Errorf("%w: gzip: %v", ErrCorruptArchive, cerr)
			}
		}
	case n >= 262 && string(head[257:262]) == "ustar":
		err = x.tar(bufio.NewReader(f))
	default:
		return extractStats{}, fmt.Errorf("%w: not a zip, tar or tar.gz file", ErrCorruptArchive)
	}
	return x.stats, err
}

type extractor struct {
	dst    string
	lim    ExtractLimits
	budget int64 // bytes left to write before the archive counts as too large
	stats  extractStats
}

// localPath checks an entry name and returns where it goes under dst ("" for the root itself).
func (x *extractor) localPath(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: entry with an empty name", ErrUnsafeArchive)
	case strings.ContainsAny(name, "\\\x00"):
		return "", fmt.Errorf("%w: entry %q: backslash or NUL in the name", ErrUnsafeArchive, name)
	case path.IsAbs(name):
		return "", fmt.Errorf("%w: entry %q: absolute path", ErrUnsafeArchive, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("%w: entry %q: path traversal", ErrUnsafeArchive, name)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", nil
	}
	if !filepath.IsLocal(clean) {
		return "", fmt.Errorf("%w: entry %q: not a local path", ErrUnsafeArchive, name)
	}
	return filepath.Join(x.dst, filepath.FromSlash(clean)), nil
}

func (x *extractor) count() error {
	x.stats.Files++
	if x.stats.Files > x.lim.MaxFiles {
		return fmt.Errorf("%w: more than %d entries", ErrArchiveTooLarge, x.lim.MaxFiles)
	}
	return nil
}

func (x *extractor) mkdir(name string) error {
	p, err := x.localPath(name)
	if err != nil || p == "" {
		return err
	}
	if err := x.count(); err != nil {
		return err
	}
	return os.MkdirAll(p, 0o755)
}

func (x *extractor) file(name string, mode fs.FileMode, declared int64, r io.Reader) error {
	p, err := x.localPath(name)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("%w: file entry %q names the root", ErrUnsafeArchive, name)
	}
	if err := x.count(); err != nil {
		return err
	}
	if declared > x.budget {
		return x.tooLarge()
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	perm := fs.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	// O_EXCL: a second entry of the same name is refused rather than silently replacing the first.
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: entry %q appears twice", ErrUnsafeArchive, name)
		}
		return err
	}
	n, err := io.Copy(out, io.LimitReader(r, x.budget+1))
	x.budget -= n
	x.stats.Bytes += n
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrCorruptArchive, name, err)
	}
	if x.budget < 0 {
		return x.tooLarge()
	}
	return nil
}

func (x *extractor) tooLarge() error {
	return fmt.Errorf("%w: unpacks to more than %d bytes (limits: %d bytes, %.0fx the archive size)",
		ErrArchiveTooLarge, x.stats.Bytes, x.lim.MaxBytes, x.lim.MaxRatio)
}

func (x *extractor) zip(r io.ReaderAt, size int64) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("%w: zip: %v", ErrCorruptArchive, err)
	}
	if len(zr.File) > x.lim.MaxFiles {
		return fmt.Errorf("%w: %d entries, more than %d", ErrArchiveTooLarge, len(zr.File), x.lim.MaxFiles)
	}
	for _, zf := range zr.File {
		mode := zf.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: entry %q is a symbolic link", ErrUnsafeArchive, zf.Name)
		case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeIrregular) != 0:
			return fmt.Errorf("%w: entry %q is not a regular file (%s)", ErrUnsafeArchive, zf.Name, mode.Type())
		case mode.IsDir() || strings.HasSuffix(zf.Name, "/"):
			if err := x.mkdir(zf.Name); err != nil {
				return err
			}
		default:
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("%w: entry %q: %v", ErrCorruptArchive, zf.Name, err)
			}
			declared := int64(min(zf.UncompressedSize64, 1<<62))
			err = x.file(zf.Name, mode, declared, rc)
			_ = rc.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (x *extractor) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if x.stats.Files == 0 {
				return fmt.Errorf("%w: tar: no entries", ErrCorruptArchive)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %v", ErrCorruptArchive, err)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tar writers still emit TypeRegA
			if err := x.file(h.Name, fs.FileMode(h.Mode), h.Size, tr); err != nil {
				return err
			}
		case tar.TypeDir:
			if err := x.mkdir(h.Name); err != nil {
				return err
			}
		case tar.TypeXGlobalHeader:
			// PAX defaults for later entries; archive/tar applies what matters.
		case tar.TypeSymlink:
			return fmt.Errorf("%w: entry %q is a symbolic link to %q", ErrUnsafeArchive, h.Name, h.Linkname)
		case tar.TypeLink:
			return fmt.Errorf("%w: entry %q is a hard link to %q", ErrUnsafeArchive, h.Name, h.Linkname)
		case tar.TypeChar, tar.TypeBlock:
			return fmt.Errorf("%w: entry %q is a device", ErrUnsafeArchive, h.Name)
		case tar.TypeFifo:
			return fmt.Errorf("%w: entry %q is a named pipe", ErrUnsafeArchive, h.Name)
		default:
			return fmt.Errorf("%w: entry %q has unsupported type %q", ErrUnsafeArchive, h.Name, h.Typeflag)
		}
	}
}
