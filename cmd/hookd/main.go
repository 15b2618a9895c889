// Command hookd rolls GHCR pushes out to Docker containers seconds after GitHub announces them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// Stamped at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "hookd:", err)
		}
		os.Exit(1)
	}
}

// errReported marks a failure whose explanation was already printed.
var errReported = errors.New("reported")

const usage = `usage: hookd <command> [flags]

commands:
  serve [--config FILE]                 run the receiver, rollout workers and fallback poll
  check-config --config FILE            validate the configuration; list every problem
  sign --secret-file F [FILE]           print sha256=<hex> for FILE (or stdin)
  send --url URL --secret-file F [--event package] [--delivery ID] FILE
                                        POST FILE as a signed GitHub delivery
  refresh [--config FILE] [--pull-only] RUNTIME
                                        one rollout now; prints the result JSON
  health [--url URL]                    exit 0 when hookd answers /healthz (for container healthchecks)
  version                               version, commit, Go version
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errReported
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, getenv, stdout, stderr)
	case "check-config":
		return checkConfig(rest, getenv, stdout, stderr)
	case "sign":
		return sign(rest, os.Stdin, stdout, stderr)
	case "send":
		return send(ctx, rest, stdout, stderr)
	case "refresh":
		return refreshCmd(ctx, rest, getenv, stdout, stderr)
	case "health":
		return health(ctx, rest, getenv, stderr)
	case "version":
		fmt.Fprintf(stdout, "hookd %s (commit %s, %s)\n", version, commit, runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "hookd: unknown command %q\n%s", cmd, usage)
	return errReported
}

// newFlags returns a flag set that reports its errors to stderr and returns them (no exit).
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hookd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// configPath is --config, or HOOKD_CONFIG when the flag is not given.
func configPath(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	return getenv("HOOKD_CONFIG")
}
