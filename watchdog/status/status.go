// Package status is what the leading watchdog publishes about the containers it runs, in an
// ephemeral znode that `pero status` reads: it disappears with the watchdog's session, so a
// status that is there is current.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/go-zookeeper/zk"
)

// Path is the status node under the root: <root>/watchdog/status.
func Path(root string) string { return path.Join(root, "watchdog", "status") }

// Status is the JSON of the status node.
type Status struct {
	// Watchdog is the id of the leading watchdog.
	Watchdog string `json:"watchdog"`
	// Backend is "docker" or "swarm".
	Backend string    `json:"backend"`
	Updated time.Time `json:"updated"`
	// CPUSlots and CPUSlotsUsed describe the capacity; CPUSlots 0 means unlimited.
	CPUSlots     int `json:"cpu_slots"`
	CPUSlotsUsed int `json:"cpu_slots_used"`
	// GPUs and GPUsUsed count the devices of the ledger and those held.
	GPUs     int     `json:"gpus"`
	GPUsUsed int     `json:"gpus_used"`
	Stages   []Stage `json:"stages"`
}

// Stage is one stage's containers and the watchdog's view of its work.
type Stage struct {
	Name     string `json:"name"`
	Starting int    `json:"starting"`
	Running  int    `json:"running"`
	Draining int    `json:"draining"`
	Desired  int    `json:"desired"`
	Backlog  int    `json:"backlog"`
	// Held says why the stage has fewer containers than it wants ("" when it has them all).
	Held string `json:"held,omitempty"`
	// BackoffUntil is set while the stage's failing containers hold back its launches.
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	// Failures counts its consecutive failed launches.
	Failures int `json:"failures,omitempty"`
}

// Containers is the number of the stage's live containers.
func (s Stage) Containers() int { return s.Starting + s.Running + s.Draining }

// Find returns the stage named name.
func (s Status) Find(name string) (Stage, bool) {
	for _, st := range s.Stages {
		if st.Name == name {
			return st, true
		}
	}
	return Stage{}, false
}

// ErrNone: no watchdog leads (or none publishes its status).
var ErrNone = errors.New("no watchdog status")

// Getter is the part of *zk.Conn Read uses.
type Getter interface {
	Get(path string) ([]byte, *zk.Stat, error)
}

// Read returns the status the leading watchdog published under root; ErrNone when there is none.
func Read(ctx context.Context, conn Getter, root string) (Status, error) {
	type res struct {
		data []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		d, _, err := conn.Get(Path(root))
		ch <- res{d, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	if errors.Is(r.err, zk.ErrNoNode) {
		return Status{}, ErrNone
	}
	if r.err != nil {
		return Status{}, fmt.Errorf("read watchdog status: %w", r.err)
	}
	var s Status
	if err := json.Unmarshal(r.data, &s); err != nil {
		return Status{}, fmt.Errorf("read watchdog status %s: %w", Path(root), err)
	}
	return s, nil
}
