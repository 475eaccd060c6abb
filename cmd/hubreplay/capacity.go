//go:build !tapimage

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/internal/memlimit"
	"github.com/hubreplay/hubreplay/internal/procs"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

func newCapacityCmd() *cobra.Command {
	var (
		tracePath, candidate, speeds, out, users string
		from, to, tz                             string
		stretch, timeout                         time.Duration
		seed                                     uint64
		harnessProcs                             int
	)
	cmd := &cobra.Command{
		Use:   "capacity --trace TRACE",
		Short: "Find the highest --speed at which this machine's harness keeps up with a trace",
		Long: `The replayer, the fixtures and the candidate share this machine. Past some
speed the harness, not the candidate, is the bottleneck: then latency,
timeouts and probe silences measure the harness, and compare's report says
SATURATED and leaves them out. capacity finds that speed before a
comparison does: it replays TRACE (or its --from/--to window) as compare
would, against one candidate at rising --speeds, each behind fresh
fixtures, until one saturates the harness, then once between the highest
that held and the lowest that did not.

A step replays the whole trace because a stretch of it says too little: a
10-minute stretch ending with the 300-student peak's busiest minute held
10x through chp@4.5.6, where the whole 30 minutes saturated the machine at
10x and 11x. On a long trace that takes a while (the 30-minute peak at 5x
is 6 minutes a step); --stretch 10m takes a quick look at the stretch that
ends with the busiest minute instead (at high speeds more of the trace,
so that each step lasts a minute), which is printed and not kept.

The capacity is the harness's and the candidate's together: measure with
the candidates you will compare (through chp@4.5.6, which closes every
client connection after its answer, the harness worked up to 2.5 times as
hard as through 4.6.2 on the same trace). Above some speed the candidate
itself, on its one Node.js thread, sets the pace; capacity says where, as a
comparison beyond it tests throughput more than the trace.

Each step over the whole trace goes to the capacity file beside the
candidate cache (~/.cache/hubreplay/harness.json), as every local compare
run does; compare reads it before a run and says whether the harness held
the plan's peak rate before. The results of each step go to -o.`,
		Example: `  hubreplay capacity --trace peak.trace --candidate chp@4.5.6
  hubreplay capacity --trace peak.trace --candidate chp@4.6.2 --users 2 --speeds 5,10,20
  hubreplay capacity --trace day.trace --from 15:55 --to 16:25 --candidate chp@4.6.2
  hubreplay capacity --trace peak.trace --stretch 10m     # a quick look, not kept`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tracePath == "" {
				return usageError{errors.New("capacity needs --trace TRACE")}
			}
			spec, err := proxy.ParseSpec(candidate)
			if err != nil {
				return usageError{fmt.Errorf("--candidate: %w", err)}
			}
			var ladder []float64
			for _, s := range strings.Split(speeds, ",") {
				v, err := replay.ParseSpeed(strings.TrimSpace(s))
				if err != nil || v <= 0 {
					return usageError{fmt.Errorf("--speeds %q: give factors from 0.1 to 100, e.g. 5,10,20", speeds)}
				}
				ladder = append(ladder, v)
			}
			n, err := parseUsers(users)
			if err != nil {
				return err
			}
			if stretch < 0 {
				return usageError{fmt.Errorf("--stretch %s: give a length of trace time, e.g. 10m", stretch)}
			}
			if stretch > 0 && (from != "" || to != "") {
				return usageError{errors.New("--stretch looks at the stretch before the busiest minute; --from/--to choose a window to measure whole: give one or the other")}
			}
			if out == "" {
				out = "capacity-" + time.Now().Format("20060102-150405")
			}
			ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
			opts := replay.Options{Speed: 1, Users: n, Seed: seed, Jitter: time.Minute}
			if opts.Window, err = traceWindow(tracePath, from, to, tz); err != nil {
				return err
			}
			recs, err := loadTrace(ctx, tracePath, opts.Window, stderr)
			if err != nil {
				return exitError{2, err}
			}
			whole, err := replay.BuildPlan(ctx, recs, opts, nil)
			if err != nil {
				return exitError{2, err}
			}
			if whole.Requests == 0 {
				return exitError{2, replay.ErrEmpty}
			}
			ix, err := fixtures.BuildIndex(ctx, recs, nil)
			if err != nil {
				return exitError{2, err}
			}
			boundHarness(harnessProcs)
			capacity, err := compare.LoadCapacity(capacityFile())
			if err != nil {
				fmt.Fprintf(stderr, "hubreplay: %v (starting afresh)\n", err)
			}
			window := func(float64) trace.Window { return opts.Window }
			if stretch > 0 {
				busiest := whole.Busiest(time.Minute)
				window = func(speed float64) trace.Window { return compare.StepWindow(busiest, stretch, speed, whole.Length) }
				capacity = nil
				fmt.Fprintf(stderr, "a quick look at %s: trace time %s to %s (its busiest minute from %s; longer at high speeds, so that each step replays a minute at least), against %s at %s; not kept in the capacity file (a stretch may hold where the whole trace does not)\n",
					tracePath, offset(max(0, busiest.To-stretch)), offset(busiest.To), offset(busiest.From), spec, speeds)
			} else {
				fmt.Fprintf(stderr, "measuring this machine's harness on %s, %s of trace time from %s as compare replays it, against %s at %s\n",
					tracePath, whole.Length.Round(time.Second), offset(opts.Window.From), spec, speeds)
			}
			w := &compareWatch{w: stderr}
			res, err := compare.RunProbe(ctx, compare.Probe{TraceName: tracePath, Spec: spec, Index: ix, Speeds: ladder, Timeout: timeout, Dir: out,
				PlanAt: func(ctx context.Context, speed float64) (*replay.Plan, error) {
					o := opts
					o.Speed = speed
					o.Window = window(speed)
					return replay.BuildPlan(ctx, recs, o, nil)
				},
				Watch: w.watch,
				Step: func(s compare.ProbeStep) {
					w.stop()
					fmt.Fprintf(stderr, "at %s (%.0f requests a second at the peak): %s; %s\n", replay.SpeedString(s.Speed), s.Peak, probeOutcome(s.Harness), candidateLoad(s.Candidate, s.Harness))
				},
			}, capacity)
			w.stop()
			if res != nil {
				s := probeSummary(tracePath, res)
				if stretch > 0 {
					s += fmt.Sprintf(" (a quick look at %s of it, not kept: the whole trace may saturate sooner)", stretch)
				}
				fmt.Fprintln(cmd.OutOrStdout(), s)
			}
			if err != nil {
				return exitError{2, err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tracePath, "trace", "", "the trace to measure with (required)")
	f.StringVar(&candidate, "candidate", "chp@5", "the proxy to run while measuring (it shares the machine)")
	f.StringVar(&speeds, "speeds", "5,10,20,40,70,100", "the speeds to try, in rising order until one saturates")
	f.DurationVar(&stretch, "stretch", 0, "a quick look: replay this much trace time ending with the busiest minute, not the whole trace (not kept)")
	f.StringVar(&from, "from", "", `start of the window to measure: "+10m", "15:55", RFC 3339 (default: the trace's start)`)
	f.StringVar(&to, "to", "", "end of the window (default: the trace's end)")
	f.StringVar(&tz, "tz", "", "time zone for clock times in --from/--to (default: this machine's)")
	f.StringVar(&users, "users", "1", "play every user this many times, as compare would")
	f.Uint64Var(&seed, "seed", 1, "seed for the copies' pseudonyms and jitter")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long an answer may take beyond its recorded time")
	f.StringVarP(&out, "output", "o", "", "directory for each step's results (default capacity-DATE-TIME)")
	f.IntVar(&harnessProcs, "harness-procs", 0, harnessProcsHelp)
	return cmd
}

// harnessProcsHelp says what --harness-procs does, for compare and capacity.
const harnessProcsHelp = "processors for hubreplay's own work, the replay and the fixtures (default: all but one, left to the candidate; GOMAXPROCS wins)"

// boundHarness bounds the harness on the candidate's machine, once what it
// holds for good (the trace's records, plan, index) is built: its heap to
// that plus a headroom, its processors to all but one.
func boundHarness(harnessProcs int) {
	slog.Debug("memory bounded", "limit_bytes", memlimit.Bound(memlimit.Headroom))
	slog.Debug("harness processors", "gomaxprocs", procs.Harness(harnessProcs))
}

// offset shows trace time from the trace's start, as inspect does.
func offset(d time.Duration) string { return "+" + d.Round(time.Second).String() }

// loadTrace reads what a replay of win needs of the trace at path into
// memory, once for every plan and the fixtures' index built from it.
func loadTrace(ctx context.Context, path string, win trace.Window, stderr io.Writer) (*trace.Records, error) {
	r, err := openTrace(path, nil)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return readTrace(ctx, r, path, win, stderr)
}

func probeOutcome(h *compare.Harness) string {
	figures := fmt.Sprintf("replayer lag p99 %s, %.2f%% of requests and %.2f%% of the fixtures' answers more than %s late, processors %.0f%% busy on average",
		time.Duration(h.Lag.P99)*time.Microsecond, h.LateShare*100, h.FixtureShare*100, compare.LateBy, h.BusyMean*100)
	if h.Saturated {
		return "SATURATED: " + strings.Join(h.Why, "; ")
	}
	return "held (" + figures + ")"
}

func candidateLoad(x *compare.Resources, h *compare.Harness) string {
	if x == nil {
		return "the candidate was never up"
	}
	s := fmt.Sprintf("the candidate at up to %.0f%% of a core", x.CPUPeak*100)
	if x.Overloaded() {
		s += fmt.Sprintf(" (%d of %d samples at %.0f%% or more: it set the pace)", x.CPUBusy, x.Samples, compare.CPUBusyAt*100)
	}
	if h.Paced() {
		s += fmt.Sprintf("; its answers held %.1f%% of the requests back more than %s: it set the pace", h.HeldShare*100, compare.LateBy)
	}
	return s
}

func probeSummary(tracePath string, res *compare.ProbeResult) string {
	s := harnessSummary(tracePath, res)
	switch {
	case res.Held == 0:
	case res.KeptUp == 0:
		s += "; the candidate was its own bottleneck at every speed that held: lower speeds test the trace, not its throughput"
	case res.KeptUp < res.Held:
		s += fmt.Sprintf("; above --speed %g the candidate, not the harness, set the pace: up to it a comparison tests the trace, beyond it the candidates' throughput", res.KeptUp)
	}
	return s
}

func harnessSummary(tracePath string, res *compare.ProbeResult) string {
	switch {
	case res.Held == 0 && res.Saturated == 0:
		return "no step finished"
	case res.Held == 0:
		return fmt.Sprintf("this machine's harness did not hold %s even at %s: replay it in shards, or on a bigger machine", tracePath, replay.SpeedString(res.Saturated))
	case res.Saturated == 0:
		return fmt.Sprintf("this machine's harness holds %s up to --speed %g at least (%.0f requests a second at the peak); it never saturated", tracePath, res.Held, res.HeldPeak)
	}
	return fmt.Sprintf("this machine's harness holds %s up to --speed %g (%.0f requests a second at the peak); at %s (%.0f a second) it saturated",
		tracePath, res.Held, res.HeldPeak, replay.SpeedString(res.Saturated), res.SatPeak)
}
