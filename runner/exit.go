package runner

import (
	"errors"
	"fmt"
)

// Exit codes of pero-runner. The watchdog reads them to tell a finished runner from a broken
// stage and backs off relaunching for the non-zero ones.
const (
	// ExitOK: the runner finished: idle timeout, max batches, max lifetime, a changed or deleted
	// stage, or a stop signal after draining.
	ExitOK = 0
	// ExitInternal: an unexpected failure, a bug.
	ExitInternal = 1
	// ExitConfig: the environment or the stage's configuration is wrong (a bad variable, a
	// missing stage, invalid settings, an unknown function, a queue declared with other
	// arguments, an output stage). Relaunching will not help until someone changes it.
	ExitConfig = 2
	// ExitUnavailable: ZooKeeper, RabbitMQ or the file server could not be reached within
	// PERO_CONNECT_TIMEOUT, refused the credentials, or RabbitMQ was lost and not regained.
	ExitUnavailable = 3
	// ExitModel: the stage's model could not be made ready: the archive is missing on the file
	// server, fails its SHA-256, is corrupt or unsafe to extract, does not fit the cache, or the
	// function failed to initialise with it. No message was taken.
	ExitModel = 4
	// ExitFunction: the function kept panicking or did not return after its batch timeout; the
	// messages of the batch went back to the queue and count as a delivery.
	ExitFunction = 5
)

// ExitError is an error with the exit code it stands for.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// exitErr wraps err with code unless it already carries one.
func exitErr(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return &ExitError{Code: code, Err: err}
}

func exitErrf(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// ExitCode is the process exit code for the result of Runner.Wait: 0 for nil, the code of an
// ExitError, ExitInternal otherwise.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitInternal
}
