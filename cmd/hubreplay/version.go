package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/internal/version"
	"github.com/hubreplay/hubreplay/trace"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the hubreplay version and the trace format it writes",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "hubreplay %s (trace format %s v%d, %s, %s/%s)\n",
				version.String(), trace.FormatName, trace.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
