package watchdog

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	p := BackoffPolicy{Base: time.Second, Max: 10 * time.Second}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second},
		{5, 10 * time.Second}, {60, 10 * time.Second}} {
		if got := p.Delay(tc.n); got != tc.want {
			t.Errorf("Delay(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	if got := (BackoffPolicy{}).Delay(1); got != DefaultBackoffBase {
		t.Errorf("default Delay(1) = %s", got)
	}
}

func TestBackoffFailed(t *testing.T) {
	p := BackoffPolicy{QuickExit: 10 * time.Second}
	at := func(code int, ran time.Duration) Exit { return Exit{Code: code, Created: t0, Finished: t0.Add(ran)} }
	for _, tc := range []struct {
		name string
		e    Exit
		want bool
	}{
		{"ok quick", at(0, time.Second), false},
		{"ok long", at(0, time.Hour), false},
		{"internal quick", at(1, time.Second), true},
		{"internal after working", at(1, time.Minute), false},
		{"config error late", at(2, time.Minute), true},
		{"model error late", at(4, time.Minute), true},
		{"unavailable quick", at(3, 5*time.Second), true},
		{"oom kill quick", at(137, time.Second), true},
	} {
		if got := p.Failed(tc.e); got != tc.want {
			t.Errorf("%s: Failed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAfterExit(t *testing.T) {
	p := BackoffPolicy{QuickExit: 10 * time.Second, Base: time.Second, Max: time.Minute}
	fail := func(created time.Duration) Exit {
		return Exit{Code: 1, Created: t0.Add(created), Finished: t0.Add(created + time.Second)}
	}

	h := p.AfterExit(Health{}, fail(0), t0.Add(time.Second), 0)
	if h.Failures != 1 || h.Until != t0.Add(2*time.Second) || h.LastExitCode != 1 {
		t.Fatalf("first failure: %+v", h)
	}
	// Three more of the same generation (created before the failure was seen) count once.
	for range 3 {
		h = p.AfterExit(h, fail(0), t0.Add(1500*time.Millisecond), 0)
	}
	if h.Failures != 1 {
		t.Fatalf("same generation counted again: %+v", h)
	}
	// The probe launched after the backoff fails too: the delay doubles.
	h = p.AfterExit(h, fail(3*time.Second), t0.Add(4*time.Second), 0)
	if h.Failures != 2 || h.Until != t0.Add(6*time.Second) {
		t.Fatalf("second failure: %+v", h)
	}
	// Jitter stretches by up to a fifth.
	j := p.AfterExit(h, fail(7*time.Second), t0.Add(8*time.Second), 0.5)
	if j.Failures != 3 || j.Until != t0.Add(8*time.Second+4*time.Second+400*time.Millisecond) {
		t.Fatalf("jittered: %+v", j)
	}
	// A container of the old generation exiting well says nothing.
	if o := p.AfterExit(h, Exit{Code: 0, Created: t0, Finished: t0.Add(5 * time.Second)}, t0.Add(5*time.Second), 0); o != h {
		t.Fatalf("old success reset the record: %+v", o)
	}
	// A new container exiting well heals the stage.
	if o := p.AfterExit(h, Exit{Code: 0, Created: t0.Add(7 * time.Second), Finished: t0.Add(9 * time.Second)}, t0.Add(9*time.Second), 0); o != (Health{}) {
		t.Fatalf("new success did not heal: %+v", o)
	}
	// A crash after long work does not count.
	if o := p.AfterExit(h, Exit{Code: 1, Created: t0.Add(5 * time.Second), Finished: t0.Add(time.Hour)}, t0.Add(time.Hour), 0); o.Failures != 2 {
		t.Fatalf("late crash counted: %+v", o)
	}
}

func TestAfterAlive(t *testing.T) {
	p := BackoffPolicy{QuickExit: 10 * time.Second}
	h := Health{Failures: 2, LastFailure: t0, Until: t0.Add(time.Second)}
	if got := p.AfterAlive(h, t0.Add(2*time.Second), t0.Add(5*time.Second)); got != h {
		t.Errorf("young probe healed the stage: %+v", got)
	}
	if got := p.AfterAlive(h, t0.Add(-time.Second), t0.Add(time.Minute)); got != h {
		t.Errorf("container of the failed generation healed the stage: %+v", got)
	}
	if got := p.AfterAlive(h, t0.Add(2*time.Second), t0.Add(13*time.Second)); got != (Health{}) {
		t.Errorf("probe alive past QuickExit did not heal: %+v", got)
	}
}

func TestExitReason(t *testing.T) {
	for code, want := range map[int]string{0: "ok", 1: "internal", 2: "config", 3: "unavailable", 4: "model",
		5: "function", 137: "killed", 42: "other"} {
		if got := ExitReason(code); got != want {
			t.Errorf("ExitReason(%d) = %q, want %q", code, got, want)
		}
	}
}
