package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/capture"
)

// newCaptureSignalCmd is what 'hubreplay tap' runs through an exec in its
// container in the proxy pod (hidden: the image has no shell to kill with).
func newCaptureSignalCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "capture-signal INT|USR1",
		Short:  "Signal the running capture: INT ends its trace and stops it; USR1 makes a flight recorder write its window out",
		Hidden: true,
		Args:   exactArgs(1, "the signal, INT or USR1"),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, ok := map[string]syscall.Signal{"INT": syscall.SIGINT, "USR1": syscall.SIGUSR1}[strings.ToUpper(strings.TrimPrefix(args[0], "SIG"))]
			if !ok {
				return usageError{fmt.Errorf("capture-signal %s: give INT or USR1", args[0])}
			}
			pids, err := capture.Running("/proc", os.Getpid())
			if err != nil {
				return err
			}
			if len(pids) == 0 {
				return errors.New("capture-signal: no hubreplay capture runs here")
			}
			for _, pid := range pids {
				if err := syscall.Kill(pid, sig); err != nil {
					return fmt.Errorf("capture-signal: process %d: %w", pid, err)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "capture-signal: sent %s to %v\n", sig, pids)
			return nil
		},
	}
}
