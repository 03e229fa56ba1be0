package runner

import (
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/pero-worker/pero-worker/internal/ftpstore"
)

// A download that fills the model cache is a model that does not fit (ExitModel), not a file
// server that cannot be reached: syscall.Errno satisfies net.Error, which once sent it to
// ExitUnavailable.
func TestModelExitCodeOfAFullCache(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"cache full", fmt.Errorf("download m from ftp://u@h:21: %w",
			&fs.PathError{Op: "write", Path: "/var/cache/pero/tmp/x", Err: syscall.ENOSPC}), ExitModel},
		{"quota", &fs.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, ExitModel},
		{"server refuses", fmt.Errorf("download: %w", syscall.ECONNREFUSED), ExitUnavailable},
		{"login refused", fmt.Errorf("download: %w", ftpstore.ErrAuth), ExitUnavailable},
		{"not on the server", fmt.Errorf("download: %w", ftpstore.ErrNotFound), ExitModel},
	}
	for _, tc := range tests {
		if got := modelExitCode(tc.err); got != tc.want {
			t.Errorf("%s: exit code %d, want %d", tc.name, got, tc.want)
		}
	}
}
