//go:build perotest

package main

import (
	"context"
	"os"
	"strings"
	"syscall"

	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/builtin"
)

// registry adds, in binaries built with -tags perotest for the runner's process tests, the
// function "crash": the sleep function, except that a page whose name contains the [crash]
// kill_marker kills the process with SIGKILL and one containing panic_marker panics.
//
//	[sleep]
//	seconds = 0.01
//	[crash]
//	kill_marker = POISON
//	panic_marker = PANIC
func registry() *function.Registry {
	r := builtin.Registry()
	r.Register("crash", func(ctx context.Context, opts function.Options) (function.Function, error) {
		ini, err := function.ParseINI(opts.Config)
		if err != nil {
			return nil, err
		}
		kill, panicMark := ini.String("crash", "kill_marker", ""), ini.String("crash", "panic_marker", "")
		inner, err := function.Sleep(ctx, opts)
		if err != nil {
			return nil, err
		}
		return function.Func(func(ctx context.Context, batch []function.Page) []function.Output {
			for _, p := range batch {
				if kill != "" && strings.Contains(p.Name, kill) {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
					select {}
				}
				if panicMark != "" && strings.Contains(p.Name, panicMark) {
					panic("crash: page " + p.Name)
				}
			}
			return inner.Process(ctx, batch)
		}), nil
	})
	return r
}
