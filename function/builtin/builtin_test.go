package builtin_test

import (
	"slices"
	"testing"

	"github.com/pero-worker/pero-worker/function/builtin"
)

func TestRegistryNames(t *testing.T) {
	names := builtin.Registry().Names()
	for _, want := range []string{"noop", "sleep", "ocr", "detect", "recognize"} {
		if !slices.Contains(names, want) {
			t.Errorf("builtin registry lacks %q: %v", want, names)
		}
	}
}
