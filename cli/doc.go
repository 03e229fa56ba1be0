// Package cli is the pero command: one file per subcommand (servers, stage, submit,
// download, status, ocr). Each subcommand has its own flag set and usage text; errors carry
// an exit code and a hint of what to do next.
package cli
