package watchdog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/pero-worker/pero-worker/internal/testenv"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

func TestSequence(t *testing.T) {
	for name, want := range map[string]int64{"n_ab-0000000007": 7, "n_x-0000012345": 12345, "bad": -1, "n_-00000000x1": -1} {
		if got := sequence(name); got != want {
			t.Errorf("sequence(%q) = %d, want %d", name, got, want)
		}
	}
}

// candidate is one watchdog process in the election test: its own session and elector.
type candidate struct {
	name    string
	store   *zookeeper.Store
	elector *Elector
	cancel  context.CancelFunc
	done    chan struct{}
	terms   atomic.Int32
}

func startCandidate(t *testing.T, name, root string, leaders *atomic.Int32, overlap *atomic.Bool) *candidate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := zookeeper.Dial(ctx, zookeeper.Config{Servers: []string{testenv.ZooKeeper(t)}, Root: root,
		SessionTimeout: 4 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c := &candidate{name: name, store: st, done: make(chan struct{})}
	c.elector, err = NewElector(ElectorConfig{Conn: st.Conn(), ACL: st.ACL(), Root: root, ID: name,
		SessionEvents: st.SessionEvents(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	c.cancel = rcancel
	go func() {
		defer close(c.done)
		c.elector.Run(rctx, func(ctx context.Context) {
			if leaders.Add(1) > 1 {
				overlap.Store(true)
			}
			c.terms.Add(1)
			<-ctx.Done()
			leaders.Add(-1)
		})
	}()
	t.Cleanup(func() { c.stop(); st.Close() })
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestElection(t *testing.T) {
	zkAddr := testenv.ZooKeeper(t)
	top := "/" + testenv.Unique("le")
	root := top + "/pero"
	t.Cleanup(func() { deleteZKTree(t, zkAddr, top) })
	var leaders atomic.Int32
	var overlap atomic.Bool

	a := startCandidate(t, "a", root, &leaders, &overlap)
	waitUntil(t, 5*time.Second, "a leads", a.elector.Leader)
	b := startCandidate(t, "b", root, &leaders, &overlap)
	c := startCandidate(t, "c", root, &leaders, &overlap)
	time.Sleep(300 * time.Millisecond)
	if b.elector.Leader() || c.elector.Leader() || !a.elector.Leader() {
		t.Fatalf("leaders: a %v b %v c %v", a.elector.Leader(), b.elector.Leader(), c.elector.Leader())
	}

	// A graceful stop hands over at once, to the next in line.
	a.stop()
	took := waitUntil(t, 2*time.Second, "b leads after a stopped", b.elector.Leader)
	t.Logf("graceful handover in %s", took)
	if c.elector.Leader() {
		t.Fatal("c leads too")
	}

	// A leader whose session ends (its process died) is replaced once ZooKeeper drops the
	// session; closing the connection ends it at once, a crash after the session timeout.
	b.store.Close()
	took = waitUntil(t, 6*time.Second, "c leads after b's session ended", c.elector.Leader)
	t.Logf("handover after session end in %s", took)
	waitUntil(t, 2*time.Second, "b steps down", func() bool { return !b.elector.Leader() })
	if overlap.Load() {
		t.Fatal("two candidates led at once")
	}
}

// TestElectionStepsDownOnDisconnect: a leader that loses its connection stops leading before
// its session could expire and another take over.
func TestElectionStepsDownOnDisconnect(t *testing.T) {
	zkAddr := testenv.ZooKeeper(t)
	top := "/" + testenv.Unique("le")
	t.Cleanup(func() { deleteZKTree(t, zkAddr, top) })
	events := make(chan zk.Event, 4)
	conn := &fakeElectionConn{state: zk.StateHasSession}
	e := newElector(conn, ElectorConfig{Root: top + "/pero", ID: "x", SessionEvents: events,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var leading atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx, func(ctx context.Context) {
			leading.Store(true)
			<-ctx.Done()
			leading.Store(false)
		})
	}()
	waitUntil(t, 2*time.Second, "leads", leading.Load)
	conn.setState(zk.StateDisconnected)
	events <- zk.Event{Type: zk.EventSession, State: zk.StateDisconnected}
	waitUntil(t, 2*time.Second, "steps down on disconnect", func() bool { return !leading.Load() && !e.Leader() })
	// Reconnected with the same session: leads again.
	conn.setState(zk.StateHasSession)
	events <- zk.Event{Type: zk.EventSession, State: zk.StateHasSession}
	waitUntil(t, 3*time.Second, "leads again", leading.Load)
	cancel()
	<-done
}

// fakeElectionConn is a one-candidate ZooKeeper.
type fakeElectionConn struct {
	mu    sync.Mutex
	state zk.State
	nodes []string
	seq   int
}

func (f *fakeElectionConn) setState(s zk.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = s
}

func (f *fakeElectionConn) Create(p string, _ []byte, flags int32, _ []zk.ACL) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if flags&zk.FlagSequence == 0 {
		return p, zk.ErrNodeExists
	}
	f.seq++
	name := fmt.Sprintf("%s%010d", p, f.seq)
	f.nodes = append(f.nodes, path.Base(name))
	return name, nil
}

func (f *fakeElectionConn) Children(string) ([]string, *zk.Stat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.nodes...), &zk.Stat{}, nil
}

func (f *fakeElectionConn) ExistsW(string) (bool, *zk.Stat, <-chan zk.Event, error) {
	return true, &zk.Stat{}, make(chan zk.Event), nil
}

func (f *fakeElectionConn) Delete(string, int32) error { return nil }
func (f *fakeElectionConn) SessionID() int64           { return 1 }
func (f *fakeElectionConn) State() zk.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

func deleteZKTree(t *testing.T, addr, top string) {
	c, _, err := zk.Connect([]string{addr}, 5*time.Second, zk.WithLogger(silentZK{}))
	if err != nil {
		return
	}
	defer c.Close()
	var del func(p string)
	del = func(p string) {
		kids, _, err := c.Children(p)
		if err != nil {
			return
		}
		for _, k := range kids {
			del(p + "/" + k)
		}
		_ = c.Delete(p, -1)
	}
	del(top)
}

type silentZK struct{}

func (silentZK) Printf(string, ...any) {}
