// Package builtin registers the functions that ship with pero-worker: noop
// and sleep for system tests, and the OCR stages ocr, detect and recognize.
package builtin

import (
	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/ocr"
)

// Registry returns a new registry holding every built-in function.
func Registry() *function.Registry {
	r := function.NewRegistry()
	r.Register("noop", function.Noop)
	r.Register("sleep", function.Sleep)
	r.Register("ocr", ocr.NewOCR)
	r.Register("detect", ocr.NewDetect)
	r.Register("recognize", ocr.NewRecognize)
	return r
}
