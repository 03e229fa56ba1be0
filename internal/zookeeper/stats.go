package zookeeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Timing is one container's processing totals for a stage. Each runner overwrites its own node
// with its running totals, so statistics need no lock shared between runners (the original took a
// ZooKeeper lock per update); readers aggregate the nodes.
type Timing struct {
	// Container identifies the runner's container; it names the node.
	Container string `json:"container"`
	// Messages is how many messages the container has processed.
	Messages int64 `json:"messages"`
	// Seconds is the time it spent processing them.
	Seconds float64 `json:"seconds"`
	// Updated is when the totals were taken; RecordTiming sets it when zero.
	Updated time.Time `json:"updated"`
}

// avgWeight is the weight of a new sample in the exponentially weighted avg_msg_time.
const avgWeight = 0.25

func (s *Store) statsPath(stage string) string { return s.stagePath(stage) + "/" + nodeStats }

// RecordTiming writes t to <stage>/stats/<container> (persistent, overwritten), then folds the
// sample's seconds per message into avg_msg_time as an exponentially weighted average, by
// compare-and-set on that node. ErrNotFound when the stage does not exist.
func (s *Store) RecordTiming(ctx context.Context, stage string, t Timing) error {
	if err := validateName(stage); err != nil {
		return fmt.Errorf("record timing: stage: %w", err)
	}
	if err := validateName(t.Container); err != nil {
		return fmt.Errorf("record timing of stage %q: container: %w", stage, err)
	}
	if t.Messages < 0 || t.Seconds < 0 || math.IsNaN(t.Seconds) || math.IsInf(t.Seconds, 0) {
		return fmt.Errorf("record timing of stage %q: messages and seconds must be >= 0", stage)
	}
	if t.Updated.IsZero() {
		t.Updated = s.now()
	}
	t.Updated = t.Updated.UTC()
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("record timing of stage %q: %w", stage, err)
	}
	if err := s.writeTiming(ctx, stage, t.Container, data); err != nil {
		return fmt.Errorf("record timing of stage %q container %q: %w", stage, t.Container, err)
	}
	if t.Messages == 0 {
		return nil
	}
	if err := s.foldAvgMsgTime(ctx, stage, t.Seconds/float64(t.Messages)); err != nil {
		return fmt.Errorf("record timing of stage %q: update %s: %w", stage, nodeAvgMsgTime, err)
	}
	return nil
}

// writeTiming overwrites or creates the container's node, creating the stats node of a stage made
// by the original, which has none.
func (s *Store) writeTiming(ctx context.Context, stage, container string, data []byte) error {
	p := s.statsPath(stage) + "/" + container
	for range 3 { // a node can come and go between Set and Create
		_, err := s.set(ctx, p, data, -1)
		if !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		err = s.create(ctx, p, data)
		if errors.Is(err, zk.ErrNoNode) { // no stats node
			err = s.create(ctx, s.statsPath(stage), nil)
			if errors.Is(err, zk.ErrNoNode) {
				return ErrNotFound
			}
			if err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return err
			}
			continue
		}
		if !errors.Is(err, zk.ErrNodeExists) {
			return err
		}
	}
	return ErrConflict
}

// foldAvgMsgTime sets avg_msg_time to avgWeight*sample + (1-avgWeight)*old, or to sample when
// there is no usable old value, retrying on concurrent writes.
func (s *Store) foldAvgMsgTime(ctx context.Context, stage string, sample float64) error {
	p := s.stagePath(stage) + "/" + nodeAvgMsgTime
	for attempt := 0; attempt < casAttempts; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, backoff(attempt-1)); err != nil {
				return err
			}
		}
		data, stat, ok, err := s.getNode(ctx, p)
		if err != nil {
			return err
		}
		avg := sample
		if old, err := decodeAvgMsgTime(data); err == nil && old > 0 && !math.IsInf(old, 0) {
			avg = avgWeight*sample + (1-avgWeight)*old
		} else if err != nil {
			s.log.Warn("replacing unreadable avg_msg_time", "stage", stage, "err", err)
		}
		enc := encodeAvgMsgTime(avg)
		if ok {
			_, err = s.set(ctx, p, enc, stat.Version)
		} else {
			err = s.create(ctx, p, enc)
			if errors.Is(err, zk.ErrNoNode) {
				return ErrNotFound
			}
		}
		if !isConflict(err) {
			return err
		}
	}
	return ErrConflict
}

// Timings returns the statistics nodes of the stage, sorted by container. Nodes that do not decode
// are skipped with a warning. ErrNotFound when the stage does not exist.
func (s *Store) Timings(ctx context.Context, stage string) ([]Timing, error) {
	if err := validateName(stage); err != nil {
		return nil, fmt.Errorf("timings: stage: %w", err)
	}
	dir := s.statsPath(stage)
	names, err := s.children(ctx, dir)
	if errors.Is(err, zk.ErrNoNode) {
		if ok, err := s.exists(ctx, s.stagePath(stage)); err != nil || !ok {
			return nil, fmt.Errorf("timings of stage %q: %w", stage, cmpErr(err, ErrNotFound))
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("timings of stage %q: %w", stage, err)
	}
	slices.Sort(names)
	out := make([]Timing, 0, len(names))
	for _, name := range names {
		data, _, ok, err := s.getNode(ctx, dir+"/"+name)
		if err != nil {
			return nil, fmt.Errorf("timings of stage %q: %w", stage, err)
		}
		if !ok { // removed meanwhile
			continue
		}
		var t Timing
		if err := json.Unmarshal(data, &t); err != nil {
			s.log.Warn("skipping unreadable statistics node", "stage", stage, "container", name, "err", err)
			continue
		}
		t.Container = name
		out = append(out, t)
	}
	return out, nil
}

// SecondsPerMessage returns the stage's seconds per message: total seconds over total messages of
// its statistics nodes, or avg_msg_time when they hold no messages (stages run by the original's
// workers); 0 when nothing was measured yet.
func (s *Store) SecondsPerMessage(ctx context.Context, stage string) (float64, error) {
	ts, err := s.Timings(ctx, stage)
	if err != nil {
		return 0, fmt.Errorf("seconds per message: %w", err)
	}
	var msgs int64
	var secs float64
	for _, t := range ts {
		if t.Messages > 0 {
			msgs += t.Messages
			secs += t.Seconds
		}
	}
	if msgs > 0 {
		return secs / float64(msgs), nil
	}
	data, _, _, err := s.getNode(ctx, s.stagePath(stage)+"/"+nodeAvgMsgTime)
	if err != nil {
		return 0, fmt.Errorf("seconds per message of stage %q: %w", stage, err)
	}
	avg, err := decodeAvgMsgTime(data)
	if err != nil {
		return 0, fmt.Errorf("seconds per message of stage %q: %s: %w", stage, nodeAvgMsgTime, err)
	}
	if avg < 0 || math.IsNaN(avg) || math.IsInf(avg, 0) {
		return 0, fmt.Errorf("seconds per message of stage %q: %s: %s is not a duration", stage, nodeAvgMsgTime,
			strings.TrimSpace(string(data)))
	}
	return avg, nil
}

// RemoveTiming deletes the container's statistics node; ErrNotFound when it does not exist.
func (s *Store) RemoveTiming(ctx context.Context, stage, container string) error {
	if err := validateName(stage); err != nil {
		return fmt.Errorf("remove timing: stage: %w", err)
	}
	if err := validateName(container); err != nil {
		return fmt.Errorf("remove timing: container: %w", err)
	}
	err := s.delete(ctx, s.statsPath(stage)+"/"+container, -1)
	if errors.Is(err, zk.ErrNoNode) {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("remove timing of stage %q container %q: %w", stage, container, err)
	}
	return nil
}
