package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	low := func() float64 { return 0 }
	high := func() float64 { return 0.999999 }
	tests := []struct {
		attempt  int
		rnd      func() float64
		min, max time.Duration
	}{
		{0, low, 50 * time.Millisecond, 50 * time.Millisecond},
		{0, high, 99 * time.Millisecond, 100 * time.Millisecond},
		{3, low, 400 * time.Millisecond, 400 * time.Millisecond},
		{30, high, 999 * time.Millisecond, time.Second}, // capped
	}
	for _, tc := range tests {
		d := Delay(tc.attempt, 100*time.Millisecond, time.Second, tc.rnd)
		if d < tc.min || d > tc.max {
			t.Errorf("Delay(%d) = %v, want [%v, %v]", tc.attempt, d, tc.min, tc.max)
		}
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep = %v", err)
	}
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
