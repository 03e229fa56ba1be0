//go:build !cgo

package ocr

import "errors"

// RuntimeAvailable reports whether this build can run models (it needs cgo).
const RuntimeAvailable = false

var errNoCgo = errors.New("this binary was built without cgo, so it cannot load ONNX Runtime; build with CGO_ENABLED=1")

// InitRuntime always fails in a build without cgo.
func InitRuntime(path string) error { return errNoCgo }

// RuntimePath returns "".
func RuntimePath() string { return "" }

type sessionOptions struct {
	threads int
	device  string
}

type ortSession struct {
	warning           string
	inShape, outShape []int64
}

func newSession(path string, o sessionOptions) (*ortSession, error) { return nil, errNoCgo }

func (s *ortSession) run(input []float32, shape []int64) ([]float32, []int64, error) {
	return nil, nil, errNoCgo
}

func (s *ortSession) runInto(input []float32, shape []int64, output []float32, outShape []int64) error {
	return errNoCgo
}

func (s *ortSession) close() error { return nil }
