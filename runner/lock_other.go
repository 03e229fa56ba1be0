//go:build !unix

package runner

import (
	"errors"
	"os"
)

var errNoFlock = errors.New("the model cache needs file locks (a unix system)")

func flock(*os.File, bool) (bool, error) { return false, errNoFlock }

func funlock(*os.File) error { return errNoFlock }
