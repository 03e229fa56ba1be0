// Package version carries the build version, stamped with -ldflags by the Makefile.
package version

// Version is set at build time; "dev" for plain `go build`.
var Version = "dev"
