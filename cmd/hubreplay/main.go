// Command hubreplay records JupyterHub proxy traffic, replays it against a
// candidate proxy build, and compares candidates. This package only wires
// flags to the packages that do the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError marks errors in how hubreplay was called (exit status 2).
type usageError struct{ error }

// run executes one command line and returns the exit status: 0 on
// success, 1 only for a finding (compare and report: a regression;
// verify: secrets left), 2 for everything else that went wrong: a command
// line that does not make sense, bad input (a damaged trace, a file that
// is not a capture, results that exist), a failure of the work itself.
// CI reads 1 as "the candidate is worse": nothing else may say so.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(stdin, stdout, stderr)
	var prof profiles
	prof.flags(root)
	root.PersistentPreRunE = chain(prof.start, root.PersistentPreRun)
	root.PersistentPreRun = nil
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if perr := prof.stop(); perr != nil && err == nil {
		err = perr
	}
	logPeakMemory()
	if err == nil {
		return 0
	}
	if errors.Is(err, fs.ErrExist) {
		err = fmt.Errorf("%w (give --force to replace it, or another name)", err)
	}
	fmt.Fprintf(stderr, "hubreplay: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") {
		return 2
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 2
}

// chain runs first, then the hook (cobra runs only one persistent pre-run).
func chain(first func() error, then func(*cobra.Command, []string)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := first(); err != nil {
			return err
		}
		if then != nil {
			then(cmd, args)
		}
		return nil
	}
}

// exitError carries an exit status of its own (compare's: 1 for a
// regression, 2 when the comparison itself failed).
type exitError struct {
	code int
	error
}

func (e exitError) Unwrap() error { return e.error }

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:   "hubreplay",
		Short: "Record JupyterHub proxy traffic and replay it against candidate proxy builds",
		Long: `hubreplay tests a JupyterHub proxy build (configurable-http-proxy or a fork)
against real traffic before it meets real users: capture records the proxy's
traffic, anonymized, into a trace; replay runs a trace against a candidate
proxy in a disposable staging setup; compare runs two candidates on the same
trace and reports the differences; report renders a comparison again.

Traces are zstd-compressed JSON lines (see trace/FORMAT.md): inspect, slice
and cat work on them, and 'zstd -dc TRACE' shows them to standard tools.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log what hubreplay is doing to stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(verbs()...)
	usageArgs(root)
	return root
}

// usageArgs makes every command's argument check a usage error (exit
// status 2): for report and compare, 1 means "regression", which a
// mistyped command line must never be taken for.
func usageArgs(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			err := check(cmd, args)
			var ue usageError
			if err != nil && !errors.As(err, &ue) {
				return usageError{fmt.Errorf("%w; see 'hubreplay %s --help'", err, strings.TrimPrefix(cmd.CommandPath(), "hubreplay "))}
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

// exactArgs is cobra.ExactArgs with a usage error that names what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s needs %s (got %d arguments); see 'hubreplay %s --help'", cmd.Name(), what, len(args), cmd.Name())}
		}
		return nil
	}
}
