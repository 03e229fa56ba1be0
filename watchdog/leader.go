package watchdog

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/pero-worker/pero-worker/internal/backoff"
	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// ElectionPath is the parent of the election nodes under the root: <root>/watchdog/election.
func ElectionPath(root string) string { return path.Join(root, "watchdog", "election") }

// electionConn is the part of *zk.Conn the election uses.
type electionConn interface {
	Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	Children(path string) ([]string, *zk.Stat, error)
	ExistsW(path string) (bool, *zk.Stat, <-chan zk.Event, error)
	Delete(path string, version int32) error
	SessionID() int64
	State() zk.State
}

var _ electionConn = (*zk.Conn)(nil)

// Elector runs a function while this watchdog leads, by ZooKeeper's leader election recipe: each
// candidate creates an ephemeral sequential node, the lowest leads, and every other watches the
// node just below its own, so that a node going away wakes one candidate only. A leader's node
// goes when its process stops (at once) or dies (when its session expires, within the session
// timeout), and the next candidate leads.
//
// A leader steps down as soon as its connection to ZooKeeper drops, before its session can
// expire on the server and another candidate take over: two watchdogs never act at once.
type Elector struct {
	conn   electionConn
	acl    []zk.ACL
	dir    string
	id     string
	prefix string // n_<token>-: finds our node again after a create whose reply was lost
	events <-chan zk.Event
	log    *slog.Logger
	leader atomic.Bool
	// onChange, when set, learns every change of leadership.
	onChange func(leader bool)
}

// ElectorConfig configures NewElector.
type ElectorConfig struct {
	// Conn is the ZooKeeper connection (Store.Conn()). Required.
	Conn *zk.Conn
	// ACL is given to the election nodes (Store.ACL()).
	ACL []zk.ACL
	// Root is the ZooKeeper root (Store.Root()). Required.
	Root string
	// ID names this watchdog; it is the data of its election node. Required.
	ID string
	// SessionEvents is a subscription to the session's state changes (Store.SessionEvents()).
	// Required.
	SessionEvents <-chan zk.Event
	// Logger receives the election's logs. Default slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is called on every change of leadership.
	OnChange func(leader bool)
}

// NewElector returns an elector; Run takes part in the election.
func NewElector(cfg ElectorConfig) (*Elector, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("elector: conn: required")
	case cfg.Root == "":
		return nil, errors.New("elector: root: required")
	case cfg.ID == "":
		return nil, errors.New("elector: id: required")
	case cfg.SessionEvents == nil:
		return nil, errors.New("elector: session events: required")
	}
	return newElector(cfg.Conn, cfg), nil
}

func newElector(conn electionConn, cfg ElectorConfig) *Elector {
	var b [8]byte
	_, _ = rand.Read(b[:])
	acl := cfg.ACL
	if len(acl) == 0 {
		acl = zk.WorldACL(zk.PermAll)
	}
	return &Elector{
		conn:     conn,
		acl:      acl,
		dir:      ElectionPath(cfg.Root),
		id:       cfg.ID,
		prefix:   "n_" + hex.EncodeToString(b[:]) + "-",
		events:   cfg.SessionEvents,
		log:      cmp.Or(cfg.Logger, slog.Default()).With("component", "election", "watchdog", cfg.ID),
		onChange: cfg.OnChange,
	}
}

// Leader reports whether this watchdog leads now.
func (e *Elector) Leader() bool { return e.leader.Load() }

var errNodeGone = errors.New("election node gone")

// Run takes part in the election until ctx ends, calling lead with a context that ends when
// leadership is lost (or ctx ends) and waiting for lead to return before it competes again. On
// return it deletes its node, so that a standby leads at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) {
	var (
		node     string
		session  int64
		failures int
	)
	defer func() {
		if node != "" {
			e.deleteNode(node)
		}
	}()
	fail := func(what string, err error) {
		if ctx.Err() != nil {
			return
		}
		if failures == 0 || failures%30 == 0 {
			e.log.Warn("leader election: "+what, "err", err, "failures", failures+1)
		}
		_ = backoff.Sleep(ctx, backoff.Delay(failures, 100*time.Millisecond, 5*time.Second, nil))
		failures++
	}
	for ctx.Err() == nil {
		if node != "" && e.conn.SessionID() != session {
			node = "" // the session expired and took the node with it
		}
		if node == "" {
			n, err := zookeeper.Call(ctx, e.create)
			if err != nil {
				fail("create node", err)
				continue
			}
			node, session = n, e.conn.SessionID()
			e.log.Debug("election node created", "node", node)
		}
		pred, err := zookeeper.Call(ctx, func() (string, error) { return e.predecessor(node) })
		if errors.Is(err, errNodeGone) {
			node = ""
			continue
		}
		if err != nil {
			fail("list candidates", err)
			continue
		}
		if failures > 0 {
			e.log.Info("leader election: ZooKeeper answers again", "after_failures", failures)
			failures = 0
		}
		watched := node
		if pred != "" {
			watched = pred
		}
		type exists struct {
			ok    bool
			watch <-chan zk.Event
		}
		ex, err := zookeeper.Call(ctx, func() (exists, error) {
			ok, _, w, err := e.conn.ExistsW(watched)
			return exists{ok, w}, err
		})
		ok, watch := ex.ok, ex.watch
		if err != nil {
			fail("watch", err)
			continue
		}
		if !ok {
			if pred == "" {
				node = ""
			}
			continue // the predecessor went meanwhile: look again
		}
		if pred != "" {
			e.log.Debug("standing by", "watching", path.Base(pred))
			e.waitStandby(ctx, watch)
			continue
		}
		e.lead(ctx, watch, lead)
	}
}

// create makes this candidate's node. When the reply is lost (the connection dropped), the node
// may exist all the same: it is found by its prefix, so that the candidate never waits on a node
// of its own.
func (e *Elector) create() (string, error) {
	if err := e.ensureDir(); err != nil {
		return "", err
	}
	p, err := e.conn.Create(e.dir+"/"+e.prefix, []byte(e.id), zk.FlagEphemeral|zk.FlagSequence, e.acl)
	if err == nil {
		return p, nil
	}
	kids, _, lerr := e.conn.Children(e.dir)
	if lerr == nil {
		for _, k := range kids {
			if strings.HasPrefix(k, e.prefix) {
				return e.dir + "/" + k, nil
			}
		}
	}
	return "", fmt.Errorf("create %s: %w", e.dir, err)
}

func (e *Elector) ensureDir() error {
	for i := 1; i <= len(e.dir); i++ {
		if i < len(e.dir) && e.dir[i] != '/' {
			continue
		}
		_, err := e.conn.Create(e.dir[:i], nil, 0, e.acl)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", e.dir[:i], err)
		}
	}
	return nil
}

// predecessor returns the candidate just before node, "" when node is first; errNodeGone when
// node is not among the candidates.
func (e *Elector) predecessor(node string) (string, error) {
	kids, _, err := e.conn.Children(e.dir)
	if err != nil {
		return "", err
	}
	slices.SortFunc(kids, func(a, b string) int { return cmp.Compare(sequence(a), sequence(b)) })
	mine := path.Base(node)
	i := slices.Index(kids, mine)
	if i < 0 {
		return "", errNodeGone
	}
	if i == 0 {
		return "", nil
	}
	return e.dir + "/" + kids[i-1], nil
}

// sequence is the number ZooKeeper appended to a sequential node's name; -1 if there is none.
func sequence(name string) int64 {
	if len(name) < 10 {
		return -1
	}
	n, err := strconv.ParseInt(name[len(name)-10:], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// waitStandby waits for the watched predecessor to change, the session to change state, or ctx.
func (e *Elector) waitStandby(ctx context.Context, watch <-chan zk.Event) {
	select {
	case <-ctx.Done():
	case <-watch:
	case <-e.events:
	}
}

// lead runs fn until ctx ends, the node goes or the connection drops.
func (e *Elector) lead(ctx context.Context, watch <-chan zk.Event, fn func(context.Context)) {
	// Events from before this term say nothing about it; what matters is the state now.
	for drained := false; !drained; {
		select {
		case <-e.events:
		default:
			drained = true
		}
	}
	if e.conn.State() != zk.StateHasSession {
		select { // wait for the connection to come back before competing again
		case <-ctx.Done():
		case <-e.events:
		}
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	e.setLeader(true)
	e.log.Info("leading")
	go func() {
		defer close(done)
		fn(lctx)
	}()
	why := ""
	for why == "" {
		select {
		case <-ctx.Done():
			why = "stopping"
		case ev := <-watch:
			why = "election node changed: " + ev.Type.String()
		case ev, ok := <-e.events:
			if !ok {
				why = "ZooKeeper connection closed"
			} else if ev.State != zk.StateHasSession && ev.State != zk.StateConnected {
				why = "ZooKeeper connection " + ev.State.String()
			}
		case <-done:
			why = "lead returned"
		}
	}
	cancel()
	<-done
	e.setLeader(false)
	e.log.Info("stepped down", "reason", why)
	if why == "lead returned" {
		_ = backoff.Sleep(ctx, time.Second)
	}
}

func (e *Elector) setLeader(v bool) {
	if e.leader.Swap(v) != v && e.onChange != nil {
		e.onChange(v)
	}
}

// deleteNode removes the node, waiting a bounded time: a standby takes over at once, and if the
// connection is down the session's expiry removes it anyway.
func (e *Elector) deleteNode(node string) {
	done := make(chan error, 1)
	go func() { done <- e.conn.Delete(node, -1) }()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, zk.ErrNoNode) {
			e.log.Debug("delete election node", "err", err)
		}
	case <-t.C:
	}
}
