package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/pero-worker/pero-worker/internal/version"
)

// Exit codes of the pero command.
const (
	ExitOK          = 0 // everything worked
	ExitFailed      = 1 // the command ran, but some pages failed or an operation was refused
	ExitUsage       = 2 // bad flags or arguments
	ExitUnavailable = 3 // a service (ZooKeeper, RabbitMQ, FTP) could not be reached or refused the credentials
	ExitInterrupted = 130
)

// Env is what a subcommand may touch of the outside world; tests pass their own.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
	// Getenv reads the environment (os.Getenv in main).
	Getenv func(string) string
	// Logger for diagnostics; text on stderr by default.
	Logger *slog.Logger
}

// Command is one subcommand of pero.
type Command struct {
	Name    string
	Summary string
	// Run parses args (without the command name) and does the work.
	Run func(ctx context.Context, env *Env, args []string) error
}

// exitError carries an exit code and an optional hint through the error chain.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr is a wrong flag or argument (exit 2).
func usageErr(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// unavailable marks a failure to reach or log in to a service (exit 3), with a hint.
func unavailable(err error, hint string) error {
	return &exitError{code: ExitUnavailable, err: err, hint: hint}
}

// failed marks a command that ran but did not fully succeed (exit 1), with a hint.
func failed(err error, hint string) error {
	return &exitError{code: ExitFailed, err: err, hint: hint}
}

func commands() []*Command {
	return []*Command{
		serversCommand(),
		stageCommand(),
		submitCommand(),
		downloadCommand(),
		statusCommand(),
		ocrCommand(),
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `pero %s: configure OCR stages, submit pages and download results.

Usage: pero <command> [flags] [args]

Commands:
`, version.Version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprint(w, `  help       Show help for a command: pero help <command>
  version    Print the version

Common environment:
  PERO_ZOOKEEPER      ZooKeeper servers, comma separated (default 127.0.0.1:2181)
  PERO_MQ_USER, PERO_MQ_PASSWORD (or PERO_MQ_PASSWORD_FILE)    RabbitMQ credentials
  PERO_FTP_USER, PERO_FTP_PASSWORD (or PERO_FTP_PASSWORD_FILE) FTP credentials
  PERO_ZK_AUTH (or PERO_ZK_AUTH_FILE)  ZooKeeper digest credentials user:password
  PERO_{MQ,FTP,ZK}_TLS=true, PERO_{MQ,FTP,ZK}_CA_FILE  TLS, verified against the CA file

Exit codes: 0 ok, 1 some work failed, 2 usage error, 3 service unreachable or login refused.
`)
}

// Main runs pero with args (without the program name) and returns the exit code.
func Main(ctx context.Context, env *Env, args []string) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: logLevel(env.Getenv("LOG_LEVEL"))}))
	}
	if len(args) == 0 {
		usage(env.Stderr)
		return ExitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		if len(rest) == 0 {
			usage(env.Stdout)
			return ExitOK
		}
		name, rest = rest[0], []string{"--help"}
	case "version", "--version":
		fmt.Fprintln(env.Stdout, version.Version)
		return ExitOK
	}
	for _, c := range commands() {
		if c.Name == name {
			return report(env, c.Name, c.Run(ctx, env, rest))
		}
	}
	fmt.Fprintf(env.Stderr, "pero: unknown command %q\nRun 'pero help' for the list of commands.\n", name)
	return ExitUsage
}

func report(env *Env, name string, err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(env.Stderr, "pero %s: interrupted\n", name)
		return ExitInterrupted
	}
	code, hint := ExitFailed, ""
	var ee *exitError
	if errors.As(err, &ee) {
		code, hint = ee.code, ee.hint
	}
	fmt.Fprintf(env.Stderr, "pero %s: %v\n", name, err)
	if hint != "" {
		fmt.Fprintf(env.Stderr, "hint: %s\n", hint)
	}
	if code == ExitUsage {
		fmt.Fprintf(env.Stderr, "Run 'pero %s --help' for usage.\n", name)
	}
	return code
}

func logLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// newFlags makes a subcommand's flag set with usage text that names it.
func newFlags(env *Env, name, usageLine, description string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("pero "+name, pflag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: pero %s\n\n%s\n\nFlags:\n%s", usageLine, strings.TrimSpace(description), fs.FlagUsages())
	}
	return fs
}

// parse parses flags, turning a parse failure into a usage error.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	return nil
}
