//go:build !tapimage

package main

import "github.com/spf13/cobra"

// verbs are the commands of the full CLI.
func verbs() []*cobra.Command {
	return []*cobra.Command{newVersionCmd(), newCaptureCmd(), newVerifyCmd(), newGenerateCmd(), newFixturesCmd(), newProxyCmd(), newReplayCmd(), newResultsCmd(),
		newCompareCmd(), newCapacityCmd(), newReportCmd(), newKindCmd(), newTapCmd(), newInspectCmd(), newCatCmd(), newSliceCmd(), newWorkdirCmd(), newCaptureSignalCmd()}
}
