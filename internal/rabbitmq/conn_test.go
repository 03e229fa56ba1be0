package rabbitmq

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/testenv"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{}, "URLs or Addrs"},
		{"bad scheme", Config{URLs: []string{"http://u:secret@h/"}}, "URLs[0]"},
		{"tls with amqp url", Config{URLs: []string{"amqp://h/"}, TLS: tlsConfig()}, "not amqps"},
		{"bad addr", Config{Addrs: []string{"h:1/x"}}, "Addrs[0]"},
		{"negative heartbeat", Config{Addrs: []string{"h:1"}, Heartbeat: -time.Second}, "Heartbeat"},
		{"backoff order", Config{Addrs: []string{"h:1"}, ReconnectMin: time.Minute, ReconnectMax: time.Second}, "ReconnectMin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Dial error = %v, want one naming %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error shows the password: %v", err)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	cfg, err := Config{
		Addrs: []string{"mq1:5672", "mq2"}, User: "pero", Password: "pw", VHost: "v/1",
	}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := cfg.targets()
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].url != "amqp://mq1:5672" || ts[0].vhost != "v/1" || ts[1].shown != "amqp://pero:***@mq2/v%2F1" {
		t.Errorf("targets = %+v", ts)
	}
	cfg.URLs = []string{"amqp://a:b@h1/x", "amqp://h2"}
	ts, err = cfg.targets()
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].vhost != "" || ts[0].sasl != nil || ts[0].secret != "b" {
		t.Errorf("URL with credentials and vhost: %+v", ts[0])
	}
	if ts[1].vhost != "v/1" || ts[1].sasl == nil {
		t.Errorf("URL without credentials and vhost should take User and VHost: %+v", ts[1])
	}
}

func TestDialDefaultsAndAddrs(t *testing.T) {
	u := testenv.AMQPURL(t)
	user, password := credentials(t)
	host := u[strings.LastIndex(u, "@")+1:]
	host = host[:strings.Index(host, "/")]
	// The first address refuses; Dial goes on to the second.
	c, err := Dial(testCtx(t), Config{
		Addrs: []string{"127.0.0.1:1", host}, User: user, Password: password, VHost: testVHost(t),
	})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if !strings.Contains(c.Addr(), host) || strings.Contains(c.Addr(), password) {
		t.Errorf("Addr() = %q", c.Addr())
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, ok := <-c.NotifyLost(); ok {
		t.Error("NotifyLost delivered a value after Close")
	}
	if !c.IsClosed() {
		t.Error("IsClosed() = false after Close")
	}
	if _, err := c.Inspect(testCtx(t), "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Inspect on a closed Conn: %v, want ErrClosed", err)
	}
}

func TestDialWrongPassword(t *testing.T) {
	u := testenv.AMQPURL(t)
	user, password := credentials(t)
	const wrong = "wr0ng-Pa55word"
	bad := strings.Replace(u, ":"+password+"@", ":"+wrong+"@", 1)
	if bad == u {
		t.Skip("test URL carries no password")
	}
	for name, cfg := range map[string]Config{
		"url":   {URLs: []string{bad}},
		"addrs": {Addrs: []string{"127.0.0.1:5672"}, User: user, Password: wrong, VHost: testVHost(t)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "addrs" && !strings.Contains(u, "@127.0.0.1:5672/") {
				t.Skip("broker not on 127.0.0.1:5672")
			}
			_, err := Dial(testCtx(t), cfg)
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("Dial: %v, want ErrAuth", err)
			}
			if errors.Is(err, ErrUnreachable) {
				t.Errorf("wrong password reported as unreachable: %v", err)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Errorf("error shows the password: %v", err)
			}
			t.Log(err)
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Dial(testCtx(t), Config{
		Addrs: []string{"127.0.0.1:1"}, User: "pero", Password: "hunter2", ConnectTimeout: 2 * time.Second,
	})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Dial: %v, want ErrUnreachable", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Dial took %s, over ConnectTimeout", el)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
}

// A server that accepts and never speaks: the handshake must give up at ConnectTimeout.
func TestDialSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	start := time.Now()
	_, err = Dial(testCtx(t), Config{Addrs: []string{ln.Addr().String()}, ConnectTimeout: 500 * time.Millisecond})
	el := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Dial: %v, want ErrUnreachable", err)
	}
	if el < 400*time.Millisecond || el > 3*time.Second {
		t.Errorf("Dial took %s, want about the 500ms ConnectTimeout", el)
	}
}

func TestDialCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Dial(ctx, Config{URLs: []string{testenv.AMQPURL(t)}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a cancelled ctx: %v", err)
	}
}

func tlsConfig() *tls.Config { return &tls.Config{MinVersion: tls.VersionTLS12} }
