package ftpstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/backoff"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestNewValidates(t *testing.T) {
	ok := Config{Addr: "127.0.0.1:21", User: "u", Password: "p"}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no addr", func(c *Config) { c.Addr = "" }, "Addr"},
		{"addr without port", func(c *Config) { c.Addr = "ftp.example" }, "Addr"},
		{"no user", func(c *Config) { c.User = "" }, "User"},
		{"user with newline", func(c *Config) { c.User = "u\r\nDELE x" }, "User"},
		{"password with newline", func(c *Config) { c.Password = "p\nx" }, "Password"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
		{"retries below -1", func(c *Config) { c.Retries = -2 }, "Retries"},
		{"negative backoff", func(c *Config) { c.Backoff = -time.Second }, "Backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("New = %v, want an error naming %s", err, tt.field)
			}
		})
	}

	s, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Timeout != defaultTimeout || s.cfg.Backoff != defaultBackoff || s.retries != defaultRetries {
		t.Errorf("defaults: timeout %v backoff %v retries %d", s.cfg.Timeout, s.cfg.Backoff, s.retries)
	}
	noRetry := ok
	noRetry.Retries = -1
	if s, _ := New(noRetry); s.retries != 0 {
		t.Errorf("Retries -1: %d retries, want 0", s.retries)
	}
}

func TestConfigNeverPrintsPassword(t *testing.T) {
	cfg := Config{Addr: "127.0.0.1:21", User: "pero", Password: "s3cret-pass"}
	rec := newRecorder()
	rec.logger().Info("config", "cfg", cfg, "ptr", &cfg)
	for _, s := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg), rec.logged(),
	} {
		if strings.Contains(s, cfg.Password) {
			t.Errorf("printed the password: %s", s)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		sentinel  error
		transient bool
	}{
		{"530", &textproto.Error{Code: 530, Msg: "Login authentication failed"}, ErrAuth, false},
		{"550", &textproto.Error{Code: 550, Msg: "No such file"}, ErrNotFound, false},
		{"421", &textproto.Error{Code: 421, Msg: "Too many connections"}, nil, true},
		{"425", &textproto.Error{Code: 425, Msg: "Can't open data connection"}, nil, true},
		{"553", &textproto.Error{Code: 553, Msg: "Can't open that file"}, nil, false},
		{"eof", fmt.Errorf("login: %w", io.EOF), nil, true},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", errors.New("refused"))}, nil, true},
		{"incomplete", fmt.Errorf("%w: 1 of 2 bytes", errIncomplete), nil, true},
		{"permanent eof", permanent(io.EOF), nil, false},
		{"permanent 421", permanent(&textproto.Error{Code: 421}), nil, false},
		{"permanent 550", permanent(&textproto.Error{Code: 550}), ErrNotFound, false},
		{"checksum", permanent(fmt.Errorf("%w: got a, want b", ErrChecksum)), ErrChecksum, false},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, nil, false},
		{"other", errors.New("invalid EPSV response format"), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err, transient := classify(tt.err)
			if transient != tt.transient {
				t.Errorf("transient = %v, want %v", transient, tt.transient)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("%v is not %v", err, tt.sentinel)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v lost the cause %v", err, tt.err)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := backoff.Jitter(time.Second, nil); d < 500*time.Millisecond || d >= time.Second {
			t.Fatalf("jitter(1s) = %v, want [500ms, 1s)", d)
		}
	}
}

func TestUploadDownloadRoundTrip(t *testing.T) {
	s, rec := newTestStore(t, nil)
	ctx := testCtx(t)
	dir := remoteDir(t)
	remote := dir + "/stage/v1/model.zip"
	data := randomBytes(t, 3<<20+17)

	gotSum, n, err := s.Upload(ctx, remote, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if gotSum != sum(data) || n != int64(len(data)) {
		t.Fatalf("Upload = %s, %d; want %s, %d", gotSum, n, sum(data), len(data))
	}
	if size, err := s.Stat(ctx, remote); err != nil || size != n {
		t.Fatalf("Stat = %d, %v; want %d", size, err, n)
	}
	if names, err := s.List(ctx, dir+"/stage/v1"); err != nil || !slices.Equal(names, []string{"model.zip"}) {
		t.Fatalf("List = %q, %v; want just model.zip", names, err)
	}
	if names, err := s.List(ctx, dir); err != nil || !slices.Equal(names, []string{"stage"}) {
		t.Fatalf("List(dir) = %q, %v; want [stage]", names, err)
	}

	local := filepath.Join(t.TempDir(), "cache", "model.zip")
	got, err := s.DownloadFile(ctx, remote, local, strings.ToUpper(gotSum))
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("DownloadFile = %d bytes, want %d", got, n)
	}
	if b, err := os.ReadFile(local); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("downloaded file differs (err %v)", err)
	}
	if names := dirNames(t, filepath.Dir(local)); !slices.Equal(names, []string{"model.zip"}) {
		t.Errorf("local directory holds %q, want just model.zip", names)
	}

	// A new version replaces the old one in place, through UploadFile this time.
	data2 := randomBytes(t, 1<<20)
	src := filepath.Join(t.TempDir(), "model2.zip")
	if err := os.WriteFile(src, data2, 0o600); err != nil {
		t.Fatal(err)
	}
	sum2, _, err := s.UploadFile(ctx, remote, src)
	if err != nil {
		t.Fatal(err)
	}
	if sum2 != sum(data2) {
		t.Fatalf("UploadFile sum %s, want %s", sum2, sum(data2))
	}
	if _, err := s.DownloadFile(ctx, remote, local, sum2); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(local); !bytes.Equal(b, data2) {
		t.Fatal("second download does not hold the second upload")
	}

	// Empty files travel too.
	empty := dir + "/empty"
	if es, en, err := s.Upload(ctx, empty, strings.NewReader("")); err != nil || en != 0 || es != sum(nil) {
		t.Fatalf("Upload(empty) = %s, %d, %v", es, en, err)
	}
	if n, err := s.DownloadFile(ctx, empty, filepath.Join(t.TempDir(), "e"), sum(nil)); err != nil || n != 0 {
		t.Fatalf("DownloadFile(empty) = %d, %v", n, err)
	}

	if err := s.Delete(ctx, empty); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, empty); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if rec.count(msgRetry) != 0 {
		t.Errorf("retried on a healthy server:\n%s", rec.logged())
	}
}

func TestDownloadChecksumMismatch(t *testing.T) {
	s, rec := newTestStore(t, nil)
	ctx := testCtx(t)
	remote := remoteDir(t) + "/model.zip"
	data := randomBytes(t, 64<<10)
	if _, _, err := s.Upload(ctx, remote, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	want := sum([]byte("another archive"))
	localDir := t.TempDir()
	local := filepath.Join(localDir, "model.zip")
	before := rec.count(msgAttempt)

	_, err := s.DownloadFile(ctx, remote, local, want)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("DownloadFile = %v, want ErrChecksum", err)
	}
	for _, h := range []string{want, sum(data), remote} {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("error %q does not name %s", err, h)
		}
	}
	if _, err := os.Stat(local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("localPath exists after a checksum mismatch (%v)", err)
	}
	if names := dirNames(t, localDir); len(names) != 0 {
		t.Errorf("left files behind: %q", names)
	}
	if n := rec.count(msgAttempt) - before; n != 1 {
		t.Errorf("%d attempts, want 1 (a checksum mismatch is not retried)", n)
	}

	// A malformed expected hash is refused before any transfer.
	if _, err := s.DownloadFile(ctx, remote, local, "abc"); err == nil || errors.Is(err, ErrChecksum) {
		t.Errorf("DownloadFile with a malformed hash = %v", err)
	}
}

func TestMissingFileIsNotRetried(t *testing.T) {
	s, rec := newTestStore(t, func(c *Config) { c.Backoff = time.Hour }) // a retry would hang the test
	ctx := testCtx(t)
	dir := remoteDir(t)
	localDir := t.TempDir()

	_, err := s.DownloadFile(ctx, dir+"/nope.zip", filepath.Join(localDir, "nope.zip"), "")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("DownloadFile = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "nope.zip") || !strings.Contains(err.Error(), s.cfg.Addr) {
		t.Errorf("error %q does not name the file and the server", err)
	}
	if n := rec.count(msgAttempt); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if rec.count(msgRetry) != 0 {
		t.Errorf("logged a retry:\n%s", rec.logged())
	}
	if names := dirNames(t, localDir); len(names) != 0 {
		t.Errorf("left files behind: %q", names)
	}

	if _, err := s.Stat(ctx, dir+"/nope.zip"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, dir+"/nope.zip"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete = %v, want ErrNotFound", err)
	}
	if _, err := s.List(ctx, dir+"/nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("List = %v, want ErrNotFound", err)
	}
	if n := rec.count(msgAttempt); n != 4 {
		t.Errorf("%d attempts for 4 operations", n)
	}
}

func TestWrongPassword(t *testing.T) {
	password := testenv.Unique("wrong-password")
	s, rec := newTestStore(t, func(c *Config) {
		c.Password = password
		c.Backoff = time.Hour
	})
	ctx := testCtx(t)
	_, err := s.DownloadFile(ctx, "/model.zip", filepath.Join(t.TempDir(), "m"), "")
	if !errors.Is(err, ErrAuth) {
		t.Fatalf("DownloadFile = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error shows the password: %v", err)
	}
	if !strings.Contains(err.Error(), s.cfg.User) || !strings.Contains(err.Error(), s.cfg.Addr) {
		t.Errorf("error %q does not name the user and server", err)
	}
	if n := rec.count(msgAttempt); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if strings.Contains(rec.logged(), password) {
		t.Errorf("logs show the password:\n%s", rec.logged())
	}
}

func testCA(t *testing.T) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(testenv.TLSDir(t), "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in ca.crt")
	}
	return pool
}

func TestExplicitTLS(t *testing.T) {
	needFTP(t)
	pool := testCA(t)
	var handshakes atomic.Int32
	s, rec := newTestStore(t, func(c *Config) {
		c.TLS = &tls.Config{
			RootCAs:    pool,
			ServerName: "localhost",
			MinVersion: tls.VersionTLS12,
			VerifyConnection: func(tls.ConnectionState) error {
				handshakes.Add(1)
				return nil
			},
		}
	})
	ctx := testCtx(t)
	remote := remoteDir(t) + "/tls/model.zip"
	data := randomBytes(t, 1<<20)
	gotSum, _, err := s.Upload(ctx, remote, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if h := handshakes.Load(); h < 2 {
		t.Errorf("%d TLS handshakes for an upload, want the control and the data connection", h)
	}
	local := filepath.Join(t.TempDir(), "model.zip")
	if _, err := s.DownloadFile(ctx, remote, local, gotSum); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(local); !bytes.Equal(b, data) {
		t.Fatal("TLS download differs from the upload")
	}
	if rec.count(msgRetry) != 0 {
		t.Errorf("retried:\n%s", rec.logged())
	}

	t.Run("server name from Addr", func(t *testing.T) {
		s, _ := newTestStore(t, func(c *Config) { c.TLS = &tls.Config{RootCAs: pool} })
		if _, err := s.Stat(ctx, remote); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		s, rec := newTestStore(t, func(c *Config) {
			c.TLS = &tls.Config{RootCAs: otherCA(t), ServerName: "localhost"}
			c.Backoff = time.Hour
		})
		_, err := s.DownloadFile(ctx, remote, filepath.Join(t.TempDir(), "m"), "")
		var certErr *tls.CertificateVerificationError
		if !errors.As(err, &certErr) {
			t.Fatalf("DownloadFile = %v, want a certificate verification error", err)
		}
		if !strings.Contains(err.Error(), "certificate") || !strings.Contains(err.Error(), "Config.TLS") ||
			errors.Is(err, ErrAuth) {
			t.Errorf("unclear error: %v", err)
		}
		if n := rec.count(msgAttempt); n != 1 {
			t.Errorf("%d attempts, want 1 (a certificate does not get better)", n)
		}
	})
}

// otherCA returns a pool holding a fresh CA that signed nothing the server has.
func otherCA(t *testing.T) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "some other CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

func TestUnreachableRetriesThenFails(t *testing.T) {
	rec := newRecorder()
	const password = "unreachable-password"
	s, err := New(Config{Addr: "127.0.0.1:1", User: "pero", Password: password, Retries: 3,
		Backoff: 100 * time.Millisecond, Logger: rec.logger()})
	if err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	s.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	_, err = s.DownloadFile(testCtx(t), "/model.zip", filepath.Join(t.TempDir(), "m"), "")
	if err == nil {
		t.Fatal("DownloadFile from a closed port succeeded")
	}
	for _, want := range []string{"127.0.0.1:1", "connection refused", "4 attempts"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), password) || strings.Contains(rec.logged(), password) {
		t.Error("the password was printed")
	}
	if n := rec.count(msgAttempt); n != 4 {
		t.Errorf("%d attempts, want 4", n)
	}
	if len(waits) != 3 {
		t.Fatalf("waited %d times, want 3", len(waits))
	}
	for i, d := range waits {
		base := 100 * time.Millisecond << i
		if d < base/2 || d >= base {
			t.Errorf("wait %d = %v, want [%v, %v)", i, d, base/2, base)
		}
	}

	t.Run("bounded by ctx", func(t *testing.T) {
		s, err := New(Config{Addr: "127.0.0.1:1", User: "pero", Retries: 1000, Backoff: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err = s.Stat(ctx, "/model.zip")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stat = %v, want context.DeadlineExceeded", err)
		}
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error %q hides the last failure", err)
		}
	})
}

// cancelDuring runs op, cancels its context once started is closed, and fails unless op
// returns context.Canceled within 5s of the cancel.
func cancelDuring(t *testing.T, started <-chan struct{}, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("operation ended before it was cancelled: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("operation did not start")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("operation still running 5s after the cancel")
		<-done
	}
}

func TestCancel(t *testing.T) {
	t.Run("during backoff", func(t *testing.T) {
		rec := newRecorder()
		s, err := New(Config{Addr: "127.0.0.1:1", User: "pero", Backoff: time.Hour, Logger: rec.logger()})
		if err != nil {
			t.Fatal(err)
		}
		cancelDuring(t, rec.next(msgRetry), func(ctx context.Context) error {
			_, err := s.Stat(ctx, "/model.zip")
			return err
		})
	})

	t.Run("server that never answers", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan net.Conn, 1)
		var wg sync.WaitGroup
		wg.Go(func() {
			if c, err := ln.Accept(); err == nil {
				accepted <- c
			}
		})
		t.Cleanup(func() {
			_ = ln.Close()
			wg.Wait()
			select {
			case c := <-accepted:
				_ = c.Close()
			default:
			}
		})
		s, err := New(Config{Addr: ln.Addr().String(), User: "pero", Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{})
		go func() {
			c := <-accepted
			accepted <- c // keep it for the cleanup
			close(started)
		}()
		cancelDuring(t, started, func(ctx context.Context) error {
			_, err := s.DownloadFile(ctx, "/model.zip", filepath.Join(t.TempDir(), "m"), "")
			return err
		})
	})

	t.Run("during a transfer", func(t *testing.T) {
		s, _ := newTestStore(t, nil)
		remote := remoteDir(t) + "/endless.zip"
		src := &endless{after: 1 << 20, reached: make(chan struct{})}
		cancelDuring(t, src.reached, func(ctx context.Context) error {
			_, _, err := s.Upload(ctx, remote, src)
			return err
		})
		if _, err := s.Stat(testCtx(t), remote); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stat after a cancelled upload = %v, want ErrNotFound", err)
		}
	})
}

// endless yields zeros forever and closes reached once after bytes have been read.
type endless struct {
	n       int64
	after   int64
	reached chan struct{}
	once    sync.Once
}

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += int64(len(p))
	if e.n >= e.after {
		e.once.Do(func() { close(e.reached) })
	}
	return len(p), nil
}

func TestConcurrentDownloads(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	remote := remoteDir(t) + "/model.zip"
	data := randomBytes(t, 2<<20)
	want, _, err := s.Upload(ctx, remote, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.DownloadFile(ctx, remote, filepath.Join(local, fmt.Sprintf("copy%d", i), "model.zip"), want)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("download %d: %v", i, err)
			continue
		}
		b, err := os.ReadFile(filepath.Join(local, fmt.Sprintf("copy%d", i), "model.zip"))
		if err != nil || !bytes.Equal(b, data) {
			t.Errorf("copy %d differs (err %v)", i, err)
		}
	}
}

// slowReader hands out its first bytes, then tells the test (started) and holds the rest back
// until released.
type slowReader struct {
	first, rest []byte
	started     chan struct{}
	release     chan struct{}
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	if r.started != nil {
		close(r.started)
		r.started = nil
		<-r.release
	}
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

func TestPartialUploadIsNeverVisible(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	dir := remoteDir(t)
	remote := dir + "/model.zip"
	data := randomBytes(t, 512<<10)
	src := &slowReader{first: data[:4096], rest: data[4096:], started: make(chan struct{}), release: make(chan struct{})}
	started := src.started
	var once sync.Once
	release := func() { once.Do(func() { close(src.release) }) }
	defer release()

	type result struct {
		sum string
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, n, err := s.Upload(ctx, remote, src)
		done <- result{sum, n, err}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("Upload ended early: %v", r.err)
	}

	// The transfer is open and holds the first chunk; the target must not exist yet.
	if _, err := s.Stat(ctx, remote); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat during the upload = %v, want ErrNotFound", err)
	}
	names, err := s.List(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, "model.zip") || !hasPartFile(names) {
		t.Errorf("during the upload the directory holds %q, want only a .part- file", names)
	}

	release()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.sum != sum(data) || r.n != int64(len(data)) {
		t.Errorf("Upload = %s, %d; want %s, %d", r.sum, r.n, sum(data), len(data))
	}
	if size, err := s.Stat(ctx, remote); err != nil || size != int64(len(data)) {
		t.Errorf("Stat after the upload = %d, %v", size, err)
	}
	if names, err := s.List(ctx, dir); err != nil || !slices.Equal(names, []string{"model.zip"}) {
		t.Errorf("after the upload the directory holds %q (%v), want just model.zip", names, err)
	}
}

func TestUploadSourceErrorIsNotRetried(t *testing.T) {
	s, rec := newTestStore(t, func(c *Config) { c.Backoff = time.Hour })
	ctx := testCtx(t)
	dir := remoteDir(t)
	boom := errors.New("disk on fire")
	src := io.MultiReader(bytes.NewReader(randomBytes(t, 100<<10)), iotestErrReader{boom})
	_, _, err := s.Upload(ctx, dir+"/model.zip", src)
	if !errors.Is(err, boom) {
		t.Fatalf("Upload = %v, want the reader's error", err)
	}
	if n := rec.count(msgAttempt); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if names, err := s.List(ctx, dir); err != nil || len(names) != 0 {
		t.Errorf("left %q (%v) on the server, want nothing", names, err)
	}
	if _, _, err := s.UploadFile(ctx, dir+"/x", filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UploadFile of a missing file = %v, want os.ErrNotExist", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// flakyProxy forwards TCP connections to target, except that it hangs up on the first drop
// ones at once, like a server restarting.
func flakyProxy(t *testing.T, target string, drop int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.(*net.TCPConn).CloseWrite()
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if i < drop {
				_ = c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Go(func() { pipe(u, c) })
			wg.Go(func() { pipe(c, u) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestTransientFailureIsRetried(t *testing.T) {
	s, _ := newTestStore(t, nil)
	ctx := testCtx(t)
	remote := remoteDir(t) + "/model.zip"
	data := randomBytes(t, 256<<10)
	want, _, err := s.Upload(ctx, remote, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}

	flaky, rec := newTestStore(t, func(c *Config) { c.Addr = flakyProxy(t, c.Addr, 2) })
	local := filepath.Join(t.TempDir(), "model.zip")
	if _, err := flaky.DownloadFile(ctx, remote, local, want); err != nil {
		t.Fatalf("DownloadFile through a server that hangs up twice: %v", err)
	}
	if b, _ := os.ReadFile(local); !bytes.Equal(b, data) {
		t.Fatal("download differs")
	}
	if a, r := rec.count(msgAttempt), rec.count(msgRetry); a != 3 || r != 2 {
		t.Errorf("%d attempts and %d retries, want 3 and 2", a, r)
	}
}
