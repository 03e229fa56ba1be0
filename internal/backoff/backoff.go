// Package backoff holds the retry pacing every loop shares: exponential delays with jitter,
// so that clients that failed together do not retry together, and sleeps that end with
// their context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay is the pause before retry attempt n (from 0): lo·2ⁿ capped at hi, drawn from the
// upper half [d/2, d). rnd returns a float in [0, 1); nil means math/rand.
func Delay(attempt int, lo, hi time.Duration, rnd func() float64) time.Duration {
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return Jitter(d, rnd)
}

// Jitter spreads d over [d/2, d).
func Jitter(d time.Duration, rnd func() float64) time.Duration {
	if d < 2 {
		return d
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	half := d / 2
	return half + time.Duration(rnd()*float64(d-half))
}

// Sleep waits for d or until ctx ends, returning ctx's error in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
