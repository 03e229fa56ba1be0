package function

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrMarked is the error of a page that the sleep function fails on purpose.
var ErrMarked = errors.New("page name contains the failure marker")

// SleepConfig configures the sleep function, read from section [sleep]:
//
//	[sleep]
//	seconds = 0.05   ; time spent per page (default 0: return at once)
//	fail_marker = FAIL ; pages whose name contains it fail (default "": none)
type SleepConfig struct {
	Per        time.Duration
	FailMarker string
}

// ParseSleepConfig reads the [sleep] section of a config.ini text.
func ParseSleepConfig(text string) (SleepConfig, error) {
	ini, err := ParseINI(text)
	if err != nil {
		return SleepConfig{}, err
	}
	per, err := ini.Seconds("sleep", "seconds", 0)
	if err != nil {
		return SleepConfig{}, err
	}
	return SleepConfig{Per: per, FailMarker: ini.String("sleep", "fail_marker", "")}, nil
}

// Sleep returns a function that spends a configured time per page, honouring
// ctx, and fails the pages whose name contains the configured marker. System
// tests use it to stand in for a slow model.
func Sleep(ctx context.Context, opts Options) (Function, error) {
	cfg, err := ParseSleepConfig(opts.Config)
	if err != nil {
		return nil, err
	}
	return Func(func(ctx context.Context, batch []Page) []Output {
		out := make([]Output, len(batch))
		var timer *time.Timer
		for i, p := range batch {
			if cfg.Per > 0 {
				if timer == nil {
					timer = time.NewTimer(cfg.Per)
					defer timer.Stop()
				} else {
					timer.Reset(cfg.Per)
				}
				select {
				case <-ctx.Done():
					Cancelled(ctx, out, i)
					return out
				case <-timer.C:
				}
			} else if ctx.Err() != nil {
				Cancelled(ctx, out, i)
				return out
			}
			if cfg.FailMarker != "" && strings.Contains(p.Name, cfg.FailMarker) {
				out[i] = Output{Err: fmt.Errorf("page %s: %w", p.Name, ErrMarked)}
				continue
			}
			out[i] = Output{Log: fmt.Sprintf("slept %s", cfg.Per)}
		}
		return out
	}), nil
}
