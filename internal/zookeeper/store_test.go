package zookeeper

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

func TestDialUnreachable(t *testing.T) {
	start := time.Now()
	s, err := Dial(t.Context(), Config{
		Servers:        []string{"127.0.0.1:1"},
		ConnectTimeout: time.Second,
		Logger:         testLogger(),
	})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Dial to a closed port succeeded")
	}
	if elapsed > 3*time.Second {
		t.Errorf("Dial took %v, want about the 1s ConnectTimeout", elapsed)
	}
	for _, want := range []string{"127.0.0.1:1", "no session within 1s", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestDialHonoursContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, Config{Servers: []string{"127.0.0.1:1"}, ConnectTimeout: time.Minute, Logger: testLogger()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial: %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Dial returned after %v", elapsed)
	}
}

func TestDialInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no servers", Config{}, "servers"},
		{"bad server", Config{Servers: []string{"localhost"}}, "host:port"},
		{"relative root", Config{Servers: []string{"127.0.0.1:2181"}, Root: "pero"}, "root"},
		{"trailing slash", Config{Servers: []string{"127.0.0.1:2181"}, Root: "/pero/"}, "root"},
		{"dot root", Config{Servers: []string{"127.0.0.1:2181"}, Root: "/a/./b"}, "root"},
		{"auth without colon", Config{Servers: []string{"127.0.0.1:2181"}, Auth: "s3cret-only"}, "auth"},
		{"auth without user", Config{Servers: []string{"127.0.0.1:2181"}, Auth: ":s3cret"}, "auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Dial(t.Context(), tt.cfg)
			if err == nil {
				s.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	s := dialStore(t, testConfig(t, ""))
	if s.Root() == "" || s.Conn() == nil {
		t.Fatal("Root or Conn empty")
	}
	events := s.SessionEvents()
	s.Close()
	s.Close()
	for range events { // closed by Close
	}
	if _, ok := <-s.SessionEvents(); ok {
		t.Error("SessionEvents after Close is not closed")
	}
	if _, err := s.ListStages(testContext(t)); err == nil {
		t.Error("ListStages after Close succeeded")
	}
}

func TestCancelledContext(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.GetStage(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetStage: %v, want context.Canceled", err)
	}
	if err := s.AddServer(ctx, MQServers, "mq:5672"); !errors.Is(err, context.Canceled) {
		t.Errorf("AddServer: %v, want context.Canceled", err)
	}
}

func TestDigestAuth(t *testing.T) {
	const password = "s3cret-pw"
	cfg := testConfig(t, "pero:"+password)
	ctx := testContext(t)
	s := dialStore(t, cfg)
	if err := s.AddServer(ctx, MQServers, "mq:5672"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStage(ctx, Stage{Name: "ocr", Config: "[OCR]"}); err != nil {
		t.Fatal(err)
	}
	acl, _, err := s.Conn().GetACL(s.stagePath("ocr") + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if len(acl) != 1 || acl[0].Scheme != "digest" || !strings.HasPrefix(acl[0].ID, "pero:") || acl[0].Perms != zk.PermAll {
		t.Errorf("ACL = %+v, want digest pero:... with all permissions", acl)
	}

	anon := cfg
	anon.Auth = ""
	other := dialStore(t, anon)
	if _, err := other.Servers(ctx, MQServers); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated Servers: %v, want zk.ErrNoAuth", err)
	}
	if _, err := other.GetStage(ctx, "ocr"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated GetStage: %v, want zk.ErrNoAuth", err)
	}
	if _, _, err := other.Conn().Get(s.stagePath("ocr") + "/config"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated read of config: %v, want zk.ErrNoAuth", err)
	}

	wrong := cfg
	wrong.Auth = "pero:wrong"
	intruder := dialStore(t, wrong)
	if _, err := intruder.GetStage(ctx, "ocr"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("GetStage with a wrong password: %v, want zk.ErrNoAuth", err)
	}

	got, err := s.Servers(ctx, MQServers)
	if err != nil || len(got) != 1 {
		t.Errorf("authenticated Servers = %v, %v", got, err)
	}
}

// handshakes records the server's answer to the connect request on each connection the client
// opens: it holds the session id and password.
type handshakes struct {
	mu   sync.Mutex
	last []byte
}

func (h *handshakes) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, h: h}, nil
}

func (h *handshakes) session(t *testing.T) (id int64, passwd []byte) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	// protocolVersion int32, timeOut int32, sessionId int64, passwd (int32 length + bytes)
	b := h.last
	if len(b) < 4+4+4+8+4 {
		t.Fatalf("no connect response recorded (%d bytes)", len(b))
	}
	id = int64(binary.BigEndian.Uint64(b[12:20]))
	n := int(binary.BigEndian.Uint32(b[20:24]))
	return id, append([]byte(nil), b[24:24+n]...)
}

// recordingConn keeps the first packet read, the connect response. The library reads it in its
// connection loop before it starts the receive goroutine, so no lock is needed for buf.
type recordingConn struct {
	net.Conn
	h    *handshakes
	buf  []byte
	done bool
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done {
		c.buf = append(c.buf, p[:n]...)
		if len(c.buf) >= 4 && len(c.buf) >= 4+int(binary.BigEndian.Uint32(c.buf)) {
			c.done = true
			c.h.mu.Lock()
			c.h.last = c.buf[:4+binary.BigEndian.Uint32(c.buf)]
			c.h.mu.Unlock()
		}
	}
	return n, err
}

// expireSession ends a session from outside, as ZooKeeper's own tests do: it attaches a second
// connection to the session with its id and password and closes the session there. The owner then
// finds its session expired when it next talks to the server.
func expireSession(t *testing.T, addr string, id int64, passwd []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	packet := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	// ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd.
	var req []byte
	req = binary.BigEndian.AppendUint32(req, 0)
	req = binary.BigEndian.AppendUint64(req, 0)
	req = binary.BigEndian.AppendUint32(req, 30000)
	req = binary.BigEndian.AppendUint64(req, uint64(id))
	req = binary.BigEndian.AppendUint32(req, uint32(len(passwd)))
	req = append(req, passwd...)
	if _, err := c.Write(packet(req)); err != nil {
		t.Fatal(err)
	}
	resp := readPacket(t, c)
	if got := int64(binary.BigEndian.Uint64(resp[8:16])); got != id {
		t.Fatalf("attached to session %#x, want %#x", got, id)
	}
	// Request header of closeSession: xid, type -11.
	var closeReq []byte
	closeReq = binary.BigEndian.AppendUint32(closeReq, 1)
	closeReq = binary.BigEndian.AppendUint32(closeReq, uint32(0xfffffff5))
	if _, err := c.Write(packet(closeReq)); err != nil {
		t.Fatal(err)
	}
	readPacket(t, c)
}

func readPacket(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// waitState waits for a session event of the given state.
func waitState(t *testing.T, events <-chan zk.Event, want zk.State) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("session events closed while waiting for %v", want)
			}
			if ev.State == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %v session event within 30s", want)
		}
	}
}

func TestSessionExpiry(t *testing.T) {
	var hs handshakes
	cfg := testConfig(t, "pero:pw")
	cfg.SessionTimeout = 3 * time.Second // pings every second: the expiry is noticed quickly
	cfg.dialer = hs.dial
	ctx := testContext(t)
	s := dialStore(t, cfg)

	if err := s.CreateStage(ctx, Stage{Name: "ocr", Config: "v1"}); err != nil {
		t.Fatal(err)
	}
	watch, err := s.WatchStage(ctx, "ocr")
	if err != nil {
		t.Fatal(err)
	}
	<-watch
	ephemeral := s.Root() + "/alive"
	if _, err := s.Conn().Create(ephemeral, nil, zk.FlagEphemeral, s.ACL()); err != nil {
		t.Fatal(err)
	}
	events := s.SessionEvents()

	id, passwd := hs.session(t)
	if id != s.Conn().SessionID() {
		t.Fatalf("recorded session %#x, connection has %#x", id, s.Conn().SessionID())
	}
	expireSession(t, cfg.Servers[0], id, passwd)
	waitState(t, events, zk.StateExpired)
	waitState(t, events, zk.StateHasSession)
	if s.Conn().SessionID() == id {
		t.Fatal("still the old session after expiry")
	}

	// The ephemeral node went with the old session; its owner re-creates it in the new one.
	if ok, _, err := s.Conn().Exists(ephemeral); err != nil || ok {
		t.Fatalf("ephemeral node after expiry: exists=%v err=%v", ok, err)
	}
	if _, err := s.Conn().Create(ephemeral, nil, zk.FlagEphemeral, s.ACL()); err != nil {
		t.Fatalf("re-create ephemeral node: %v", err)
	}

	// The Store keeps working, digest auth included, and the watch was re-armed.
	other := dialStore(t, cfg)
	if _, err := other.UpdateStage(ctx, "ocr", func(st *Stage) error { st.Config = "v2"; return nil }); err != nil {
		t.Fatal(err)
	}
	st := nextStage(t, watch, func(st Stage) bool { return st.Config == "v2" })
	if st.Config != "v2" {
		t.Errorf("watch after expiry: %+v", st)
	}
	if _, err := s.UpdateStage(ctx, "ocr", func(st *Stage) error { st.AdministrativePriority = 2; return nil }); err != nil {
		t.Fatalf("UpdateStage after expiry: %v", err)
	}
	if err := s.AddServer(ctx, FTPServers, "ftp:21"); err != nil {
		t.Fatalf("AddServer after expiry: %v", err)
	}
}

// nextStage receives from a WatchStage channel until a stage satisfies ok.
func nextStage(t *testing.T, ch <-chan Stage, ok func(Stage) bool) Stage {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case st, open := <-ch:
			if !open {
				t.Fatal("watch channel closed")
			}
			if ok(st) {
				return st
			}
		case <-timeout:
			t.Fatal("no matching stage from the watch within 30s")
		}
	}
}
