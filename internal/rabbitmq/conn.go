package rabbitmq

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrAuth: the broker refused the credentials or the permissions (ACCESS_REFUSED, HTTP 401).
	ErrAuth = errors.New("rabbitmq: access refused")
	// ErrUnreachable: no broker answered at the address (refused, timed out, reset, not AMQP).
	ErrUnreachable = errors.New("rabbitmq: broker unreachable")
	// ErrClosed: the connection, channel, publisher or consumer is closed; dial again.
	ErrClosed = errors.New("rabbitmq: connection closed")
	// ErrQueueNotFound: the queue does not exist.
	ErrQueueNotFound = errors.New("rabbitmq: queue not found")
	// ErrQueueNotEmpty: a delete with ifEmpty met a queue holding messages.
	ErrQueueNotEmpty = errors.New("rabbitmq: queue not empty")
	// ErrQueueMismatch: the queue exists with other properties or arguments (PRECONDITION_FAILED).
	ErrQueueMismatch = errors.New("rabbitmq: queue exists with different arguments")
	// ErrNacked: the broker refused to take responsibility for a published message.
	ErrNacked = errors.New("rabbitmq: message nacked by the broker")
	// ErrUnroutable: a mandatory message reached no queue (the queue does not exist).
	ErrUnroutable = errors.New("rabbitmq: message unroutable")
	// ErrTooLarge: the message's body is over the broker's max_message_size; publishing it again
	// fails the same way.
	ErrTooLarge = errors.New("rabbitmq: message larger than the broker's max_message_size")
	// ErrCancelled: the broker cancelled a consumer (its queue was deleted, for example).
	ErrCancelled = errors.New("rabbitmq: consumer cancelled by the broker")
)

// Config says where and how to connect. Zero values take the defaults named on each field.
type Config struct {
	// URLs are amqp:// or amqps:// URLs, tried in order on every (re)connect. Credentials and the
	// vhost in a URL win; a URL without them uses User/Password and VHost. Empty: use Addrs.
	URLs []string
	// Addrs are host:port pairs (as in ZooKeeper's mq_servers), tried in order with User,
	// Password, VHost and TLS. Used only when URLs is empty. A missing port means 5672 (5671 with TLS).
	Addrs []string
	// User and Password authenticate (PLAIN). Empty User: the URL's user, else guest.
	User, Password string
	// VHost is the virtual host. Default "pero", the constant of the original clients.
	VHost string
	// TLS, when non-nil, makes Addrs connect with amqps and is used for amqps URLs (nil there
	// means the system roots). An amqp:// URL with TLS set is a configuration error.
	TLS *tls.Config
	// Heartbeat is the AMQP heartbeat interval. Default 10s.
	Heartbeat time.Duration
	// ConnectTimeout bounds one Dial over all addresses, handshakes included. Default 10s.
	ConnectTimeout time.Duration
	// ConnectionName is shown in the management UI (client property connection_name).
	// Default "pero-worker".
	ConnectionName string
	// ReconnectMin and ReconnectMax bound the backoff of a Session between dial attempts.
	// Defaults 500ms and 30s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger receives the few lines worth an operator's attention. Default: discard.
	Logger *slog.Logger
}

func (cfg Config) withDefaults() (Config, error) {
	cfg.VHost = cmp.Or(cfg.VHost, "pero")
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, 10*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 10*time.Second)
	cfg.ConnectionName = cmp.Or(cfg.ConnectionName, "pero-worker")
	cfg.ReconnectMin = cmp.Or(cfg.ReconnectMin, 500*time.Millisecond)
	cfg.ReconnectMax = cmp.Or(cfg.ReconnectMax, 30*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case len(cfg.URLs) == 0 && len(cfg.Addrs) == 0:
		return cfg, errors.New("rabbitmq config: URLs or Addrs: none given")
	case cfg.Heartbeat < 0:
		return cfg, fmt.Errorf("rabbitmq config: Heartbeat: negative (%s)", cfg.Heartbeat)
	case cfg.ConnectTimeout < 0:
		return cfg, fmt.Errorf("rabbitmq config: ConnectTimeout: negative (%s)", cfg.ConnectTimeout)
	case cfg.ReconnectMin < 0 || cfg.ReconnectMax < cfg.ReconnectMin:
		return cfg, fmt.Errorf("rabbitmq config: ReconnectMin/ReconnectMax: need 0 <= min <= max, got %s, %s",
			cfg.ReconnectMin, cfg.ReconnectMax)
	}
	return cfg, nil
}

// target is one address to try, with what amqp091 needs beyond the URL.
type target struct {
	url    string // handed to amqp091; for Addrs it carries no credentials
	shown  string // masked form for errors and logs
	sasl   []amqp.Authentication
	vhost  string // empty: the URL's own
	tls    bool
	secret string // the URL's own password, to keep out of errors
}

func (cfg Config) targets() ([]target, error) {
	var out []target
	if len(cfg.URLs) > 0 {
		for i, raw := range cfg.URLs {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
				// url.Parse quotes its input; say only where the bad value is.
				return nil, fmt.Errorf("rabbitmq config: URLs[%d] %s: not an amqp:// or amqps:// URL", i, MaskURL(raw))
			}
			t := target{url: raw, shown: MaskURL(raw), tls: u.Scheme == "amqps"}
			if u.Scheme == "amqp" && cfg.TLS != nil {
				return nil, fmt.Errorf("rabbitmq config: URLs[%d] %s: TLS is set but the URL is not amqps://", i, t.shown)
			}
			if u.User == nil && cfg.User != "" {
				t.sasl = []amqp.Authentication{&amqp.PlainAuth{Username: cfg.User, Password: cfg.Password}}
			}
			if p, ok := u.User.Password(); ok {
				t.secret = p
			}
			if u.Path == "" {
				t.vhost = cfg.VHost
			}
			out = append(out, t)
		}
		return out, nil
	}
	scheme := "amqp"
	if cfg.TLS != nil {
		scheme = "amqps"
	}
	for i, addr := range cfg.Addrs {
		if addr == "" || strings.ContainsAny(addr, "/@?# ") {
			return nil, fmt.Errorf("rabbitmq config: Addrs[%d] %q: want host:port", i, addr)
		}
		t := target{url: scheme + "://" + addr, vhost: cfg.VHost, tls: cfg.TLS != nil}
		shown := scheme + "://"
		if cfg.User != "" {
			t.sasl = []amqp.Authentication{&amqp.PlainAuth{Username: cfg.User, Password: cfg.Password}}
			shown += url.User(cfg.User).String() + ":***@"
		}
		t.shown = shown + addr + "/" + url.PathEscape(cfg.VHost)
		out = append(out, t)
	}
	return out, nil
}

// Conn is one AMQP connection. Operations open their own channels, so a Conn is safe for
// concurrent use. It does not reconnect: see Session.
type Conn struct {
	conn *amqp.Connection
	addr string
	log  *slog.Logger
	done chan struct{} // closed when watch returns

	mu        sync.Mutex
	lost      []chan error // one per NotifyLost call, answered by watch
	lostErr   error        // why the connection dropped; nil after Close
	ended     bool         // watch has answered; later NotifyLost calls are answered at once
	closeOnce sync.Once
	closeErr  error
}

// Dial connects to the first address that answers, trying them in order within
// cfg.ConnectTimeout. Errors wrap ErrAuth for refused credentials and ErrUnreachable when no
// broker answered; they never contain a password.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	targets, err := cfg.targets()
	if err != nil {
		return nil, err
	}
	secrets := []string{cfg.Password}
	for _, t := range targets {
		secrets = append(secrets, t.secret)
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var errs []error
	for i, t := range targets {
		if dctx.Err() != nil {
			if ctx.Err() == nil {
				errs = append(errs, fmt.Errorf("%s and %d more: %w: gave up after ConnectTimeout %s",
					t.shown, len(targets)-i-1, ErrUnreachable, cfg.ConnectTimeout))
			}
			break
		}
		c, err := dialOne(dctx, cfg, t)
		if err == nil {
			cfg.Logger.Debug("rabbitmq connected", "addr", t.shown)
			return c, nil
		}
		errs = append(errs, err)
	}
	if ctx.Err() != nil {
		errs = append(errs, context.Cause(ctx))
	}
	return nil, redact(fmt.Errorf("dial rabbitmq: %w", errors.Join(errs...)), secrets...)
}

func dialOne(ctx context.Context, cfg Config, t target) (*Conn, error) {
	var (
		mu sync.Mutex
		nc net.Conn
	)
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(cfg.ConnectionName)
	ac := amqp.Config{
		SASL:       t.sasl,
		Vhost:      t.vhost,
		Heartbeat:  cfg.Heartbeat,
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Heartbeats start only after the handshake: bound it by the dial deadline
			// (amqp091 clears the deadline once the connection is open).
			if dl, ok := ctx.Deadline(); ok {
				_ = c.SetDeadline(dl)
			}
			mu.Lock()
			nc = c
			mu.Unlock()
			if ctx.Err() != nil {
				_ = c.SetDeadline(time.Now())
			}
			return c, nil
		},
	}
	if t.tls && cfg.TLS != nil {
		// amqp091 writes ServerName into the config it is given.
		ac.TLSClientConfig = cfg.TLS.Clone()
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if nc != nil {
			_ = nc.SetDeadline(time.Now())
		}
	})
	conn, err := amqp.DialConfig(t.url, ac)
	if !stop() && err == nil {
		// Cancelled during the handshake: the past deadline may already have hit the socket.
		_ = conn.Close()
		err = ctx.Err()
	}
	if err != nil {
		// amqp091 leaves the socket open after some handshake failures (no common SASL
		// mechanism); closing it ends its reader goroutine.
		mu.Lock()
		if nc != nil {
			_ = nc.Close()
		}
		mu.Unlock()
		return nil, fmt.Errorf("%s: %w", t.shown, classifyDial(ctx, err))
	}
	return newConn(conn, t.shown, cfg.Logger), nil
}

// classifyDial adds ErrAuth or ErrUnreachable to a dial error where the cause is clear.
func classifyDial(ctx context.Context, err error) error {
	// The socket deadline is the ctx deadline and may fire a moment before ctx reports it.
	if dl, ok := ctx.Deadline(); ctx.Err() != nil || (ok && !time.Now().Before(dl)) {
		// amqp091 reports a socket closed during start-ok as bad credentials; after a
		// timeout it is not.
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Code == amqp.AccessRefused:
			return fmt.Errorf("%w: %w", ErrAuth, err)
		case !ae.Server:
			// amqp091's own errors during the handshake are I/O failures (frame error,
			// closed socket): no broker there to talk to.
			return fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

func newConn(ac *amqp.Connection, addr string, log *slog.Logger) *Conn {
	c := &Conn{
		conn: ac,
		addr: addr,
		log:  log,
		done: make(chan struct{}),
	}
	closes := ac.NotifyClose(make(chan *amqp.Error, 1))
	blocks := ac.NotifyBlocked(make(chan amqp.Blocking, 4))
	go c.watch(closes, blocks)
	return c
}

func (c *Conn) watch(closes <-chan *amqp.Error, blocks <-chan amqp.Blocking) {
	defer close(c.done)
	for {
		select {
		case b, ok := <-blocks:
			if !ok {
				blocks = nil
				continue
			}
			// A resource alarm on the broker: publishes stall until it clears.
			if b.Active {
				c.log.Warn("rabbitmq blocks publishing", "addr", c.addr, "reason", b.Reason)
			} else {
				c.log.Info("rabbitmq unblocked publishing", "addr", c.addr)
			}
		case e, ok := <-closes:
			c.mu.Lock()
			if ok && e != nil {
				c.lostErr = fmt.Errorf("connection to %s lost: %w: %w", c.addr, ErrClosed, e)
			}
			c.ended = true
			for _, l := range c.lost {
				answerLost(l, c.lostErr)
			}
			c.lost = nil
			c.mu.Unlock()
			return
		}
	}
}

// Addr is the address of the broker, credentials masked.
func (c *Conn) Addr() string { return c.addr }

// NotifyLost returns a channel of its own to each caller: it delivers the reason when the
// connection drops and is closed afterwards; after Close it is closed without a value.
func (c *Conn) NotifyLost() <-chan error {
	l := make(chan error, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		answerLost(l, c.lostErr)
	} else {
		c.lost = append(c.lost, l)
	}
	return l
}

func answerLost(l chan error, err error) {
	if err != nil {
		l <- err
	}
	close(l)
}

// IsClosed reports whether the connection is closed or lost.
func (c *Conn) IsClosed() bool { return c.conn.IsClosed() }

// Close closes the connection and every channel on it. Safe to call more than once.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		err := c.conn.Close()
		if err != nil && !errors.Is(err, amqp.ErrClosed) {
			c.closeErr = fmt.Errorf("close connection to %s: %w", c.addr, err)
		}
		<-c.done
	})
	return c.closeErr
}

// channel opens a channel, reporting a dead connection as ErrClosed.
func (c *Conn) channel() (*amqp.Channel, error) {
	ch, err := c.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", brokerError(err, nil))
	}
	return ch, nil
}

// withChannel runs fn on a throwaway channel. A broker error closes the channel, never the
// connection, so a failed passive declare leaves the Conn usable. Cancelling ctx closes the
// channel, which ends the call waiting on it.
func (c *Conn) withChannel(ctx context.Context, fn func(ch *amqp.Channel) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ch, err := c.channel()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = ch.Close() })
	err = fn(ch)
	if !stop() {
		return context.Cause(ctx)
	}
	_ = ch.Close() // nil or ErrClosed when the broker already closed it
	return err
}

// brokerError adds our sentinel to an amqp091 error: 404 -> ErrQueueNotFound, 403 -> ErrAuth,
// 406 -> precondition (when given), closed -> ErrClosed.
func brokerError(err error, precondition error) error {
	if err == nil {
		return nil
	}
	if err == amqp.ErrClosed { //nolint:errorlint // amqp091 returns this exact value
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Code == amqp.NotFound:
		return fmt.Errorf("%w: %w", ErrQueueNotFound, err)
	case ae.Code == amqp.AccessRefused:
		return fmt.Errorf("%w: %w", ErrAuth, err)
	case ae.Code == amqp.PreconditionFailed && precondition != nil:
		return fmt.Errorf("%w: %w", precondition, err)
	case !ae.Server && ae.Code == amqp.ChannelError:
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}
