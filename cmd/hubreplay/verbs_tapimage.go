//go:build tapimage

package main

import "github.com/spf13/cobra"

// verbs are the commands of the tap image's binary (go build -tags
// tapimage): capture and what checks a trace, without the Kubernetes,
// kind and Docker clients the rest of the CLI carries into production pods.
func verbs() []*cobra.Command {
	return []*cobra.Command{newVersionCmd(), newCaptureCmd(), newVerifyCmd(), newInspectCmd(), newCaptureSignalCmd()}
}
