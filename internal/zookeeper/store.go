package zookeeper

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-zookeeper/zk"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotFound: the stage, server or statistics node does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: the stage already exists.
	ErrExists = errors.New("already exists")
	// ErrNoServers: a server list is empty or missing.
	ErrNoServers = errors.New("no servers configured")
	// ErrConflict: a compare-and-set update lost to concurrent writers too many times in a row.
	ErrConflict = errors.New("too many concurrent updates")
)

// Config configures Dial.
type Config struct {
	// Servers lists the ZooKeeper servers as host:port. Required.
	Servers []string
	// Root is the znode under which everything lives. Default "/pero", the original's root; a test
	// uses its own, such as "/t-<random>/pero", so that tests never collide.
	Root string
	// SessionTimeout is the session timeout asked of the server, which clamps it to its own
	// minSessionTimeout..maxSessionTimeout. Default 10s; zero means the default.
	SessionTimeout time.Duration
	// ConnectTimeout bounds how long Dial waits for a session. Default 10s; zero means the default.
	ConnectTimeout time.Duration
	// Auth is an optional "user:password" for ZooKeeper digest authentication. When set, the
	// connection authenticates with it and every node the Store creates gets an ACL that gives all
	// permissions to that user only. Empty means no authentication and open (world) ACLs.
	Auth string
	// Logger receives the Store's logs and, at debug level, the ZooKeeper client library's own.
	// Default slog.Default().
	Logger *slog.Logger
	// TLS, when set, makes every connection TLS (ZooKeeper's secureClientPort) verified with
	// this configuration; an empty ServerName is taken from the server's host. Nil means plain TCP.
	TLS *tls.Config

	// dialer replaces net.DialTimeout; tests use it to observe the connection.
	dialer zk.Dialer
}

const (
	defaultRoot    = "/pero"
	defaultTimeout = 10 * time.Second
	// closeWait bounds how long Close waits for the client library's connection loop to end; it
	// can sit in a handshake read for up to ten receive timeouts when a server accepts TCP but never
	// answers, and Close should not hang on that.
	closeWait = 5 * time.Second
	// casAttempts bounds the compare-and-set retries of UpdateStage and RecordTiming.
	casAttempts = 20
)

// Store is pero's configuration in ZooKeeper. It is safe for concurrent use.
type Store struct {
	conn   *zk.Conn
	root   string
	acl    []zk.ACL
	log    *slog.Logger
	now    func() time.Time
	closed chan struct{}

	ready     chan struct{} // closed on the first session
	readyOnce sync.Once
	dialErr   atomic.Pointer[error] // last failed TCP dial, for Dial's error
	expired   atomic.Bool           // the session expired and no new one has been opened yet

	mu   sync.Mutex
	subs []chan zk.Event // SessionEvents subscribers; nil after the library's event stream ended
	done bool            // the event stream ended: new subscribers get a closed channel

	closeOnce  sync.Once
	wg         sync.WaitGroup // the event dispatcher and WatchStage loops
	dispatched chan struct{}  // closed when the event dispatcher returns
}

// Dial connects to ZooKeeper and waits until a session is open. It fails after cfg.ConnectTimeout
// with an error naming the servers when none answers, and returns early when ctx ends.
func Dial(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("zookeeper: servers: at least one host:port is required")
	}
	for _, hp := range cfg.Servers {
		if err := validateHostPort(hp); err != nil {
			return nil, fmt.Errorf("zookeeper: servers: %w", err)
		}
	}
	root := cmp.Or(cfg.Root, defaultRoot)
	if err := validateRoot(root); err != nil {
		return nil, fmt.Errorf("zookeeper: root: %w", err)
	}
	sessionTimeout := cmp.Or(cfg.SessionTimeout, defaultTimeout)
	connectTimeout := cmp.Or(cfg.ConnectTimeout, defaultTimeout)
	if sessionTimeout < 0 || connectTimeout < 0 {
		return nil, errors.New("zookeeper: session_timeout and connect_timeout must not be negative")
	}
	log := cmp.Or(cfg.Logger, slog.Default())
	acl := zk.WorldACL(zk.PermAll)
	if cfg.Auth != "" {
		user, pw, ok := strings.Cut(cfg.Auth, ":")
		if !ok || user == "" {
			return nil, errors.New(`zookeeper: auth: must be "user:password"`)
		}
		acl = zk.DigestACL(zk.PermAll, user, pw)
	}

	s := &Store{
		root:       root,
		acl:        acl,
		log:        log,
		now:        time.Now,
		closed:     make(chan struct{}),
		ready:      make(chan struct{}),
		dispatched: make(chan struct{}),
	}
	dial := cfg.dialer
	if dial == nil {
		dial = net.DialTimeout
	}
	if cfg.TLS != nil {
		dial = tlsDialer(dial, cfg.TLS)
	}
	conn, events, err := zk.Connect(cfg.Servers, sessionTimeout,
		zk.WithLogger(libLogger{log}),
		zk.WithDialer(func(network, addr string, timeout time.Duration) (net.Conn, error) {
			c, err := dial(network, addr, timeout)
			if err != nil {
				s.dialErr.Store(&err)
			} else {
				s.dialErr.Store(nil)
			}
			return c, err
		}))
	if err != nil {
		return nil, fmt.Errorf("zookeeper: connect to %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	s.conn = conn
	s.wg.Add(1)
	go s.dispatch(events)

	timer := time.NewTimer(connectTimeout)
	defer timer.Stop()
	select {
	case <-s.ready:
	case <-timer.C:
		s.Close()
		cause := zk.ErrNoServer
		if e := s.dialErr.Load(); e != nil {
			cause = *e
		}
		return nil, fmt.Errorf("zookeeper: connect to %s: no session within %s: %w",
			strings.Join(cfg.Servers, ","), connectTimeout, cause)
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("zookeeper: connect to %s: %w", strings.Join(cfg.Servers, ","), ctx.Err())
	}
	if cfg.Auth != "" {
		_, err := Call(ctx, func() (struct{}, error) {
			return struct{}{}, s.conn.AddAuth("digest", []byte(cfg.Auth))
		})
		if err != nil {
			s.Close()
			user, _, _ := strings.Cut(cfg.Auth, ":")
			return nil, fmt.Errorf("zookeeper: authenticate as %q: %w", user, err)
		}
	}
	return s, nil
}

// Close ends the session; its ephemeral nodes go at once. Every WatchStage channel and
// SessionEvents channel is closed. Safe to call more than once.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closed) // under mu: WatchStage adds to wg only while not closed
		s.mu.Unlock()
		s.conn.Close()
		timer := time.NewTimer(closeWait)
		defer timer.Stop()
		select {
		case <-s.dispatched:
		case <-timer.C:
			s.log.Warn("zookeeper client still shutting down", "waited", closeWait)
			return
		}
		s.wg.Wait()
	})
}

// Conn returns the underlying connection, for recipes this package does not offer (leader
// election). Nodes created through it should use ACL().
func (s *Store) Conn() *zk.Conn { return s.conn }

// Root returns the root znode, "/pero" unless configured otherwise.
func (s *Store) Root() string { return s.root }

// ACL returns the ACL the Store gives the nodes it creates: open, or all permissions for the
// Auth user only.
func (s *Store) ACL() []zk.ACL { return s.acl }

// SessionEvents returns a new subscription to the session's state changes (zk.EventSession events:
// StateConnecting, StateConnected, StateHasSession, StateDisconnected, StateExpired). The channel is
// closed after Close. A slow reader loses the oldest events, never the latest.
//
// The client library reconnects by itself and, once a session has expired, opens a new one by
// itself; the Store keeps working across both. A session expiry deletes the session's ephemeral
// nodes, so a user of ephemeral nodes re-creates them on each StateHasSession event when
// Conn().SessionID() differs from the session that created them.
func (s *Store) SessionEvents() <-chan zk.Event {
	ch := make(chan zk.Event, 16)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		close(ch)
		return ch
	}
	s.subs = append(s.subs, ch)
	return ch
}

// dispatch reads the library's event stream until it ends, which happens after Conn.Close once the
// connection loop has stopped.
func (s *Store) dispatch(events <-chan zk.Event) {
	defer s.wg.Done()
	defer close(s.dispatched)
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, ch := range s.subs {
			close(ch)
		}
		s.subs, s.done = nil, true
	}()
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		switch ev.State {
		case zk.StateHasSession:
			s.readyOnce.Do(func() { close(s.ready) })
			if s.expired.Swap(false) {
				s.log.Info("zookeeper session re-established after expiry", "server", ev.Server)
			}
		case zk.StateExpired:
			s.expired.Store(true)
			s.log.Warn("zookeeper session expired; its ephemeral nodes are gone, opening a new session")
		}
		s.publish(ev)
	}
}

func (s *Store) publish(ev zk.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		for {
			select {
			case ch <- ev:
			default:
				select { // full: drop the oldest to keep the latest
				case <-ch:
				default:
				}
				continue
			}
			break
		}
	}
}

// libLogger routes the client library's log lines to slog at debug level.
type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...), "library", "go-zookeeper")
	}
}

// Call runs one request of the ZooKeeper client library so that a cancelled ctx returns at once.
// The library takes no context and queues requests while it reconnects; an abandoned request
// still completes (or fails on Close) in the background, so a write may land after ctx ended.
func Call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if ctx.Done() == nil {
		return f()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// getNode reads a node; exists is false (and err nil) when it is absent.
func (s *Store) getNode(ctx context.Context, p string) (data []byte, stat *zk.Stat, exists bool, err error) {
	type got struct {
		data []byte
		stat *zk.Stat
	}
	g, err := Call(ctx, func() (got, error) {
		d, st, err := s.conn.Get(p)
		return got{d, st}, err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	return g.data, g.stat, true, nil
}

func (s *Store) exists(ctx context.Context, p string) (bool, error) {
	return Call(ctx, func() (bool, error) {
		ok, _, err := s.conn.Exists(p)
		return ok, err
	})
}

func (s *Store) children(ctx context.Context, p string) ([]string, error) {
	return Call(ctx, func() ([]string, error) {
		c, _, err := s.conn.Children(p)
		return c, err
	})
}

func (s *Store) create(ctx context.Context, p string, data []byte) error {
	_, err := Call(ctx, func() (string, error) { return s.conn.Create(p, data, 0, s.acl) })
	return err
}

func (s *Store) set(ctx context.Context, p string, data []byte, version int32) (*zk.Stat, error) {
	return Call(ctx, func() (*zk.Stat, error) { return s.conn.Set(p, data, version) })
}

func (s *Store) delete(ctx context.Context, p string, version int32) error {
	_, err := Call(ctx, func() (struct{}, error) { return struct{}{}, s.conn.Delete(p, version) })
	return err
}

func (s *Store) multi(ctx context.Context, ops ...any) ([]zk.MultiResponse, error) {
	return Call(ctx, func() ([]zk.MultiResponse, error) { return s.conn.Multi(ops...) })
}

// ensurePath creates p and its missing parents as empty persistent nodes, like kazoo's ensure_path.
func (s *Store) ensurePath(ctx context.Context, p string) error {
	if ok, err := s.exists(ctx, p); err != nil || ok {
		return err
	}
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		err := s.create(ctx, p[:i], nil)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p[:i], err)
		}
	}
	return nil
}

// deleteTree deletes p and everything below it in one transaction, so that other tools never see
// half of it; it retries when a child appears or goes meanwhile. ErrNoNode when p is absent.
func (s *Store) deleteTree(ctx context.Context, p string) error {
	for attempt := 0; ; attempt++ {
		var ops []any
		err := s.collectDeletes(ctx, p, &ops)
		if err == nil {
			if _, err = s.multi(ctx, ops...); err == nil {
				return nil
			}
		}
		if !isConflict(err) || attempt >= casAttempts {
			return err
		}
		if ok, err := s.exists(ctx, p); err != nil || !ok {
			return cmpErr(err, zk.ErrNoNode)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

// collectDeletes appends the deletes of p's subtree, children before parents.
func (s *Store) collectDeletes(ctx context.Context, p string, ops *[]any) error {
	kids, err := s.children(ctx, p)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := s.collectDeletes(ctx, p+"/"+k, ops); err != nil {
			return err
		}
	}
	*ops = append(*ops, &zk.DeleteRequest{Path: p, Version: -1})
	return nil
}

// isConflict reports the errors of a compare-and-set that lost to a concurrent writer.
func isConflict(err error) bool {
	return errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNodeExists) ||
		errors.Is(err, zk.ErrNotEmpty) || errors.Is(err, zk.ErrNoNode)
}

// backoff returns a jittered delay for retry attempt n (0-based): up to 5ms doubling to 500ms.
func backoff(n int) time.Duration {
	d := 5 * time.Millisecond << min(n, 7)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// validateName checks a name used as one znode path element (stage, container): ZooKeeper refuses
// "." and "..", and "/" would nest.
func validateName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not allowed", name)
	case len(name) > 255:
		return errors.New("must be at most 255 bytes")
	case !utf8.ValidString(name):
		return errors.New("must be valid UTF-8")
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xd800 && r <= 0xf8ff || r >= 0xfff0 && r <= 0xffff {
			return fmt.Errorf("%q contains a character not allowed in a znode name (%q)", name, r)
		}
	}
	return nil
}

func validateRoot(root string) error {
	if !strings.HasPrefix(root, "/") || root == "/" || strings.HasSuffix(root, "/") || path.Clean(root) != root {
		return fmt.Errorf("%q must be an absolute znode path such as /pero", root)
	}
	for _, el := range strings.Split(root[1:], "/") {
		if err := validateName(el); err != nil {
			return fmt.Errorf("%q: %w", root, err)
		}
	}
	return nil
}

// tlsDialer wraps dial with a TLS handshake bounded by the same timeout.
func tlsDialer(dial zk.Dialer, base *tls.Config) zk.Dialer {
	return func(network, addr string, timeout time.Duration) (net.Conn, error) {
		raw, err := dial(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		cfg := base.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(addr)
			cfg.ServerName = host
		}
		c := tls.Client(raw, cfg)
		if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
			raw.Close()
			return nil, err
		}
		if err := c.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		_ = c.SetDeadline(time.Time{})
		return c, nil
	}
}
