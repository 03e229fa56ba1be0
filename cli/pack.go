package cli

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// packDir writes dir as a .tar.gz in the temporary directory and returns its path. The
// archive is reproducible (sorted entries, fixed times and owners), so packing the same files
// again gives the same sha256 and does not make a new model version.
func packDir(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link: copy the file in instead", p)
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		} else if !d.IsDir() {
			return fmt.Errorf("%s is not a regular file", p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("%s holds no files", dir)
	}
	sort.Strings(files)
	out, err := os.CreateTemp("", "pero-model-*.tar.gz")
	if err != nil {
		return "", err
	}
	fail := func(err error) (string, error) {
		out.Close()
		os.Remove(out.Name())
		return "", err
	}
	zw, err := gzip.NewWriterLevel(out, gzip.BestSpeed)
	if err != nil {
		return fail(err)
	}
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0).UTC()
	for _, p := range files {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return fail(err)
		}
		info, err := os.Stat(p)
		if err != nil {
			return fail(err)
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: info.Size(), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fail(err)
		}
		f, err := os.Open(p)
		if err != nil {
			return fail(err)
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fail(err)
		}
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}
	if err := zw.Close(); err != nil {
		return fail(err)
	}
	return out.Name(), out.Close()
}
