package watchdog

import (
	"cmp"
	"time"

	"github.com/pero-worker/pero-worker/runner"
)

// The runner's exit codes; the watchdog reads them to tell a finished runner from a broken stage.
const (
	exitOK          = runner.ExitOK
	exitInternal    = runner.ExitInternal
	exitConfig      = runner.ExitConfig
	exitUnavailable = runner.ExitUnavailable
	exitModel       = runner.ExitModel
	exitFunction    = runner.ExitFunction
)

// ExitReason names a container's exit code for logs and metrics.
func ExitReason(code int) string {
	switch code {
	case exitOK:
		return "ok"
	case exitInternal:
		return "internal"
	case exitConfig:
		return "config"
	case exitUnavailable:
		return "unavailable"
	case exitModel:
		return "model"
	case exitFunction:
		return "function"
	case 137:
		return "killed"
	case 139:
		return "segfault"
	}
	return "other"
}

// Health is the failure record of one stage; BackoffPolicy moves it. The zero value is healthy.
type Health struct {
	// Failures counts consecutive failed generations of containers; 0 means healthy.
	Failures int
	// LastFailure is when the latest failure was recorded. Containers created until then belong
	// to the generation already counted: several containers failing together count once.
	LastFailure time.Time
	// Until: no launch for the stage before this instant.
	Until time.Time
	// LastExitCode is the exit code of the latest failure.
	LastExitCode int
}

// Exit is how a container ended.
type Exit struct {
	Code int
	// Created and Finished bound its life.
	Created, Finished time.Time
}

// BackoffPolicy decides how long a failing stage waits. Zero fields take the defaults named on
// them.
type BackoffPolicy struct {
	// QuickExit: a container that exits non-zero within this time of its creation failed to
	// start, whatever its code; a container alive this long proves the stage healthy. Default 30s.
	QuickExit time.Duration
	// Base is the first backoff; each further failure doubles it. Default 2s.
	Base time.Duration
	// Max caps the backoff. Default 5m.
	Max time.Duration
}

// Defaults of BackoffPolicy.
const (
	DefaultQuickExit   = 30 * time.Second
	DefaultBackoffBase = 2 * time.Second
	DefaultBackoffMax  = 5 * time.Minute
)

func (p BackoffPolicy) withDefaults() BackoffPolicy {
	p.QuickExit = cmp.Or(p.QuickExit, DefaultQuickExit)
	p.Base = cmp.Or(p.Base, DefaultBackoffBase)
	p.Max = cmp.Or(p.Max, DefaultBackoffMax)
	return p
}

// Failed reports whether an exit counts against the stage. A zero exit never does. A
// configuration or model error always does: relaunching cannot help until someone changes the
// stage. Any other non-zero code counts when the container died young; a runner that worked a
// while and then crashed is reported but does not hold the stage back.
func (p BackoffPolicy) Failed(e Exit) bool {
	p = p.withDefaults()
	switch e.Code {
	case exitOK:
		return false
	case exitConfig, exitModel:
		return true
	}
	return e.Finished.Sub(e.Created) < p.QuickExit
}

// Delay is the backoff after n consecutive failures (n >= 1): Base doubling up to Max.
func (p BackoffPolicy) Delay(n int) time.Duration {
	p = p.withDefaults()
	if n < 1 {
		return 0
	}
	d := p.Base
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// AfterExit returns the stage's health after a container exited; now is when the exit was seen.
// jitter, in [0, 1), spreads the backoff by up to a fifth so that stages failing together do not
// retry together.
func (p BackoffPolicy) AfterExit(h Health, e Exit, now time.Time, jitter float64) Health {
	if e.Code == exitOK {
		if h.Failures == 0 || e.Created.After(h.LastFailure) {
			return Health{}
		}
		return h // an older container finishing well says nothing about the newer failures
	}
	if !p.Failed(e) {
		return h
	}
	h.LastExitCode = e.Code
	if h.Failures > 0 && !e.Created.After(h.LastFailure) {
		return h // same generation as the failure already counted
	}
	h.Failures++
	h.LastFailure = now
	d := p.Delay(h.Failures)
	d += time.Duration(float64(d) * 0.2 * min(max(jitter, 0), 1))
	h.Until = now.Add(d)
	return h
}

// AfterAlive returns the stage's health given a container created at created and still alive at
// now: one that outlived QuickExit and belongs to a generation after the last failure proves the
// stage healthy.
func (p BackoffPolicy) AfterAlive(h Health, created, now time.Time) Health {
	p = p.withDefaults()
	if h.Failures == 0 || !created.After(h.LastFailure) || now.Sub(created) < p.QuickExit {
		return h
	}
	return Health{}
}
