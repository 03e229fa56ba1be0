package ftpstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pero-worker/pero-worker/internal/backoff"

	"github.com/jlaffaye/ftp"
)

// Sentinels for errors.Is; the errors that carry them also say what was asked of which server.
var (
	// ErrNotFound: the remote file or directory does not exist (FTP reply 550). Not retried.
	ErrNotFound = errors.New("not found on the ftp server")
	// ErrChecksum: the downloaded bytes do not hash to the expected SHA-256. Not retried.
	ErrChecksum = errors.New("sha256 mismatch")
	// ErrAuth: the server refused the user or password (FTP reply 530). Not retried.
	ErrAuth = errors.New("ftp login refused")
)

const (
	defaultTimeout = 30 * time.Second
	defaultRetries = 4
	defaultBackoff = 500 * time.Millisecond
	// maxBackoff caps the doubling so a long retry series still probes the server now and then.
	maxBackoff = 30 * time.Second
)

// Config says which FTP server to use and how patiently.
type Config struct {
	// Addr is the server as host:port. Required.
	Addr string
	// User is the login name. Required.
	User string
	// Password is never printed: errors and logs show the address and user only. Empty sends
	// an empty password.
	Password string
	// TLS, when non-nil, turns on explicit TLS (AUTH TLS) for the control and data connections.
	// An empty ServerName is filled with the host of Addr. Nil means plain FTP.
	TLS *tls.Config
	// Timeout bounds dialing and every read or write on a connection (an idle timeout, so a
	// large transfer that keeps moving never times out). Zero means 30s.
	Timeout time.Duration
	// Retries is how many times a transient failure (refused or dropped connection, timeout,
	// 4xx reply) is retried after the first attempt. Zero means 4; -1 means no retries.
	Retries int
	// Backoff is the wait before the first retry, doubled for each further retry (up to 30s)
	// with jitter; the waits end early when the context is done. Zero means 500ms.
	Backoff time.Duration
	// Logger receives one line per failed attempt that is retried and debug lines per attempt.
	// Nil discards.
	Logger *slog.Logger
}

// String shows the server and user, never the password.
func (c Config) String() string { return "ftp://" + c.User + "@" + c.Addr }

// GoString keeps %#v from printing the password.
func (c Config) GoString() string { return "ftpstore.Config{" + c.String() + "}" }

// LogValue keeps slog from printing the password.
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Store uploads, downloads and lists files on one FTP server. It holds no connection between
// calls and is safe for concurrent use.
type Store struct {
	cfg     Config
	tls     *tls.Config
	where   string // ftp://user@host:port, for errors and logs
	retries int
	log     *slog.Logger
	// sleep waits between attempts; tests replace it to observe the backoff.
	sleep func(ctx context.Context, d time.Duration) error
}

// New checks cfg and fills its defaults. It does not connect: every operation opens its own
// connection and closes it before returning.
func New(cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		return nil, errors.New("ftpstore: Addr is required")
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("ftpstore: Addr %q is not host:port: %w", cfg.Addr, err)
	}
	if cfg.User == "" {
		return nil, errors.New("ftpstore: User is required")
	}
	if strings.ContainsAny(cfg.User, "\r\n") {
		return nil, errors.New("ftpstore: User contains a line break")
	}
	if strings.ContainsAny(cfg.Password, "\r\n") {
		return nil, errors.New("ftpstore: Password contains a line break")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("ftpstore: Timeout %v is negative", cfg.Timeout)
	}
	if cfg.Retries < -1 {
		return nil, fmt.Errorf("ftpstore: Retries %d is below -1 (-1 means no retries)", cfg.Retries)
	}
	if cfg.Backoff < 0 {
		return nil, fmt.Errorf("ftpstore: Backoff %v is negative", cfg.Backoff)
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, defaultTimeout)
	cfg.Backoff = cmp.Or(cfg.Backoff, defaultBackoff)
	retries := cmp.Or(cfg.Retries, defaultRetries)
	if retries < 0 {
		retries = 0
	}
	s := &Store{cfg: cfg, where: cfg.String(), retries: retries, sleep: backoff.Sleep}
	if cfg.TLS != nil {
		s.tls = cfg.TLS.Clone()
		if s.tls.ServerName == "" {
			s.tls.ServerName = host
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.log = logger.With("component", "ftpstore", "server", s.where)
	return s, nil
}

// Upload streams r to remotePath, creating the parent directories. The bytes go to
// "<remotePath>.part-<random>" first and are renamed over remotePath once complete, so readers
// never see a partial file. It returns the SHA-256 (hex) and the size of what was stored.
// A failure is retried only while nothing has been read from r yet; use UploadFile to retry
// whole transfers. An upload interrupted by ctx or a broken connection may leave its .part-*
// file behind.
func (s *Store) Upload(ctx context.Context, remotePath string, r io.Reader) (sha256hex string, size int64, err error) {
	if err := checkRemotePath(remotePath); err != nil {
		return "", 0, fmt.Errorf("upload to %s: %w", s.where, err)
	}
	if r == nil {
		return "", 0, fmt.Errorf("upload %s to %s: nil reader", remotePath, s.where)
	}
	src := &sourceReader{r: r}
	err = s.do(ctx, "upload", remotePath, func(c *ftp.ServerConn) error {
		var err error
		sha256hex, size, err = s.uploadOnce(c, remotePath, src)
		if err != nil && src.n > 0 {
			err = permanent(fmt.Errorf("%w (not retried: the source was partly read)", err))
		}
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("upload %s to %s: %w", remotePath, s.where, err)
	}
	return sha256hex, size, nil
}

// UploadFile uploads the local file at localPath like Upload, re-reading the file from the
// start for each attempt.
func (s *Store) UploadFile(ctx context.Context, remotePath, localPath string) (string, int64, error) {
	if err := checkRemotePath(remotePath); err != nil {
		return "", 0, fmt.Errorf("upload to %s: %w", s.where, err)
	}
	if _, err := os.Stat(localPath); err != nil {
		return "", 0, fmt.Errorf("upload %s to %s: %w", localPath, s.where, err)
	}
	var sum string
	var size int64
	err := s.do(ctx, "upload", remotePath, func(c *ftp.ServerConn) error {
		f, err := os.Open(localPath)
		if err != nil {
			return permanent(err)
		}
		defer f.Close()
		sum, size, err = s.uploadOnce(c, remotePath, &sourceReader{r: f})
		return err
	})
	if err != nil {
		return "", 0, fmt.Errorf("upload %s as %s to %s: %w", localPath, remotePath, s.where, err)
	}
	return sum, size, nil
}

func (s *Store) uploadOnce(c *ftp.ServerConn, remotePath string, src *sourceReader) (string, int64, error) {
	if err := mkdirAll(c, path.Dir(remotePath)); err != nil {
		return "", 0, err
	}
	part := remotePath + ".part-" + randomHex(6)
	h := sha256.New()
	counted := &sourceReader{r: io.TeeReader(src, h)}
	err := c.Stor(part, counted)
	switch {
	case src.err != nil:
		err = permanent(fmt.Errorf("read source: %w", src.err))
	case err != nil:
	default:
		// The data connection closing is all the server sees of the end of a transfer, so
		// compare sizes before publishing the file.
		var got int64
		got, err = c.FileSize(part)
		if err == nil && got != counted.n {
			err = fmt.Errorf("%w: the server holds %d of %d bytes", errIncomplete, got, counted.n)
		}
	}
	if err == nil {
		err = c.Rename(part, remotePath)
	}
	if err != nil {
		if !isNetworkError(err) {
			_ = c.Delete(part) // best effort: the connection still answers
		}
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), counted.n, nil
}

// DownloadFile fetches remotePath into localPath (creating its directory) and returns the size.
// The bytes go to a temporary file beside localPath that is checked against wantSHA256 (hex,
// skipped when empty; a mismatch is ErrChecksum), synced and renamed into place, so localPath
// is either the old file or the complete new one. Transient failures are retried with backoff;
// a missing remote file (ErrNotFound) and refused credentials (ErrAuth) are not.
func (s *Store) DownloadFile(ctx context.Context, remotePath, localPath, wantSHA256 string) (int64, error) {
	fail := func(err error) (int64, error) {
		return 0, fmt.Errorf("download %s from %s: %w", remotePath, s.where, err)
	}
	if err := checkRemotePath(remotePath); err != nil {
		return fail(err)
	}
	if wantSHA256 != "" {
		if b, err := hex.DecodeString(wantSHA256); err != nil || len(b) != sha256.Size {
			return fail(fmt.Errorf("wantSHA256 %q is not a hex SHA-256", wantSHA256))
		}
	}
	if err := os.MkdirAll(filepath.Dir(localPath), 0o755); err != nil {
		return fail(err)
	}
	var size int64
	err := s.do(ctx, "download", remotePath, func(c *ftp.ServerConn) error {
		var err error
		size, err = downloadOnce(c, remotePath, localPath, wantSHA256)
		return err
	})
	if err != nil {
		return fail(err)
	}
	return size, nil
}

func downloadOnce(c *ftp.ServerConn, remotePath, localPath, wantSHA256 string) (int64, error) {
	want, err := c.FileSize(remotePath)
	if err != nil {
		return 0, err
	}
	dir, base := filepath.Split(localPath)
	tmp, err := os.CreateTemp(dir, "."+base+".part-*")
	if err != nil {
		return 0, permanent(err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	resp, err := c.Retr(remotePath)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	dst := &localWriter{w: io.MultiWriter(tmp, h)}
	n, err := io.Copy(dst, resp)
	if cerr := resp.Close(); err == nil {
		err = cerr
	}
	switch {
	case dst.err != nil:
		return 0, permanent(fmt.Errorf("write %s: %w", tmp.Name(), dst.err))
	case err != nil:
		return 0, err
	case n != want:
		return 0, fmt.Errorf("%w: received %d of %d bytes", errIncomplete, n, want)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if wantSHA256 != "" && !strings.EqualFold(got, wantSHA256) {
		return 0, permanent(fmt.Errorf("%w: got %s, want %s", ErrChecksum, got, strings.ToLower(wantSHA256)))
	}
	if err := tmp.Chmod(0o644); err != nil {
		return 0, permanent(err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, permanent(err)
	}
	if err := tmp.Close(); err != nil {
		return 0, permanent(err)
	}
	if err := os.Rename(tmp.Name(), localPath); err != nil {
		return 0, permanent(err)
	}
	done = true
	syncDir(filepath.Dir(localPath))
	return n, nil
}

// Stat returns the size of the remote file; ErrNotFound when there is none.
func (s *Store) Stat(ctx context.Context, remotePath string) (size int64, err error) {
	err = s.do(ctx, "stat", remotePath, func(c *ftp.ServerConn) error {
		var ferr error
		size, ferr = c.FileSize(remotePath)
		return ferr
	})
	if err != nil {
		return 0, fmt.Errorf("stat %s on %s: %w", remotePath, s.where, err)
	}
	return size, nil
}

// Delete removes the remote file; ErrNotFound when there is none.
func (s *Store) Delete(ctx context.Context, remotePath string) error {
	err := s.do(ctx, "delete", remotePath, func(c *ftp.ServerConn) error {
		return c.Delete(remotePath)
	})
	if err != nil {
		return fmt.Errorf("delete %s on %s: %w", remotePath, s.where, err)
	}
	return nil
}

// List returns the names (not paths) in the remote directory dir, sorted, without . and ..;
// ErrNotFound when dir does not exist.
func (s *Store) List(ctx context.Context, dir string) ([]string, error) {
	var names []string
	err := s.do(ctx, "list", dir, func(c *ftp.ServerConn) error {
		entries, err := c.List(dir)
		if err != nil {
			return err
		}
		names = names[:0]
		for _, e := range entries {
			if e.Name != "." && e.Name != ".." {
				names = append(names, path.Base(e.Name))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s on %s: %w", dir, s.where, err)
	}
	slices.Sort(names)
	return names, nil
}

// do runs op on a fresh, logged-in connection, again after a backoff while the failure is
// transient and attempts remain. The error it returns carries the sentinels.
func (s *Store) do(ctx context.Context, op, remotePath string, fn func(*ftp.ServerConn) error) error {
	pause := s.cfg.Backoff
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		s.log.Debug("ftp attempt", "op", op, "path", remotePath, "attempt", attempt)
		err := s.attempt(ctx, fn)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			// Closing the connections to stop the operation is what failed it.
			return ctx.Err()
		}
		err, transient := classify(err)
		if !transient {
			return err
		}
		if attempt > s.retries {
			if attempt == 1 {
				return err
			}
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		wait := backoff.Jitter(pause, nil)
		pause = min(2*pause, maxBackoff)
		s.log.Warn("ftp transient failure, retrying", "op", op, "path", remotePath,
			"attempt", attempt, "retry_in", wait, "err", err)
		if serr := s.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (after %d attempts, last error: %v)", serr, attempt, err)
		}
	}
}

// attempt dials, logs in and runs fn. Every connection of the attempt (control and data) is
// closed when ctx is done, which unblocks any read or write in progress.
func (s *Store) attempt(ctx context.Context, fn func(*ftp.ServerConn) error) error {
	sess := &session{ctx: ctx, timeout: s.cfg.Timeout, tls: s.tls}
	stop := context.AfterFunc(ctx, sess.abort)
	defer func() {
		stop()
		sess.closeAll()
	}()
	opts := []ftp.DialOption{ftp.DialWithDialFunc(sess.dial), ftp.DialWithTimeout(s.cfg.Timeout)}
	if s.tls != nil {
		opts = append(opts, ftp.DialWithExplicitTLS(s.tls))
	}
	c, err := ftp.Dial(s.cfg.Addr, opts...)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = c.Quit() }()
	if err := c.Login(s.cfg.User, s.cfg.Password); err != nil {
		return fmt.Errorf("login as %s: %w", s.cfg.User, err)
	}
	return fn(c)
}

// session tracks the connections of one attempt so that cancelling ctx can close them all.
type session struct {
	ctx     context.Context
	timeout time.Duration
	tls     *tls.Config

	mu      sync.Mutex
	conns   []net.Conn
	dials   int
	aborted bool
}

// dial opens the control connection (first call) and the data connections (later calls).
// The library hands data connections from a custom dial function to the protocol as they
// are, so this wraps them in TLS itself. The handshake is left to the first read or write:
// pure-ftpd only starts it after the transfer command, so an eager one would hang.
func (s *session) dial(network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: s.timeout}
	raw, err := d.DialContext(s.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.aborted {
		s.mu.Unlock()
		_ = raw.Close()
		return nil, s.ctx.Err()
	}
	s.conns = append(s.conns, raw)
	data := s.dials > 0
	s.dials++
	s.mu.Unlock()
	var conn net.Conn = &deadlineConn{Conn: raw, timeout: s.timeout}
	if data && s.tls != nil {
		return tls.Client(conn, s.tls), nil
	}
	return conn, nil
}

func (s *session) abort() {
	s.mu.Lock()
	s.aborted = true
	s.mu.Unlock()
	s.closeAll()
}

func (s *session) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// deadlineConn gives every read and write Timeout to make progress.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// errIncomplete marks a transfer that ended early without an error from the connection.
var errIncomplete = errors.New("incomplete transfer")

// permanentError stops the retries for an error that classify would otherwise call transient.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// classify adds the sentinel an error deserves and says whether trying again may help.
func classify(err error) (error, bool) {
	var perm *permanentError
	forced := errors.As(err, &perm)
	var reply *textproto.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	var header tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &reply):
		switch {
		case reply.Code == ftp.StatusNotLoggedIn:
			return fmt.Errorf("%w: %w", ErrAuth, err), false
		case reply.Code == ftp.StatusFileUnavailable:
			return fmt.Errorf("%w: %w", ErrNotFound, err), false
		case reply.Code >= 400 && reply.Code < 500:
			return err, !forced
		}
		return err, false
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalidCert), errors.As(err, &header), errors.As(err, &alert):
		return fmt.Errorf("%w (check Config.TLS: RootCAs, ServerName)", err), false
	case forced:
		return err, false
	case errors.Is(err, errIncomplete), isNetworkError(err):
		return err, true
	}
	return err, false
}

// isNetworkError reports a failure of the connection itself (after which it cannot be used).
func isNetworkError(err error) bool {
	var netErr net.Error
	var protoErr textproto.ProtocolError
	return errors.As(err, &netErr) || errors.As(err, &protoErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH)
}

// mkdirAll creates dir and its parents, taking "already exists" replies in its stride.
func mkdirAll(c *ftp.ServerConn, dir string) error {
	dir = path.Clean(dir)
	if dir == "." || dir == "/" {
		return nil
	}
	prefix := ""
	if strings.HasPrefix(dir, "/") {
		prefix = "/"
	}
	for part := range strings.SplitSeq(strings.TrimPrefix(dir, "/"), "/") {
		prefix = path.Join(prefix, part)
		if err := c.MakeDir(prefix); err != nil {
			var reply *textproto.Error
			if errors.As(err, &reply) && reply.Code >= 500 {
				continue // exists; a real problem shows up in the transfer that follows
			}
			return fmt.Errorf("create directory %s: %w", prefix, err)
		}
	}
	return nil
}

func checkRemotePath(p string) error {
	base := path.Base(p)
	if p == "" || strings.HasSuffix(p, "/") || base == "." || base == ".." || strings.ContainsAny(p, "\r\n\x00") {
		return fmt.Errorf("invalid remote file path %q", p)
	}
	return nil
}

// sourceReader counts what was read and remembers a read error, which is the caller's and
// never worth a retry.
type sourceReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// localWriter remembers a write error, which is the local disk's and never worth a retry.
type localWriter struct {
	w   io.Writer
	err error
}

func (l *localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		l.err = err
	}
	return n, err
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: makes the rename durable where the filesystem allows
		_ = d.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
