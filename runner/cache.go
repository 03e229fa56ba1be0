package runner

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CacheConfig configures NewCache.
type CacheConfig struct {
	// Dir is the cache directory, shared by the runners of a host. Required; created if missing.
	Dir string
	// MaxBytes is the budget of unpacked models; above it the least recently used models that no
	// runner holds are evicted. Default 20GiB; zero means the default.
	MaxBytes int64
	// Limits bound the extraction of one archive (see ExtractLimits for the defaults).
	Limits ExtractLimits
	// Logger receives eviction and wait notices. Default: discard.
	Logger *slog.Logger
	// Clock stamps last-use times and paces lock waits. Default: the system clock.
	Clock Clock
}

// Cache is the model cache: archives are downloaded, verified and unpacked once per content
// (the archive's SHA-256) and shared by every runner of the host.
//
// Layout under Dir:
//
//	models/<sha256>/       the unpacked archive, complete once renamed into place
//	models/<sha256>.json   its manifest (size, files); its mtime is the last use
//	locks/<sha256>.lock    flock: shared while a runner uses the model, exclusive to build or evict it
//	tmp/                   downloads and unpacking in progress
//
// Lock files are never deleted: a deleted lock file would let two processes lock two different
// files of the same name.
type Cache struct {
	dir      string
	maxBytes int64
	limits   ExtractLimits
	log      *slog.Logger
	clock    Clock
}

// Fetcher downloads the archive into the file path; when sha256 is not empty it must verify the
// bytes against it.
type Fetcher func(ctx context.Context, path, sha256 string) error

// Model is an unpacked model in use. Close releases it so that it may be evicted.
type Model struct {
	// Dir is the unpacked archive.
	Dir string
	// SHA256 is the archive's checksum.
	SHA256 string
	// Bytes is the unpacked size.
	Bytes int64
	// Fetched is true when this Open downloaded and unpacked it, false when it was cached.
	Fetched bool
	lock    *os.File
}

// Close releases the model. Safe to call more than once and on nil.
func (m *Model) Close() error {
	if m == nil || m.lock == nil {
		return nil
	}
	err := m.lock.Close() // closing the descriptor releases its flock
	m.lock = nil
	return err
}

type manifest struct {
	SHA256       string    `json:"sha256"`
	Bytes        int64     `json:"bytes"`
	Files        int       `json:"files"`
	ArchiveBytes int64     `json:"archive_bytes"`
	Created      time.Time `json:"created"`
}

// staleTmp is the age after which an orphaned download of unknown content is removed.
const staleTmp = 24 * time.Hour

// NewCache creates the cache directories.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("model cache: Dir is required")
	}
	c := &Cache{
		dir:      cfg.Dir,
		maxBytes: cmp.Or(cfg.MaxBytes, DefaultCacheMaxBytes),
		limits:   cfg.Limits.withDefaults(),
		log:      cfg.Logger,
		clock:    cfg.Clock,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = systemClock{}
	}
	for _, d := range []string{"models", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("model cache: %w", err)
		}
	}
	c.removeStaleDownloads()
	return c, nil
}

func (c *Cache) entryDir(sum string) string     { return filepath.Join(c.dir, "models", sum) }
func (c *Cache) manifestPath(sum string) string { return filepath.Join(c.dir, "models", sum+".json") }
func (c *Cache) lockPath(sum string) string     { return filepath.Join(c.dir, "locks", sum+".lock") }
func (c *Cache) tmpDir() string                 { return filepath.Join(c.dir, "tmp") }

// Open returns the unpacked model of the archive with checksum sum, fetching and unpacking it
// first when the cache lacks it. Runners opening the same model together wait for one of them
// to build it. An empty sum (a stage of the original, which records none) downloads the archive
// every time to learn its checksum, then shares the entry like any other. The model stays
// locked against eviction until Close.
func (c *Cache) Open(ctx context.Context, sum string, fetch Fetcher) (*Model, error) {
	sum = strings.ToLower(sum)
	var downloaded string // an archive fetched before its checksum was known
	if sum == "" {
		p, s, err := c.download(ctx, fetch)
		if err != nil {
			return nil, err
		}
		defer os.Remove(p)
		downloaded, sum = p, s
	} else if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("model cache: %q is not a hex SHA-256", sum)
	}
	return c.open(ctx, sum, fetch, downloaded)
}

func (c *Cache) open(ctx context.Context, sum string, fetch Fetcher, downloaded string) (*Model, error) {
	lf, err := os.OpenFile(c.lockPath(sum), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("model cache: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = lf.Close()
		}
	}()
	start := c.clock.Now()
	logged := false
	rebuilt := 0
	// Poll rather than block, so that ctx ends the wait, and try the shared lock each round: a
	// runner that waited for the builder finds the model complete and needs no exclusive lock.
	for n := 0; ; n++ {
		busy, err := flock(lf, false)
		if err != nil {
			return nil, fmt.Errorf("model cache: lock %s: %w", sum, err)
		}
		if !busy {
			if man, ok := c.complete(sum); ok {
				keep = true
				c.touch(sum)
				if logged {
					c.log.Info("model prepared by another runner", "sha256", sum,
						"waited", c.clock.Now().Sub(start).Round(time.Millisecond))
				}
				return &Model{Dir: c.entryDir(sum), SHA256: sum, Bytes: man.Bytes, lock: lf}, nil
			}
			if err := funlock(lf); err != nil {
				return nil, fmt.Errorf("model cache: unlock: %w", err)
			}
		}
		busy, err = flock(lf, true)
		if err != nil {
			return nil, fmt.Errorf("model cache: lock %s: %w", sum, err)
		}
		if !busy {
			m, err := c.buildLocked(ctx, lf, sum, fetch, downloaded)
			if err != nil || m != nil {
				keep = m != nil
				return m, err
			}
			// Evicted in the moment between the build and the shared lock.
			if rebuilt++; rebuilt >= 3 {
				return nil, fmt.Errorf("model cache: model %s keeps being evicted: raise PERO_CACHE_MAX_BYTES", sum)
			}
			continue
		}
		if !logged && c.clock.Now().Sub(start) >= 2*time.Second {
			logged = true
			c.log.Info("waiting for another runner to prepare the model", "sha256", sum)
		}
		if !sleep(ctx, c.clock, backoff(n, 10*time.Millisecond, 500*time.Millisecond)) {
			return nil, fmt.Errorf("model cache: wait for model %s: %w", sum, context.Cause(ctx))
		}
	}
}

// buildLocked builds the model under the exclusive lock on lf unless it is complete, then
// downgrades to the shared lock. It returns nil, nil when the model vanished meanwhile.
func (c *Cache) buildLocked(ctx context.Context, lf *os.File, sum string, fetch Fetcher, downloaded string) (*Model, error) {
	fetched := false
	if _, ok := c.complete(sum); !ok {
		if err := c.build(ctx, sum, fetch, downloaded); err != nil {
			return nil, err
		}
		fetched = true
	}
	// Downgrade to shared. Linux converts by unlocking first, so an evictor may slip in: check
	// again.
	busy, err := flock(lf, false)
	if err != nil {
		return nil, fmt.Errorf("model cache: lock %s: %w", sum, err)
	}
	man, ok := c.complete(sum)
	if busy || !ok {
		_ = funlock(lf)
		return nil, nil
	}
	c.touch(sum)
	if fetched {
		c.Evict(sum)
	}
	return &Model{Dir: c.entryDir(sum), SHA256: sum, Bytes: man.Bytes, Fetched: fetched, lock: lf}, nil
}

// complete reports whether the model is in place, with its manifest.
func (c *Cache) complete(sum string) (manifest, bool) {
	var man manifest
	b, err := os.ReadFile(c.manifestPath(sum))
	if err != nil || json.Unmarshal(b, &man) != nil || man.SHA256 != sum {
		return man, false
	}
	st, err := os.Stat(c.entryDir(sum))
	return man, err == nil && st.IsDir()
}

// touch records a use of the model for the eviction order.
func (c *Cache) touch(sum string) {
	now := c.clock.Now()
	if err := os.Chtimes(c.manifestPath(sum), now, now); err != nil {
		c.log.Warn("model cache: cannot record last use", "sha256", sum, "err", err)
	}
}

// build fetches, verifies and unpacks the model. The caller holds its exclusive lock, so any
// temporary file of this checksum belongs to a runner that died while building it.
func (c *Cache) build(ctx context.Context, sum string, fetch Fetcher, downloaded string) error {
	c.removeTmp(sum + ".")
	_ = os.Remove(c.manifestPath(sum))
	if err := os.RemoveAll(c.entryDir(sum)); err != nil {
		return fmt.Errorf("model cache: remove partial model %s: %w", sum, err)
	}
	tag := sum + "." + randomHex(6)
	archive := downloaded
	if archive == "" {
		archive = filepath.Join(c.tmpDir(), tag+".archive")
		defer os.Remove(archive)
		if err := fetch(ctx, archive, sum); err != nil {
			return err
		}
		// The fetcher verified the checksum; confirm it read what it promised.
		got, err := fileSHA256(archive)
		if err != nil {
			return fmt.Errorf("model cache: %w", err)
		}
		if got != sum {
			return fmt.Errorf("model cache: %w: archive has sha256 %s, want %s", ErrChecksumMismatch, got, sum)
		}
	}
	ast, err := os.Stat(archive)
	if err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	tmp := filepath.Join(c.tmpDir(), tag+".d")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	stats, err := extractArchive(archive, tmp, c.limits)
	if err != nil {
		return fmt.Errorf("unpack model %s: %w", sum, err)
	}
	if stats.Bytes > c.maxBytes {
		return fmt.Errorf("model cache: %w: model %s unpacks to %d bytes, above the cache budget of %d (PERO_CACHE_MAX_BYTES)",
			ErrArchiveTooLarge, sum, stats.Bytes, c.maxBytes)
	}
	man, err := json.Marshal(manifest{SHA256: sum, Bytes: stats.Bytes, Files: stats.Files,
		ArchiveBytes: ast.Size(), Created: c.clock.Now().UTC()})
	if err != nil {
		return err
	}
	tmpMan := filepath.Join(c.tmpDir(), tag+".json")
	if err := os.WriteFile(tmpMan, man, 0o644); err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	defer os.Remove(tmpMan)
	syncTree(tmp)
	if err := os.Rename(tmp, c.entryDir(sum)); err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	// The manifest goes last: a model without one is incomplete and is rebuilt.
	if err := os.Rename(tmpMan, c.manifestPath(sum)); err != nil {
		return fmt.Errorf("model cache: %w", err)
	}
	syncDir(filepath.Join(c.dir, "models"))
	c.log.Info("model unpacked", "sha256", sum, "bytes", stats.Bytes, "files", stats.Files)
	return nil
}

// ErrChecksumMismatch: the fetched archive does not have the checksum asked for.
var ErrChecksumMismatch = errors.New("model archive checksum mismatch")

// download fetches an archive whose checksum is unknown into tmp and hashes it.
func (c *Cache) download(ctx context.Context, fetch Fetcher) (path, sum string, err error) {
	p := filepath.Join(c.tmpDir(), "dl-"+randomHex(8)+".archive")
	if err := fetch(ctx, p, ""); err != nil {
		_ = os.Remove(p)
		return "", "", err
	}
	s, err := fileSHA256(p)
	if err != nil {
		_ = os.Remove(p)
		return "", "", fmt.Errorf("model cache: %w", err)
	}
	return p, s, nil
}

// Evict removes the least recently used models that no runner holds until the cache fits its
// budget. keep is never evicted. It returns the bytes left.
func (c *Cache) Evict(keep string) int64 {
	type entry struct {
		sum   string
		bytes int64
		used  time.Time
	}
	var entries []entry
	var total int64
	des, err := os.ReadDir(filepath.Join(c.dir, "models"))
	if err != nil {
		c.log.Warn("model cache: cannot list models", "err", err)
		return 0
	}
	for _, de := range des {
		name := de.Name()
		if de.IsDir() {
			if _, err := os.Stat(c.manifestPath(name)); errors.Is(err, fs.ErrNotExist) {
				c.removeOrphan(name)
			}
			continue
		}
		sum, ok := strings.CutSuffix(name, ".json")
		if !ok {
			continue
		}
		man, ok := c.complete(sum)
		if !ok {
			continue
		}
		info, err := de.Info()
		if err != nil {
			continue
		}
		entries = append(entries, entry{sum: sum, bytes: man.Bytes, used: info.ModTime()})
		total += man.Bytes
	}
	if total <= c.maxBytes {
		return total
	}
	slices.SortFunc(entries, func(a, b entry) int { return a.used.Compare(b.used) })
	for _, e := range entries {
		if total <= c.maxBytes {
			break
		}
		if e.sum == keep {
			continue
		}
		if c.remove(e.sum) {
			total -= e.bytes
			c.log.Info("model evicted", "sha256", e.sum, "bytes", e.bytes, "last_used", e.used.UTC())
		}
	}
	if total > c.maxBytes {
		c.log.Warn("model cache above its budget: the rest is in use", "bytes", total, "budget", c.maxBytes)
	}
	return total
}

// remove deletes a model if no runner holds it.
func (c *Cache) remove(sum string) bool {
	lf, err := os.OpenFile(c.lockPath(sum), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false
	}
	defer lf.Close()
	busy, err := flock(lf, true)
	if err != nil || busy {
		return false
	}
	if err := os.Remove(c.manifestPath(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	gone := filepath.Join(c.tmpDir(), sum+"."+randomHex(6)+".evicted")
	if err := os.Rename(c.entryDir(sum), gone); err != nil {
		_ = os.RemoveAll(c.entryDir(sum))
		return true
	}
	_ = os.RemoveAll(gone)
	return true
}

// removeOrphan deletes a model directory left without its manifest by a runner that died
// between the two renames, when nobody holds its lock.
func (c *Cache) removeOrphan(sum string) {
	if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return
	}
	lf, err := os.OpenFile(c.lockPath(sum), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer lf.Close()
	if busy, err := flock(lf, true); err != nil || busy {
		return
	}
	if _, err := os.Stat(c.manifestPath(sum)); errors.Is(err, fs.ErrNotExist) {
		_ = os.RemoveAll(c.entryDir(sum))
	}
}

// removeTmp deletes the temporary files whose names start with prefix.
func (c *Cache) removeTmp(prefix string) {
	des, _ := os.ReadDir(c.tmpDir())
	for _, de := range des {
		if strings.HasPrefix(de.Name(), prefix) {
			_ = os.RemoveAll(filepath.Join(c.tmpDir(), de.Name()))
		}
	}
}

// removeStaleDownloads deletes downloads of unknown content that a dead runner left behind.
func (c *Cache) removeStaleDownloads() {
	des, _ := os.ReadDir(c.tmpDir())
	for _, de := range des {
		if !strings.HasPrefix(de.Name(), "dl-") {
			continue
		}
		if info, err := de.Info(); err == nil && c.clock.Now().Sub(info.ModTime()) > staleTmp {
			_ = os.RemoveAll(filepath.Join(c.tmpDir(), de.Name()))
		}
	}
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncTree flushes the unpacked files, so a crash after the rename cannot leave a complete-looking
// model with empty files. Errors are ignored: the rename is what makes the model visible.
func syncTree(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if f, err := os.Open(p); err == nil {
			_ = f.Sync()
			_ = f.Close()
		}
		return nil
	})
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		_ = f.Sync()
		_ = f.Close()
	}
}
