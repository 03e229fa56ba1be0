package runner

import (
	"context"
	"errors"
	"time"
)

var (
	// errIdle: no message came within the idle timeout.
	errIdle = errors.New("queue stayed empty")
	// errSourceClosed: the consumer stopped handing over messages.
	errSourceClosed = errors.New("deliveries ended")
)

// batcher gathers jobs into batches: it takes what has already arrived, then waits a short
// while for more, up to the batch size. A suspect (a message that was in a batch when a runner
// died) always makes a batch of its own, so that a crash it causes again blames it alone.
type batcher struct {
	in    <-chan *job
	size  int
	wait  time.Duration
	clock Clock
	carry *job // a suspect that ended the previous batch, first in the next
}

// next returns the next batch. It waits up to idle for the first job (no limit when idle <= 0)
// and fails with errIdle when none came. When ctx ends or the source closes it returns the jobs
// gathered so far with the error; the caller hands them back.
func (b *batcher) next(ctx context.Context, idle time.Duration) ([]*job, error) {
	first := b.carry
	b.carry = nil
	if first == nil {
		var err error
		if first, err = b.first(ctx, idle); err != nil {
			return nil, err
		}
	}
	batch := []*job{first}
	if first.suspect() || b.size == 1 {
		return batch, nil
	}
	var timer Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < b.size {
		var (
			j   *job
			ok  bool
			got bool
		)
		// Take what is already there before arming a timer: with a backlog, batches fill
		// without waiting.
		select {
		case j, ok = <-b.in:
			got = true
		default:
		}
		if !got {
			if b.wait <= 0 {
				return batch, nil
			}
			if timer == nil {
				timer = b.clock.NewTimer(b.wait)
			}
			select {
			case j, ok = <-b.in:
			case <-timer.C():
				return batch, nil
			case <-ctx.Done():
				return batch, context.Cause(ctx)
			}
		}
		if !ok {
			return batch, errSourceClosed
		}
		if j.suspect() {
			b.carry = j
			return batch, nil
		}
		batch = append(batch, j)
	}
	return batch, nil
}

func (b *batcher) first(ctx context.Context, idle time.Duration) (*job, error) {
	select { // fast path: no timer when a job is waiting
	case j, ok := <-b.in:
		if !ok {
			return nil, errSourceClosed
		}
		return j, nil
	default:
	}
	var idleC <-chan time.Time
	if idle > 0 {
		t := b.clock.NewTimer(idle)
		defer t.Stop()
		idleC = t.C()
	}
	select {
	case j, ok := <-b.in:
		if !ok {
			return nil, errSourceClosed
		}
		return j, nil
	case <-idleC:
		return nil, errIdle
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// takeCarry returns and forgets the job held for the next batch, if any.
func (b *batcher) takeCarry() *job {
	j := b.carry
	b.carry = nil
	return j
}
