package runner

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pero-worker/pero-worker/internal/zookeeper"
)

// counters are the runner's running totals, shared by the components that report them.
type counters struct {
	batches      atomic.Int64
	messages     atomic.Int64 // processed and answered (forwarded or failed to the output stage)
	failed       atomic.Int64 // sent to the output stage with status Failed
	deadLettered atomic.Int64
	requeued     atomic.Int64 // redelivered messages put back with their count
	handedBack   atomic.Int64 // nacked back to the queue unprocessed
	inFlight     atomic.Int64 // messages in the batch being processed
}

// timingStore is the part of *zookeeper.Store the statistics need.
type timingStore interface {
	RecordTiming(ctx context.Context, stage string, t zookeeper.Timing) error
}

var _ timingStore = (*zookeeper.Store)(nil)

// stats measures seconds per message, batch by batch, and writes the container's totals to
// ZooKeeper (RecordTiming: its own node plus a compare-and-set on avg_msg_time, no lock) at
// most once per interval, and once more at Stop. It also logs one progress line per interval.
type stats struct {
	store     timingStore
	stage     string
	container string
	interval  time.Duration
	clock     Clock
	log       *slog.Logger
	counters  *counters

	mu       sync.Mutex
	messages int64
	seconds  float64
	written  int64 // messages at the last successful write

	// progress line
	lastMsgs int64
	lastTime time.Time

	startOnce, stopOnce sync.Once
	wg                  sync.WaitGroup
	cancel              context.CancelFunc
	failures            int
}

// add records a batch of n messages that took d from the function call to the last ack.
func (s *stats) add(n int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages += int64(n)
	s.seconds += d.Seconds()
}

// Start writes the totals every interval until Stop.
func (s *stats) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		ctx, s.cancel = context.WithCancel(ctx)
		s.lastTime = s.clock.Now()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for sleep(ctx, s.clock, s.interval) {
				s.flush(ctx)
				s.progress()
			}
		}()
	})
}

// Stop ends the loop and writes the final totals. Safe twice and before Start.
func (s *stats) Stop() {
	s.stopOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.flush(ctx)
	})
}

// flush writes the totals when they changed since the last write.
func (s *stats) flush(ctx context.Context) {
	s.mu.Lock()
	t := zookeeper.Timing{Container: s.container, Messages: s.messages, Seconds: s.seconds, Updated: s.clock.Now()}
	changed := s.messages != s.written
	s.mu.Unlock()
	if !changed {
		return
	}
	if err := s.store.RecordTiming(ctx, s.stage, t); err != nil {
		s.failures++
		// One warning, then one a minute (at the default interval) while ZooKeeper stays away.
		if s.failures == 1 || s.failures%12 == 0 {
			s.log.Warn("cannot write statistics", "err", err, "failures", s.failures)
		}
		return
	}
	if s.failures > 0 {
		s.log.Info("statistics written again", "after_failures", s.failures)
		s.failures = 0
	}
	s.mu.Lock()
	s.written = t.Messages
	s.mu.Unlock()
}

// progress logs what happened since the last line, when anything did.
func (s *stats) progress() {
	now := s.clock.Now()
	msgs := s.counters.messages.Load()
	if msgs == s.lastMsgs {
		s.lastTime = now
		return
	}
	el := now.Sub(s.lastTime).Seconds()
	s.mu.Lock()
	perMsg := 0.0
	if s.messages > 0 {
		perMsg = s.seconds / float64(s.messages)
	}
	s.mu.Unlock()
	s.log.Info("progress",
		"batches", s.counters.batches.Load(),
		"messages", msgs,
		"failed", s.counters.failed.Load(),
		"dead_lettered", s.counters.deadLettered.Load(),
		"msg_per_s", float64(msgs-s.lastMsgs)/max(el, 1e-9),
		"s_per_msg", perMsg)
	s.lastMsgs, s.lastTime = msgs, now
}
