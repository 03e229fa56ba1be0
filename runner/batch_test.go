package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pero-worker/pero-worker/internal/message"
)

type nopAck struct{}

func (nopAck) Ack() error      { return nil }
func (nopAck) Nack(bool) error { return nil }

func testJob(name string, attempts int32) *job {
	return &job{ack: nopAck{}, req: &message.ProcessingRequest{Uuid: name, Attempts: attempts}}
}

func names(b []*job) []string {
	var out []string
	for _, j := range b {
		out = append(out, j.req.GetUuid())
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBatcherFillsFromBacklogWithoutWaiting(t *testing.T) {
	in := make(chan *job, 10)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		in <- testJob(n, 0)
	}
	clk := newFakeClock(time.Unix(0, 0))
	b := &batcher{in: in, size: 3, wait: time.Hour, clock: clk}
	got, err := b.next(t.Context(), time.Hour)
	if err != nil || !equal(names(got), []string{"a", "b", "c"}) {
		t.Fatalf("got %v, %v", names(got), err)
	}
}

func TestBatcherWaitsBrieflyForMore(t *testing.T) {
	in := make(chan *job, 10)
	clk := newFakeClock(time.Unix(0, 0))
	b := &batcher{in: in, size: 4, wait: 50 * time.Millisecond, clock: clk}
	in <- testJob("a", 0)
	type res struct {
		b   []*job
		err error
	}
	done := make(chan res)
	go func() {
		got, err := b.next(t.Context(), time.Hour)
		done <- res{got, err}
	}()
	clk.waitTimer() // the fill timer
	in <- testJob("b", 0)
	clk.Advance(50 * time.Millisecond)
	r := <-done
	if r.err != nil || !equal(names(r.b), []string{"a", "b"}) {
		t.Fatalf("got %v, %v; want [a b]", names(r.b), r.err)
	}
}

func TestBatcherZeroWaitTakesWhatIsThere(t *testing.T) {
	in := make(chan *job, 10)
	in <- testJob("a", 0)
	b := &batcher{in: in, size: 4, wait: 0, clock: newFakeClock(time.Unix(0, 0))}
	got, err := b.next(t.Context(), time.Hour)
	if err != nil || !equal(names(got), []string{"a"}) {
		t.Fatalf("got %v, %v", names(got), err)
	}
}

func TestBatcherIdle(t *testing.T) {
	in := make(chan *job)
	clk := newFakeClock(time.Unix(0, 0))
	b := &batcher{in: in, size: 4, wait: time.Millisecond, clock: clk}
	done := make(chan error)
	go func() {
		_, err := b.next(t.Context(), 30*time.Second)
		done <- err
	}()
	clk.waitTimer()
	clk.Advance(29 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("returned early: %v", err)
	default:
	}
	clk.Advance(time.Second)
	if err := <-done; !errors.Is(err, errIdle) {
		t.Fatalf("err = %v, want errIdle", err)
	}
}

func TestBatcherIsolatesSuspects(t *testing.T) {
	in := make(chan *job, 10)
	for _, j := range []*job{testJob("a", 0), testJob("b", 0), testJob("s1", 1), testJob("c", 0), testJob("s2", 2)} {
		in <- j
	}
	b := &batcher{in: in, size: 8, wait: 0, clock: newFakeClock(time.Unix(0, 0))}
	var batches [][]string
	for range 4 {
		got, err := b.next(t.Context(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, names(got))
	}
	want := [][]string{{"a", "b"}, {"s1"}, {"c"}, {"s2"}}
	for i := range want {
		if !equal(batches[i], want[i]) {
			t.Fatalf("batches %v, want %v", batches, want)
		}
	}
}

func TestBatcherSourceClosedAndCancel(t *testing.T) {
	in := make(chan *job, 2)
	in <- testJob("a", 0)
	close(in)
	b := &batcher{in: in, size: 4, wait: time.Hour, clock: newFakeClock(time.Unix(0, 0))}
	got, err := b.next(t.Context(), time.Hour)
	if !errors.Is(err, errSourceClosed) || !equal(names(got), []string{"a"}) {
		t.Fatalf("got %v, %v; want the partial batch and errSourceClosed", names(got), err)
	}
	if _, err := b.next(t.Context(), time.Hour); !errors.Is(err, errSourceClosed) {
		t.Fatalf("err = %v", err)
	}

	in2 := make(chan *job, 2)
	in2 <- testJob("x", 0)
	clk := newFakeClock(time.Unix(0, 0))
	b2 := &batcher{in: in2, size: 4, wait: time.Hour, clock: clk}
	ctx, cancel := context.WithCancelCause(t.Context())
	done := make(chan error)
	var partial []*job
	go func() {
		var err error
		partial, err = b2.next(ctx, time.Hour)
		done <- err
	}()
	clk.waitTimer()
	cancel(errStopped)
	if err := <-done; !errors.Is(err, errStopped) || !equal(names(partial), []string{"x"}) {
		t.Fatalf("got %v, %v; want [x] and the cause", names(partial), err)
	}
}
