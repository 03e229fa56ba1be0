//go:build cgo

package ocr

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// The ONNX Runtime environment is global to the process in onnxruntime_go
// (InitializeEnvironment may be called once), so its initialisation is the one
// piece of package-level state here: guarded by a mutex, done once, and
// retried after a failure so that a fixed path can be tried again.
var runtimeState struct {
	mu   sync.Mutex
	path string // library path the environment was initialised with
}

// RuntimeAvailable reports whether this build can run models (it needs cgo).
const RuntimeAvailable = true

// InitRuntime loads the ONNX Runtime shared library at path and initialises
// the environment, once per process. Later calls return nil when it is
// already initialised, with any existing path: the library cannot be swapped
// inside a process, so a different path is logged by the caller, not
// refused. A missing file is a clear error that says how to get the library.
func InitRuntime(path string) error {
	if path == "" {
		path = DefaultLibrary
	}
	// A configured file that is missing is an error even when another
	// library is already loaded: the configuration is wrong either way.
	if strings.ContainsRune(path, '/') {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("onnx runtime library %s: %w (run `make models` or set %s)", path, errNotExist(err), EnvLibrary)
		}
	}
	runtimeState.mu.Lock()
	defer runtimeState.mu.Unlock()
	if ort.IsInitialized() {
		return nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("load onnx runtime library %s: %w (run `make models` or set %s)", path, err, EnvLibrary)
	}
	runtimeState.path = path
	return nil
}

// RuntimePath returns the library the environment was initialised with, "" when not yet.
func RuntimePath() string {
	runtimeState.mu.Lock()
	defer runtimeState.mu.Unlock()
	return runtimeState.path
}

// sessionOptions describes how a model session is built.
type sessionOptions struct {
	threads int    // intra-op threads; 0 = 1
	device  string // "cpu" or "cuda:N"
}

// ortSession runs one model with one float32 input and one float32 output.
// A session is safe for concurrent runs (ONNX Runtime allows concurrent Run
// calls on one session), which is how pages and lines run in parallel.
type ortSession struct {
	s       *ort.DynamicAdvancedSession
	input   string
	output  string
	warning string // set when the requested device could not be used
	// Declared input and output shapes; -1 (or another negative value)
	// marks a dynamic dimension.
	inShape, outShape []int64
}

func newSession(path string, o sessionOptions) (*ortSession, error) {
	if !ort.IsInitialized() {
		return nil, errors.New("onnx runtime not initialised")
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("model %s: %w", path, errNotExist(err))
	}
	ins, outs, err := inputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if len(ins) != 1 || len(outs) != 1 {
		return nil, fmt.Errorf("model %s: want one input and one output, got %d and %d", path, len(ins), len(outs))
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer opts.Destroy()
	threads := max(o.threads, 1)
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	if threads == 1 {
		// One thread: never spin waiting for work that will not come.
		_ = opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
	}
	// Full graph optimisation (fusions and the NCHWc conv layout) halves
	// the recognition time against none: measured by BenchmarkRecModel.
	if err := opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	s := &ortSession{input: ins[0].Name, output: outs[0].Name,
		inShape: ins[0].Dimensions, outShape: outs[0].Dimensions}
	if dev, ok := strings.CutPrefix(o.device, "cuda"); ok {
		id := strings.TrimPrefix(dev, ":")
		if id == "" {
			id = "0"
		}
		if err := appendCUDA(opts, id); err != nil {
			s.warning = fmt.Sprintf("device %s unavailable, running on CPU: %v", o.device, err)
		}
	}
	sess, err := ort.NewDynamicAdvancedSession(path, []string{s.input}, []string{s.output}, opts)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	s.s = sess
	return s, nil
}

// inputOutputInfo reads the names and shapes of a model's inputs and
// outputs. onnxruntime_go does so by loading the model into a temporary
// session; without graph optimisation that costs a fraction of a real one
// (optimising the detector is most of its load time).
func inputOutputInfo(path string) ([]ort.InputOutputInfo, []ort.InputOutputInfo, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, nil, fmt.Errorf("session options: %w", err)
	}
	defer opts.Destroy()
	if err := opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelDisableAll); err != nil {
		return nil, nil, fmt.Errorf("session options: %w", err)
	}
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		return nil, nil, fmt.Errorf("session options: %w", err)
	}
	return ort.GetInputOutputInfoWithOptions(path, opts)
}

func appendCUDA(opts *ort.SessionOptions, id string) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return err
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": id}); err != nil {
		return err
	}
	return opts.AppendExecutionProviderCUDA(cuda)
}

// run feeds input of the given shape and returns the output data and shape.
func (s *ortSession) run(input []float32, shape []int64) ([]float32, []int64, error) {
	in, err := ort.NewTensor(ort.NewShape(shape...), input)
	if err != nil {
		return nil, nil, fmt.Errorf("input tensor: %w", err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.s.Run([]ort.Value{in}, outs); err != nil {
		return nil, nil, err
	}
	defer outs[0].Destroy()
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, nil, fmt.Errorf("model output %s is not float32", s.output)
	}
	return t.GetData(), t.GetShape(), nil
}

// runInto feeds input of the given shape and has the model write its
// output, of the shape given, into output.
func (s *ortSession) runInto(input []float32, shape []int64, output []float32, outShape []int64) error {
	in, err := ort.NewTensor(ort.NewShape(shape...), input)
	if err != nil {
		return fmt.Errorf("input tensor: %w", err)
	}
	defer in.Destroy()
	out, err := ort.NewTensor(ort.NewShape(outShape...), output)
	if err != nil {
		return fmt.Errorf("output tensor: %w", err)
	}
	defer out.Destroy()
	return s.s.Run([]ort.Value{in}, []ort.Value{out})
}

func (s *ortSession) close() error {
	if s == nil || s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}
