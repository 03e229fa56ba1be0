package rabbitmq

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/backoff"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestBackoff(t *testing.T) {
	lo, hi := 500*time.Millisecond, 30*time.Second
	tests := []struct {
		attempt  int
		rnd      float64
		min, max time.Duration
	}{
		{0, 0, 250 * time.Millisecond, 250 * time.Millisecond},
		{0, 0.999, 250 * time.Millisecond, 500 * time.Millisecond},
		{1, 0, 500 * time.Millisecond, 500 * time.Millisecond},
		{3, 0.5, 2 * time.Second, 4 * time.Second},
		{10, 0, 15 * time.Second, 15 * time.Second},
		{10, 0.999, 15 * time.Second, 30 * time.Second},
		{1000, 0.999, 15 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		got := backoff.Delay(tt.attempt, lo, hi, func() float64 { return tt.rnd })
		if got < tt.min || got > tt.max {
			t.Errorf("backoff(%d, rnd %v) = %s, want in [%s, %s]", tt.attempt, tt.rnd, got, tt.min, tt.max)
		}
	}
}

// syncBuffer collects log output written from the supervisor goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// While the broker stays down the warnings are spaced by warnEvery, whatever the dial rate.
func TestRedialRateLimitsWarnings(t *testing.T) {
	var logs syncBuffer
	cfg, err := Config{
		Addrs: []string{"127.0.0.1:1"}, ReconnectMax: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(cfg)
	defer s.cancel()
	now := time.Unix(0, 0)
	s.now = func() time.Time { return now }
	attempts := 0
	s.sleep = func(ctx context.Context, d time.Duration) error {
		if d <= 0 || d > cfg.ReconnectMax {
			t.Errorf("sleep %s out of bounds", d)
		}
		now = now.Add(d)
		return ctx.Err()
	}
	s.dial = func(ctx context.Context, cfg Config) (*Conn, error) {
		attempts++
		if now.After(time.Unix(0, 0).Add(5 * time.Minute)) {
			s.cancel()
			return nil, ctx.Err()
		}
		return nil, ErrUnreachable
	}
	if _, err := s.redial(); !errors.Is(err, context.Canceled) {
		t.Fatalf("redial = %v", err)
	}
	warnings := strings.Count(logs.String(), "still unreachable")
	// Five minutes down, hundreds of attempts: one warning per 30 s.
	if warnings < 9 || warnings > 10 || attempts < 300 {
		t.Errorf("%d warnings over %d attempts in 5 minutes, want about 10:\n%s", warnings, attempts, logs.String())
	}
}

func TestSessionConnAfterClose(t *testing.T) {
	s, err := DialWithRecovery(testCtx(t), Config{URLs: []string{testenv.AMQPURL(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Conn(testCtx(t)); err != nil {
		t.Fatalf("Conn: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Conn(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Conn after Close: %v, want ErrClosed", err)
	}
	if _, err := DialWithRecovery(testCtx(t), Config{Addrs: []string{"127.0.0.1:1"}, ConnectTimeout: time.Second}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("DialWithRecovery to nowhere: %v", err)
	}
}

type apiConnection struct {
	Name             string `json:"name"`
	UserProvidedName string `json:"user_provided_name"`
}

// findConnection waits until the management API lists the connection named name.
func findConnection(t *testing.T, name string) string {
	t.Helper()
	var found string
	testenv.Eventually(t, 30*time.Second, "connection "+name+" in the management API", func() bool {
		var conns []apiConnection
		mgmtCall(t, "GET", "/api/connections?columns=name,user_provided_name", &conns)
		for _, c := range conns {
			if c.UserProvidedName == name {
				found = c.Name
				return true
			}
		}
		return false
	})
	return found
}

func TestSessionRecoversFromServerClose(t *testing.T) {
	var logs syncBuffer
	name := testenv.Unique("rmq-test-conn")
	s, err := DialWithRecovery(testCtx(t), Config{
		URLs:           []string{testenv.AMQPURL(t)},
		ConnectionName: name,
		ReconnectMin:   50 * time.Millisecond,
		ReconnectMax:   time.Second,
		Logger:         slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t)
	first, err := s.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stage := testStage(t, first)
	p, err := first.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(ctx, stage, Message{Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}

	server := findConnection(t, name)
	if code := mgmtCall(t, "DELETE", "/api/connections/"+url.PathEscape(server), nil); code/100 != 2 {
		t.Fatalf("DELETE connection: HTTP %d", code)
	}
	select {
	case err := <-first.NotifyLost():
		if err == nil {
			t.Error("NotifyLost closed without a reason")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("NotifyLost silent after the server closed the connection")
	}
	if err := p.Publish(ctx, stage, Message{Body: []byte("lost")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish on the lost connection: %v, want ErrClosed", err)
	}

	next, err := s.Conn(ctx)
	if err != nil {
		t.Fatalf("Conn after the drop: %v", err)
	}
	if next == first {
		t.Fatal("Conn returned the lost connection")
	}
	p2, err := next.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if err := p2.Publish(ctx, stage, Message{Body: []byte("after")}); err != nil {
		t.Fatalf("Publish after recovery: %v", err)
	}
	if info, err := next.Inspect(ctx, stage); err != nil || info.Ready != 2 {
		t.Fatalf("Inspect = %+v, %v; want 2 ready", info, err)
	}
	out := logs.String()
	if strings.Count(out, "connection lost") != 1 || strings.Count(out, "connection recovered") != 1 {
		t.Errorf("want one line on loss and one on recovery:\n%s", out)
	}
	if pw := strings.TrimPrefix(strings.SplitN(strings.SplitN(testenv.AMQPURL(t), "@", 2)[0], "://", 2)[1], testenv.DefaultMQUser+":"); pw != "" && strings.Contains(out, pw) {
		t.Errorf("logs show the password:\n%s", out)
	}
}

// proxy forwards TCP connections to the broker and can play a broker outage: down closes the
// listener and every forwarded connection, up listens again on the same port.
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(b, c); b.Close(); c.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, b); b.Close(); c.Close() })
		}
	})
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) up() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func TestSessionRecoversAfterOutage(t *testing.T) {
	u := testenv.AMQPURL(t)
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, parsed.Host)
	via := *parsed
	via.Host = px.addr

	var logs syncBuffer
	s, err := DialWithRecovery(testCtx(t), Config{
		URLs:         []string{via.String()},
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, err := s.Conn(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	stage := testStage(t, dialTest(t))
	lost := first.NotifyLost()

	px.down()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("NotifyLost silent after the outage began")
	}
	// While down, Conn waits and gives up with its ctx.
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Conn(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Conn while down: %v, want DeadlineExceeded", err)
	}

	px.up()
	next, err := s.Conn(testCtx(t))
	if err != nil {
		t.Fatalf("Conn after the outage: %v", err)
	}
	p, err := next.NewPublisher()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(testCtx(t), stage, Message{Body: []byte("after")}); err != nil {
		t.Fatalf("Publish after recovery: %v", err)
	}
	out := logs.String()
	if strings.Count(out, "connection lost") != 1 || strings.Count(out, "connection recovered") != 1 {
		t.Errorf("want one line on loss and one on recovery:\n%s", out)
	}
	if strings.Contains(out, "attempts=1 ") {
		t.Errorf("recovered at the first attempt, the outage did not show:\n%s", out)
	}
}
