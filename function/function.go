package function

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
)

// File is one named result carried by a message (an image, a PAGE XML, ...).
type File struct {
	Name    string
	Content []byte
}

// Page is one unit of work in a batch.
type Page struct {
	// Name is the page (image) name: results[0].name of the message.
	Name string
	// Image holds the encoded image bytes.
	Image []byte
	// Inputs are earlier results carried by the message, such as "<name>_page.xml".
	Inputs []File
}

// Input returns the earlier result with the given name, or false.
func (p Page) Input(name string) (File, bool) {
	for _, f := range p.Inputs {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// Output is the result of one page.
type Output struct {
	// Files are results to add to the message, replacing same-named ones
	// (for example "<stem>_page.xml", "<stem>.alto.xml", "<stem>.txt").
	Files []File
	// Log is a short text for the stage log.
	Log string
	// Err is a per-page failure; the other pages of the batch still succeed.
	Err error
}

// Function processes batches of pages.
type Function interface {
	// Process handles a batch and returns exactly one Output per page, in
	// order. It honours ctx: when ctx is cancelled, the pages not yet done get
	// ctx.Err() as their error.
	Process(ctx context.Context, batch []Page) []Output
	// Close releases what the function holds (model sessions, ...).
	Close() error
}

// Func adapts a plain function to Function; Close is a no-op.
type Func func(ctx context.Context, batch []Page) []Output

// Process calls f.
func (f Func) Process(ctx context.Context, batch []Page) []Output { return f(ctx, batch) }

// Close does nothing.
func (f Func) Close() error { return nil }

// Options is what a factory gets to build a stage's function.
type Options struct {
	// Dir is the stage's model directory (the extracted model archive); ""
	// when the stage has none.
	Dir string
	// Config is the stage's config.ini text; empty means defaults.
	Config string
	// Logger receives diagnostics; nil means slog.Default().
	Logger *slog.Logger
}

// Factory builds a Function for a stage.
type Factory func(ctx context.Context, opts Options) (Function, error)

// Registry maps function names to factories. It is safe for concurrent use.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: make(map[string]Factory)}
}

// Register adds or replaces the factory for name. It panics on an empty name
// or a nil factory, which are programming errors.
func (r *Registry) Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("function: Register with empty name or nil factory")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.factories[name] = f
}

// New builds the function registered under name. An unknown name is an error
// that lists the known ones.
func (r *Registry) New(ctx context.Context, name string, opts Options) (Function, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("unknown function %q (known: %s)", name, strings.Join(r.Names(), ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	fn, err := f(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", name, err)
	}
	return fn, nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Cancelled fills out[i:] with ctx.Err(); functions use it when ctx ends
// in the middle of a batch.
func Cancelled(ctx context.Context, out []Output, i int) {
	for ; i < len(out); i++ {
		out[i] = Output{Err: ctx.Err()}
	}
}

// Stem returns the page name without its last extension ("a/b.png" -> "a/b"),
// the base the OCR stages name their results after.
func Stem(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 && !strings.ContainsRune(name[i:], '/') {
		return name[:i]
	}
	return name
}
