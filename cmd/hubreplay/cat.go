//go:build !tapimage

package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/trace"
)

func newCatCmd() *cobra.Command {
	var types []string
	var conn uint64
	cmd := &cobra.Command{
		Use:   "cat TRACE",
		Short: "Print a trace's records as JSON lines",
		Long: `cat prints the records of a trace as JSON lines, the header first, as they are
stored (the same as 'zstd -dc TRACE', but checked, and filtered if asked).
The output is itself a trace that hubreplay reads, so it can be edited and
read back. TRACE may be "-" for standard input.

Record types: header, conn_open, conn_close, http, ws, route, gap, stats.
On a damaged trace every record before the damage is printed, then the
damage is reported and the exit status is 2.`,
		Example: `  hubreplay cat peak.trace | head
  hubreplay cat --type http peak.trace | jq -r 'select(.resp.status >= 500) | .req.target'
  hubreplay cat --conn 42 peak.trace`,
		Args: exactArgs(1, "a trace file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			want := map[trace.Type]bool{}
			for _, t := range types {
				for _, name := range strings.Split(t, ",") {
					if name = strings.TrimSpace(name); name != "" {
						want[trace.Type(name)] = true
					}
				}
			}
			r, err := openTrace(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer r.Close()
			out := bufio.NewWriterSize(cmd.OutOrStdout(), 256<<10)
			byConn := cmd.Flags().Changed("conn")
			var line []byte
			readErr := r.Each(cmd.Context(), nil, func(rec trace.Record) error {
				if _, isHeader := rec.(*trace.Header); !isHeader {
					if len(want) > 0 && !want[rec.Type()] {
						return nil
					}
					if c, ok := trace.Conn(rec); byConn && (!ok || uint64(c) != conn) {
						return nil
					}
				}
				var err error
				if line, err = trace.AppendJSON(line[:0], rec); err != nil {
					return err
				}
				if _, err := out.Write(line); err != nil {
					return fmt.Errorf("write output: %w", err)
				}
				return nil
			})
			if err := out.Flush(); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			return readErr
		},
	}
	cmd.Flags().StringSliceVarP(&types, "type", "t", nil, "print only records of these types (the header is always printed)")
	cmd.Flags().Uint64Var(&conn, "conn", 0, "print only records of this connection id")
	return cmd
}
