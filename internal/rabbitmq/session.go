package rabbitmq

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pero-worker/pero-worker/internal/backoff"
)

// warnEvery spaces the warnings while the broker stays unreachable.
const warnEvery = 30 * time.Second

// Session keeps a connection to the broker: when the connection drops it re-dials with
// exponential backoff and jitter until it succeeds or the Session is closed. Channels,
// publishers and consumers do not survive a drop; callers notice ErrClosed (or a closed
// Deliveries) and rebuild them on the Conn that Conn returns next.
type Session struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // cancelled by Close; ends the supervisor and its sleeps
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	conn  *Conn         // nil while down
	ready chan struct{} // closed when conn is set
	gone  chan struct{} // closed when supervise has taken conn down
	done  bool

	// Seams for tests.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
	dial  func(ctx context.Context, cfg Config) (*Conn, error)
}

// DialWithRecovery dials once (ctx bounds that first dial; its error is returned as is) and
// then supervises the connection until Close.
func DialWithRecovery(ctx context.Context, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := newSession(cfg)
	c, err := s.dial(ctx, cfg)
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.start(c)
	return s, nil
}

func newSession(cfg Config) *Session {
	ctx, cancel := context.WithCancel(context.Background())
	return &Session{
		cfg:    cfg,
		log:    cfg.Logger,
		ctx:    ctx,
		cancel: cancel,
		ready:  make(chan struct{}),
		now:    time.Now,
		sleep:  backoff.Sleep,
		dial:   Dial,
	}
}

func (s *Session) start(c *Conn) {
	s.setConn(c)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.supervise(c)
	}()
}

func (s *Session) setConn(c *Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = c
	s.gone = make(chan struct{})
	close(s.ready)
}

func (s *Session) supervise(c *Conn) {
	for {
		var lostErr error
		select {
		case <-s.ctx.Done():
			return
		case lostErr = <-c.NotifyLost():
		}
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.conn = nil
		s.ready = make(chan struct{})
		close(s.gone)
		s.mu.Unlock()
		_ = c.Close()
		if lostErr == nil {
			lostErr = fmt.Errorf("connection to %s closed", c.Addr())
		}
		s.log.Warn("rabbitmq connection lost, reconnecting", "err", lostErr)
		next, err := s.redial()
		if err != nil {
			return // closed while down
		}
		c = next
		s.setConn(c)
	}
}

// redial dials until it succeeds or the Session is closed, logging one warning per warnEvery.
func (s *Session) redial() (*Conn, error) {
	down := s.now()
	lastWarn := down
	for attempt := 0; ; attempt++ {
		if err := s.sleep(s.ctx, backoff.Delay(attempt, s.cfg.ReconnectMin, s.cfg.ReconnectMax, rand.Float64)); err != nil {
			return nil, err
		}
		c, err := s.dial(s.ctx, s.cfg)
		if err == nil {
			s.log.Info("rabbitmq connection recovered", "addr", c.Addr(),
				"down", s.now().Sub(down).Round(time.Millisecond), "attempts", attempt+1)
			return c, nil
		}
		if s.ctx.Err() != nil {
			return nil, s.ctx.Err()
		}
		if now := s.now(); now.Sub(lastWarn) >= warnEvery {
			lastWarn = now
			s.log.Warn("rabbitmq still unreachable", "err", err,
				"down", now.Sub(down).Round(time.Second), "attempts", attempt+1)
		}
	}
}

// Conn returns the current connection, waiting while the Session reconnects. It fails with
// ErrClosed after Close and with ctx's error when ctx ends first.
func (s *Session) Conn(ctx context.Context) (*Conn, error) {
	for {
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			return nil, fmt.Errorf("rabbitmq session: %w", ErrClosed)
		}
		c, ready, gone := s.conn, s.ready, s.gone
		s.mu.Unlock()
		if c != nil && !c.IsClosed() {
			return c, nil
		}
		if c != nil {
			// Dropped a moment ago and not yet noticed by supervise: wait for it.
			ready = gone
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-s.ctx.Done():
		}
	}
}

// Close stops reconnecting and closes the current connection. Safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return nil
	}
	s.done = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}
