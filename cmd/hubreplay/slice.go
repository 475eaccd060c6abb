//go:build !tapimage

package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/trace"
)

func newSliceCmd() *cobra.Command {
	var from, to, out, tz string
	var force bool
	cmd := &cobra.Command{
		Use:   "slice TRACE --from WHEN --to WHEN -o OUT",
		Short: "Cut a time window (the lecture peak) out of a trace into a new trace",
		Long: `slice copies the part of a trace between --from and --to into a new trace
whose time 0 is --from. The slice stands on its own for replay: connections
already open at --from (and their WebSocket upgrades) and the routes already
in the proxy's table are carried in at time 0, and connections still open at
--to are closed there.

WHEN is one of:
  +10m, 10m, 1h5m30s    time since the trace's start
  15:55, 15:55:30       clock time (in --tz) on the trace's first day; a time
                        up to 12h before the trace's start means its start,
                        one earlier than that the next day
  2026-11-03T15:55:00+01:00   an RFC 3339 instant

--from defaults to the trace's start and --to to its end. OUT must not
exist unless --force is given.`,
		Example: `  hubreplay slice monday.trace --from 15:55 --to 16:10 -o peak.trace
  hubreplay slice monday.trace --from +2h --to +2h15m -o peak.trace --tz Europe/Berlin`,
		Args: exactArgs(1, "a trace file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("slice needs -o OUT, the file to write the slice to")}
			}
			if !cmd.Flags().Changed("from") && !cmd.Flags().Changed("to") {
				return usageError{errors.New("slice needs --from and/or --to; see 'hubreplay slice --help'")}
			}
			loc, err := loadTZ(tz)
			if err != nil {
				return err
			}
			r, err := openTrace(args[0], cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer r.Close()
			start := r.Header().Start
			win, err := parseWindow(from, to, start, loc)
			if err != nil {
				return err
			}
			if to != "" && win.To <= win.From {
				return usageError{fmt.Errorf("--to %s (+%s) is not after --from (+%s)", to, win.To, win.From)}
			}
			var w *trace.Writer
			p := newProgress(cmd.ErrOrStderr(), args[0], "slicing "+args[0])
			res, sliceErr := trace.Slice(cmd.Context(), r, win, func(h trace.Header) (trace.RecordWriter, error) {
				var err error
				w, err = trace.Create(out, h, &trace.WriterOptions{Overwrite: force})
				return w, err
			}, p.update)
			p.done()
			if w != nil {
				if err := w.Close(); err != nil && sliceErr == nil {
					sliceErr = err
				}
				clock := func(d time.Duration) string { return start.Add(d).In(loc).Format("2006-01-02 15:04:05 MST") }
				end := "the end"
				if win.To != 0 {
					end = clock(win.To)
				}
				// The writer's count, the header included, as inspect and
				// generate count.
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s: %d records (%d carried in at the start, %d connections closed at the end), from %s to %s\n",
					out, w.Records(), res.Carried, res.Closed, clock(win.From), end)
			}
			return sliceErr
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start of the window (see WHEN above); default: the trace's start")
	cmd.Flags().StringVar(&to, "to", "", "end of the window, exclusive; default: the trace's end")
	cmd.Flags().StringVarP(&out, "output", "o", "", "the trace file to write (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace OUT if it exists")
	cmd.Flags().StringVar(&tz, "tz", "", `time zone for clock times, e.g. "Europe/Berlin" (default: this machine's)`)
	return cmd
}
