//go:build !perotest

package main

import (
	"github.com/pero-worker/pero-worker/function"
	"github.com/pero-worker/pero-worker/function/builtin"
)

// registry holds the functions this image can run.
func registry() *function.Registry { return builtin.Registry() }
