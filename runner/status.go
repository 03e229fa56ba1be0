package runner

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// Runner states in the status node.
const (
	StateStarting = "starting" // fetching the model, initialising the function, connecting
	StateRunning  = "running"  // consuming
	StateDraining = "draining" // stopping: takes no new message, finishing the current batch
)

// Status is the JSON of a runner's status node, <root>/queue/<stage>/runners/<container>.
// The node is ephemeral: it disappears when the runner exits or its ZooKeeper session expires.
type Status struct {
	Container     string    `json:"container"`
	Host          string    `json:"host"`
	Stage         string    `json:"stage"`
	State         string    `json:"state"`
	PID           int       `json:"pid"`
	Version       string    `json:"version"`        // build version of the runner
	Function      string    `json:"function"`       // "" until the settings are read
	BatchSize     int       `json:"batch_size"`     // 0 until the settings are read
	ConfigVersion string    `json:"config_version"` // the stage configuration it runs
	Started       time.Time `json:"started"`
	Updated       time.Time `json:"updated"`
	Batches       int64     `json:"batches"`
	Messages      int64     `json:"messages"`
	Failed        int64     `json:"failed"`
	DeadLettered  int64     `json:"dead_lettered"`
	InFlight      int64     `json:"in_flight"` // messages of the batch being processed
}

// StatusPath is the status node of a runner.
func StatusPath(root, stage, container string) string {
	return path.Join(RunnersPath(root, stage), container)
}

// RunnersPath is the parent of the status nodes of a stage's runners.
func RunnersPath(root, stage string) string {
	return path.Join(root, "queue", stage, "runners")
}

// zkConn is the part of *zk.Conn the status node uses.
type zkConn interface {
	Create(path string, data []byte, flags int32, acl []zk.ACL) (string, error)
	Set(path string, data []byte, version int32) (*zk.Stat, error)
	Delete(path string, version int32) error
	Exists(path string) (bool, *zk.Stat, error)
	SessionID() int64
}

var _ zkConn = (*zk.Conn)(nil)

// statusNode keeps the runner's ephemeral status node up to date: on every state change, at
// most once per interval while counters move, and again after a session expiry deleted it.
// Failures are logged, never fatal: the node is for the watchdog's information.
type statusNode struct {
	conn     zkConn
	acl      []zk.ACL
	path     string
	interval time.Duration
	clock    Clock
	log      *slog.Logger
	counters *counters
	sessions <-chan zk.Event // nil: no re-creation after expiry

	mu      sync.Mutex
	st      Status
	session int64 // session that created the node; 0 when it does not exist
	kick    chan struct{}

	startOnce, stopOnce sync.Once
	wg                  sync.WaitGroup
	cancel              context.CancelFunc
	failures            int
}

func newStatusNode(store *zookeeper.Store, st Status, interval time.Duration, cnt *counters, clk Clock, log *slog.Logger) *statusNode {
	return &statusNode{
		conn:     store.Conn(),
		acl:      store.ACL(),
		path:     StatusPath(store.Root(), st.Stage, st.Container),
		interval: interval,
		clock:    clk,
		log:      log,
		counters: cnt,
		sessions: store.SessionEvents(),
		st:       st,
		kick:     make(chan struct{}, 1),
	}
}

// Start creates the node and keeps it current until Stop.
func (s *statusNode) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.cancel = context.WithCancel(ctx)
		s.write()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(ctx)
		}()
	})
}

// Stop deletes the node. Safe twice and before Start.
func (s *statusNode) Stop() {
	s.stopOnce.Do(func() {
		if s.cancel == nil {
			return
		}
		s.cancel()
		s.wg.Wait()
		s.mu.Lock()
		created := s.session != 0
		s.mu.Unlock()
		if created {
			if err := s.conn.Delete(s.path, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
				s.log.Debug("delete status node", "err", err)
			}
		}
	})
}

// set changes the state (and what else update does) and writes soon.
func (s *statusNode) set(update func(*Status)) {
	s.mu.Lock()
	update(&s.st)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *statusNode) loop(ctx context.Context) {
	for {
		t := s.clock.NewTimer(s.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-s.kick:
		case ev, ok := <-s.sessions:
			if !ok {
				s.sessions = nil
			} else if ev.State == zk.StateHasSession {
				s.mu.Lock()
				if s.session != 0 && s.session != s.conn.SessionID() {
					s.session = 0 // expired with the old session: create again
				}
				s.mu.Unlock()
			}
		}
		t.Stop()
		s.write()
	}
}

// write creates or updates the node with the current status.
func (s *statusNode) write() {
	s.mu.Lock()
	s.st.Updated = s.clock.Now().UTC()
	s.st.Batches = s.counters.batches.Load()
	s.st.Messages = s.counters.messages.Load()
	s.st.Failed = s.counters.failed.Load()
	s.st.DeadLettered = s.counters.deadLettered.Load()
	s.st.InFlight = s.counters.inFlight.Load()
	data, _ := json.Marshal(s.st)
	created := s.session != 0
	s.mu.Unlock()

	var err error
	if created {
		_, err = s.conn.Set(s.path, data, -1)
		if errors.Is(err, zk.ErrNoNode) {
			created = false
		}
	}
	if !created {
		err = s.create(data)
	}
	if err != nil {
		s.failures++
		if s.failures == 1 || s.failures%30 == 0 {
			s.log.Warn("cannot write status node", "path", s.path, "err", err, "failures", s.failures)
		}
		return
	}
	if s.failures > 0 {
		s.log.Info("status node written again", "after_failures", s.failures)
		s.failures = 0
	}
}

func (s *statusNode) create(data []byte) error {
	session := s.conn.SessionID()
	_, err := s.conn.Create(s.path, data, zk.FlagEphemeral, s.acl)
	if errors.Is(err, zk.ErrNoNode) { // no runners node yet
		if _, perr := s.conn.Create(path.Dir(s.path), nil, 0, s.acl); perr != nil && !errors.Is(perr, zk.ErrNodeExists) {
			return perr
		}
		_, err = s.conn.Create(s.path, data, zk.FlagEphemeral, s.acl)
	}
	if errors.Is(err, zk.ErrNodeExists) {
		// Left by this container's previous session (a restart within the session timeout):
		// replace it, so that the node lives and dies with this session.
		if derr := s.conn.Delete(s.path, -1); derr != nil && !errors.Is(derr, zk.ErrNoNode) {
			return derr
		}
		_, err = s.conn.Create(s.path, data, zk.FlagEphemeral, s.acl)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.session = session
	s.mu.Unlock()
	return nil
}
