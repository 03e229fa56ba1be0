// Package function is the contract between the runner and the code a stage runs:
// a Function takes a batch of pages and returns one Output per page, and a
// Registry lets a stage's configuration pick the function by name.
//
// The built-in functions (noop, sleep and the OCR stages) are registered by
// package function/builtin; this package stays free of model code so that the
// runner and its tests can depend on it cheaply.
package function
