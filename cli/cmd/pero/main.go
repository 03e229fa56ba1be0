// Command pero configures OCR stages, submits pages and downloads results.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pero-worker/pero-worker/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, &cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin}, os.Args[1:])
	stop()
	os.Exit(code)
}
