// Command pero-runner is the runtime of a function container: it serves one stage, taking
// batches from the stage's queue, running the function on them and forwarding every result,
// and exits when the queue stays empty, a limit is reached or it is told to stop. The
// environment configures it and the exit code says how it ended; see package runner.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pero-worker/pero-worker/runner"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := runner.New(os.Environ())
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("pero-runner: bad configuration", "err", err)
		return runner.ExitCode(err)
	}
	log := runner.NewLogger(cfg, os.Stderr)
	r, err := runner.NewRunner(cfg, runner.Deps{Registry: registry(), Logger: log})
	if err != nil {
		log.Error("pero-runner", "err", err)
		return runner.ExitConfig
	}

	// SIGTERM or SIGINT: stop taking messages and drain within the grace period; a second
	// signal cancels the current batch at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal received: stopping", "signal", s.String())
			go r.Stop()
		case <-r.Done():
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: cancelling the current batch", "signal", s.String())
			r.Abort()
		case <-r.Done():
		}
	}()

	if err := r.Start(context.Background()); err != nil {
		return runner.ExitCode(err)
	}
	_, err = r.Wait()
	return runner.ExitCode(err)
}
