package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/trace"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	var tz string
	cmd := &cobra.Command{
		Use:   "inspect TRACE",
		Short: "Summarize a trace: duration, connections, HTTP, WebSocket, users, routes, per minute",
		Long: `inspect reads a whole trace and prints what it holds: its duration and wall-clock
span, connections (how they closed, the peak open at once), HTTP exchanges by
method and status class, WebSocket frames by direction and opcode, distinct
users (pseudonyms), route events, capture gaps, and a per-minute activity table
to find the peak in. TRACE may be "-" for standard input.

A truncated or damaged trace is summarized up to the damage, the damage is
reported, and the exit status is 2.`,
		Example: `  hubreplay inspect peak.trace
  hubreplay inspect --json peak.trace | jq '.minutes[] | select(.http_5xx > 0)'`,
		Args: exactArgs(1, "a trace file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			loc, err := loadTZ(tz)
			if err != nil {
				return err
			}
			r, err := openTrace(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer r.Close()
			p := newProgress(cmd.ErrOrStderr(), args[0], "reading "+args[0])
			s, sumErr := trace.Summarize(cmd.Context(), r, p.update)
			p.done()
			if s == nil {
				return sumErr
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := writeJSON(out, s); err != nil {
					return err
				}
			} else if err := s.WriteText(out, loc); err != nil {
				return err
			}
			return sumErr
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON (durations in nanoseconds)")
	cmd.Flags().StringVar(&tz, "tz", "", `time zone for clock times, e.g. "Europe/Berlin" (default: this machine's)`)
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func loadTZ(name string) (*time.Location, error) {
	if name == "" {
		return time.Local, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, usageError{fmt.Errorf("--tz %q: %w", name, err)}
	}
	return loc, nil
}
