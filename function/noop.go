package function

import "context"

// Noop returns a function that passes every page through unchanged: an empty
// Output per page. System tests use it to measure the runner alone.
func Noop(ctx context.Context, opts Options) (Function, error) {
	return Func(func(ctx context.Context, batch []Page) []Output {
		out := make([]Output, len(batch))
		if ctx.Err() != nil {
			Cancelled(ctx, out, 0)
		}
		return out
	}), nil
}
