package ftpstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

// Log messages the tests count to see how many attempts an operation made.
const (
	msgAttempt = "ftp attempt"
	msgRetry   = "ftp transient failure, retrying"
)

// recorder is a slog handler that keeps every record, so tests can count attempts and check
// what the logs say.
type recorder struct {
	mu      sync.Mutex
	msgs    []string
	text    bytes.Buffer
	waiters map[string]chan struct{}
}

func newRecorder() *recorder { return &recorder{waiters: map[string]chan struct{}{}} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.Write(p)
}

func (r *recorder) add(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
	if ch, ok := r.waiters[msg]; ok {
		close(ch)
		delete(r.waiters, msg)
	}
}

// count returns how many records had the message msg.
func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// logged returns everything logged so far as text.
func (r *recorder) logged() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.String()
}

// next returns a channel closed when the next record with message msg arrives.
func (r *recorder) next(msg string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.waiters[msg]
	if !ok {
		ch = make(chan struct{})
		r.waiters[msg] = ch
	}
	return ch
}

func (r *recorder) logger() *slog.Logger {
	return slog.New(recHandler{r: r, h: slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug})})
}

type recHandler struct {
	r *recorder
	h slog.Handler
}

func (h recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recHandler) Handle(ctx context.Context, rec slog.Record) error {
	err := h.h.Handle(ctx, rec)
	h.r.add(rec.Message)
	return err
}

func (h recHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return recHandler{r: h.r, h: h.h.WithAttrs(a)}
}

func (h recHandler) WithGroup(name string) slog.Handler {
	return recHandler{r: h.r, h: h.h.WithGroup(name)}
}

// needFTP skips in -short mode and returns the server from testenv.
func needFTP(t *testing.T) (addr, user, password string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the FTP server")
	}
	return testenv.FTP(t)
}

// newTestStore returns a store on the test server with quick backoff and a recorder on its log.
func newTestStore(t *testing.T, edit func(*Config)) (*Store, *recorder) {
	t.Helper()
	addr, user, password := needFTP(t)
	rec := newRecorder()
	cfg := Config{
		Addr:     addr,
		User:     user,
		Password: password,
		Timeout:  10 * time.Second,
		Backoff:  10 * time.Millisecond,
		Logger:   rec.logger(),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s, rec
}

// remoteDir returns a fresh directory name on the server, removed with its contents after the test.
func remoteDir(t *testing.T) string {
	t.Helper()
	addr, user, password := needFTP(t)
	dir := "/" + testenv.Unique("ftpstore-test")
	t.Cleanup(func() {
		c, err := ftp.Dial(addr, ftp.DialWithTimeout(10*time.Second))
		if err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
			return
		}
		defer func() { _ = c.Quit() }()
		if err := c.Login(user, password); err != nil {
			t.Errorf("cleanup %s: %v", dir, err)
			return
		}
		if err := c.RemoveDirRecur(dir); err != nil {
			var reply *textproto.Error
			if errors.As(err, &reply) && reply.Code == ftp.StatusFileUnavailable {
				return // the test never created it
			}
			t.Errorf("cleanup %s: %v", dir, err)
		}
	})
	return dir
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// dirNames lists a local directory, failing the test on error.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func hasPartFile(names []string) bool {
	for _, n := range names {
		if strings.Contains(n, ".part-") {
			return true
		}
	}
	return false
}
