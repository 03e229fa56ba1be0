package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileFetcher "downloads" data, counting calls, verifying like ftpstore does.
type fileFetcher struct {
	data  []byte
	calls atomic.Int32
	delay time.Duration
	err   error
}

func (f *fileFetcher) fetch(ctx context.Context, path, want string) error {
	f.calls.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.err != nil {
		return f.err
	}
	return os.WriteFile(path, f.data, 0o644)
}

func newTestCache(t *testing.T, dir string, budget int64) *Cache {
	t.Helper()
	c, err := NewCache(CacheConfig{Dir: dir, MaxBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCacheOpenOnceThenReuse(t *testing.T) {
	dir := t.TempDir()
	data := tarGz(t, entry{name: "m/weights.bin", body: "0123456789"})
	sum := sumOf(data)
	f := &fileFetcher{data: data}
	c := newTestCache(t, dir, 0)
	m, err := c.Open(t.Context(), sum, f.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Fetched || m.SHA256 != sum || m.Bytes != 10 || m.Dir != filepath.Join(dir, "models", sum) {
		t.Errorf("model %+v", m)
	}
	if b, err := os.ReadFile(filepath.Join(m.Dir, "m", "weights.bin")); err != nil || string(b) != "0123456789" {
		t.Errorf("weights = %q, %v", b, err)
	}
	m2, err := newTestCache(t, dir, 0).Open(t.Context(), strings.ToUpper(sum), f.fetch)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Fetched || f.calls.Load() != 1 {
		t.Errorf("second open fetched again (calls %d)", f.calls.Load())
	}
	_ = m.Close()
	_ = m2.Close()
	_ = m2.Close()
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp not clean: %v", tmp)
	}
}

func TestCacheConcurrentOpenSharesOneBuild(t *testing.T) {
	dir := t.TempDir()
	data := zipOf(t, entry{name: "a.txt", body: "hello"})
	sum := sumOf(data)
	f := &fileFetcher{data: data, delay: 300 * time.Millisecond}
	var wg sync.WaitGroup
	models := make([]*Model, 4)
	errs := make([]error, 4)
	for i := range models {
		wg.Go(func() {
			// Separate Cache values stand for separate runners: flock works per open file.
			models[i], errs[i] = newTestCache(t, dir, 0).Open(t.Context(), sum, f.fetch)
		})
	}
	wg.Wait()
	built := 0
	for i, m := range models {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if m.Fetched {
			built++
		}
		defer m.Close()
	}
	if f.calls.Load() != 1 || built != 1 {
		t.Errorf("fetched %d times, built by %d openers; want 1 and 1", f.calls.Load(), built)
	}
}

func TestCacheRejectsWrongChecksum(t *testing.T) {
	dir := t.TempDir()
	data := tarGz(t, entry{name: "a", body: "a"})
	f := &fileFetcher{data: []byte("tampered")}
	c := newTestCache(t, dir, 0)
	_, err := c.Open(t.Context(), sumOf(data), f.fetch)
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("err = %v, want ErrChecksumMismatch", err)
	}
	if _, ok := c.complete(sumOf(data)); ok {
		t.Error("a model was installed")
	}
	if _, err := c.Open(t.Context(), "not-hex", f.fetch); err == nil {
		t.Error("accepted a bad checksum")
	}
}

func TestCacheCorruptArchiveLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	data := []byte("not an archive")
	c := newTestCache(t, dir, 0)
	_, err := c.Open(t.Context(), sumOf(data), (&fileFetcher{data: data}).fetch)
	if !errors.Is(err, ErrCorruptArchive) {
		t.Fatalf("err = %v", err)
	}
	if des, _ := os.ReadDir(filepath.Join(dir, "models")); len(des) != 0 {
		t.Errorf("models: %v", des)
	}
	if des, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(des) != 0 {
		t.Errorf("tmp: %v", des)
	}
}

func TestCacheFetchErrorPropagates(t *testing.T) {
	boom := errors.New("server gone")
	_, err := newTestCache(t, t.TempDir(), 0).Open(t.Context(), sumOf([]byte("x")), (&fileFetcher{err: boom}).fetch)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

func TestCacheUnknownChecksum(t *testing.T) {
	dir := t.TempDir()
	data := tarGz(t, entry{name: "a", body: "abc"})
	f := &fileFetcher{data: data}
	c := newTestCache(t, dir, 0)
	m, err := c.Open(t.Context(), "", f.fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.SHA256 != sumOf(data) || !m.Fetched {
		t.Errorf("model %+v", m)
	}
	m2, err := c.Open(t.Context(), "", f.fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Fetched || f.calls.Load() != 2 {
		t.Errorf("want a download per open (2, got %d) and one build", f.calls.Load())
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	c, err := NewCache(CacheConfig{Dir: dir, MaxBytes: 250, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	open := func(name string) *Model {
		t.Helper()
		data := tarGz(t, entry{name: name, body: strings.Repeat(name, 100/len(name))})
		m, err := c.Open(t.Context(), sumOf(data), (&fileFetcher{data: data}).fetch)
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
		return m
	}
	a := open("a")
	b := open("b")
	_ = a.Close()
	_ = b.Close()
	// Use a again: b is now the least recently used.
	a = open("a")
	_ = a.Close()
	c3 := open("c") // 300 bytes > 250: evict b
	defer c3.Close()
	if _, ok := c.complete(a.SHA256); !ok {
		t.Error("a (recently used) was evicted")
	}
	if _, ok := c.complete(b.SHA256); ok {
		t.Error("b (least recently used) was kept")
	}
	if _, err := os.Stat(b.Dir); !os.IsNotExist(err) {
		t.Errorf("b's directory is still there: %v", err)
	}

	// Opening d (300 bytes again) evicts a, the only model nobody holds.
	d := open("d")
	defer d.Close()
	if _, ok := c.complete(a.SHA256); ok {
		t.Error("a was kept although nobody holds it")
	}
	// Held models stay even above the budget.
	c.maxBytes = 50
	if left := c.Evict(""); left != 200 {
		t.Errorf("left %d bytes, want the 200 in use", left)
	}
	if _, ok := c.complete(c3.SHA256); !ok {
		t.Error("a model in use was evicted")
	}
}

func TestCacheRebuildsAfterCrash(t *testing.T) {
	dir := t.TempDir()
	data := tarGz(t, entry{name: "a", body: "abc"})
	sum := sumOf(data)
	c := newTestCache(t, dir, 0)
	// What a runner killed mid-build leaves: a partial download, a half-unpacked tree, and a
	// model directory renamed into place without its manifest.
	for _, p := range []string{"tmp/" + sum + ".dead.archive", "tmp/" + sum + ".dead.d/x", "models/" + sum + "/partial"} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := c.Open(t.Context(), sum, (&fileFetcher{data: data}).fetch)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Fetched {
		t.Error("the incomplete model was taken as complete")
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "partial")); !os.IsNotExist(err) {
		t.Error("leftover of the crashed build in the model")
	}
	if des, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(des) != 0 {
		t.Errorf("tmp: %v", des)
	}
}

func TestCacheLockWaitHonoursContext(t *testing.T) {
	dir := t.TempDir()
	data := tarGz(t, entry{name: "a", body: "abc"})
	sum := sumOf(data)
	c := newTestCache(t, dir, 0)
	// Hold the exclusive lock as a builder would.
	lf, err := os.OpenFile(c.lockPath(sum), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if busy, err := flock(lf, true); busy || err != nil {
		t.Fatal(busy, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = newTestCache(t, dir, 0).Open(ctx, sum, (&fileFetcher{data: data}).fetch)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}
