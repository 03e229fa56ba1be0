package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/go-zookeeper/zk"
)

// WatchStage sends the current stage, then the stage again after every configuration change, until
// ctx ends. It fails at once with ErrNotFound when the stage does not exist.
//
// A change is a write to any node of the stage except avg_msg_time and stats, which change with
// every statistics update; each Stage sent is a full read, so its AvgMsgTime is current as of that
// read. A slow reader skips intermediate states and always gets the latest. The watch survives
// reconnects and session expiry (it re-reads and re-arms). The channel is closed when ctx ends, the
// Store is closed, or the stage is deleted.
func (s *Store) WatchStage(ctx context.Context, name string) (<-chan Stage, error) {
	if err := validateName(name); err != nil {
		return nil, fmt.Errorf("watch stage: name: %w", err)
	}
	w := &stageWatch{
		s:       s,
		name:    name,
		dir:     s.stagePath(name),
		cache:   map[string]node{},
		pending: map[string]<-chan zk.Event{},
	}
	st, err := w.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch stage %q: %w", name, err)
	}
	out := make(chan Stage, 1)
	out <- st

	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return nil, fmt.Errorf("watch stage %q: %w", name, zk.ErrClosing)
	default:
	}
	s.wg.Add(1)
	go w.run(ctx, out, st)
	return out, nil
}

// stageWatch keeps one ZooKeeper watch per node of the stage. A node whose watch has not fired
// has not changed, so its cached data is still current and it is not read again.
type stageWatch struct {
	s       *Store
	name    string
	dir     string
	cache   map[string]node            // field node -> data as of its pending watch
	pending map[string]<-chan zk.Event // node ("" = the stage node) -> its armed watch
}

func (w *stageWatch) run(ctx context.Context, out chan Stage, last Stage) {
	defer w.s.wg.Done()
	defer close(out)
	log := w.s.log.With("stage", w.name)
	failures := 0
	for {
		if !w.wait(ctx) {
			return
		}
		for {
			st, err := w.read(ctx)
			if err == nil {
				if failures > 0 {
					log.Info("watch stage recovered", "failures", failures)
				}
				failures = 0
				if st != last {
					select { // keep only the latest for a slow reader
					case <-out:
					default:
					}
					out <- st
					last = st
				}
				break
			}
			if errors.Is(err, ErrNotFound) {
				log.Debug("stage deleted; watch ends")
				return
			}
			if ctx.Err() != nil || w.closed() {
				return
			}
			if failures == 0 {
				log.Warn("watch stage: read failed; retrying", "err", err)
			} else {
				log.Debug("watch stage: read failed; retrying", "err", err, "failures", failures)
			}
			if !w.sleep(ctx, backoff(failures)) {
				return
			}
			failures++
		}
	}
}

func (w *stageWatch) closed() bool {
	select {
	case <-w.s.closed:
		return true
	default:
		return false
	}
}

// sleep waits d; false when ctx ends or the Store closes first.
func (w *stageWatch) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.s.closed:
		return false
	}
}

// wait blocks until a watch fires; false when ctx ends or the Store closes.
func (w *stageWatch) wait(ctx context.Context) bool {
	cases := []reflect.SelectCase{
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(w.s.closed)},
	}
	for _, ch := range w.pending {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	i, _, _ := reflect.Select(cases)
	return i >= 2
}

// sweep forgets every node whose watch fired. A watch the library gave up on (the session expired)
// fires with EventNotWatching; all others got the same, so everything is read again.
func (w *stageWatch) sweep() {
	for p, ch := range w.pending {
		select {
		case ev, ok := <-ch:
			if ok && ev.Type == zk.EventNotWatching {
				clear(w.pending)
				clear(w.cache)
				return
			}
			delete(w.pending, p)
			delete(w.cache, p)
		default:
		}
	}
}

// read returns the stage, reading only the nodes whose watch fired and arming a new watch on them.
func (w *stageWatch) read(ctx context.Context) (Stage, error) {
	w.sweep()
	if _, ok := w.pending[""]; !ok {
		n, ch, err := w.getW(ctx, w.dir)
		if err != nil {
			return Stage{}, err
		}
		w.pending[""] = ch
		if !n.exists {
			return Stage{}, ErrNotFound
		}
	}
	nodes := make(stageNodes, len(stageFields))
	for _, f := range stageFields {
		p := w.dir + "/" + f
		if f == nodeAvgMsgTime { // never a trigger: read it fresh, unwatched
			data, stat, ok, err := w.s.getNode(ctx, p)
			if err != nil {
				return Stage{}, err
			}
			if ok {
				nodes[f] = node{data: data, version: stat.Version, exists: true}
			}
			continue
		}
		if _, ok := w.pending[f]; !ok {
			n, ch, err := w.getW(ctx, p)
			if err != nil {
				return Stage{}, err
			}
			w.cache[f], w.pending[f] = n, ch
		}
		nodes[f] = w.cache[f]
	}
	return decodeStage(w.name, nodes)
}

// getW reads p and arms a watch on it: a data watch when it exists, a creation watch when not.
func (w *stageWatch) getW(ctx context.Context, p string) (node, <-chan zk.Event, error) {
	type result struct {
		n  node
		ch <-chan zk.Event
	}
	conn := w.s.conn
	r, err := Call(ctx, func() (result, error) {
		data, stat, ch, err := conn.GetW(p)
		if err == nil {
			return result{node{data: data, version: stat.Version, exists: true}, ch}, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return result{}, err
		}
		ok, _, ch, err := conn.ExistsW(p)
		if err != nil || !ok {
			return result{ch: ch}, err
		}
		// Created in between: the watch is armed, so a plain read cannot miss a later change.
		data, stat, err = conn.Get(p)
		if errors.Is(err, zk.ErrNoNode) {
			return result{ch: ch}, nil
		}
		if err != nil {
			return result{}, err
		}
		return result{node{data: data, version: stat.Version, exists: true}, ch}, nil
	})
	return r.n, r.ch, err
}
