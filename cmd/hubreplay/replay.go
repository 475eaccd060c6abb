//go:build !tapimage

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

func newReplayCmd() *cobra.Command {
	var (
		tracePath, target, out, api, tokenEnv, hubListen string
		play                                             playFlags
		duration, check, timeout                         time.Duration
		withFixtures, force                              bool
	)
	cmd := &cobra.Command{
		Use:   "replay --trace TRACE --target URL --api URL",
		Short: "Send a trace's client traffic to a proxy, timed as recorded, and record what happened",
		Long: `replay sends the recorded client side of TRACE to the proxy at --target: each
recorded connection opens at its time (divided by --speed) and sends its
requests in order, each at its recorded moment but never before the previous
answer on that connection ended; WebSocket sessions send their client frames
as recorded and read the server's; clients vanish (reset, or just stop) where
the recording's did. Every request carries its record number, so that the
fixtures behind the proxy answer as recorded.

By default the fixtures run inside this process: a hub stub on --hub-listen
(start the proxy with it as --default-target) and one emulated user server
per recorded route target. The hub stub drives the proxy's REST API (--api,
token from $CONFIGPROXY_AUTH_TOKEN): the recorded route adds and deletes at
their times, and JupyterHub's check_routes every --check-routes-interval.
With --fixtures=false they run elsewhere ('hubreplay fixtures serve'),
started with the same --speed at the same moment.

What happened to every request and session goes to the results file (-o):
when each was due and sent, latency to the first and last byte, status and
size against the recording, who answered, and the error class: connect_refused,
connect_error, reset, closed, timeout, proxy_5xx (made by the proxy),
route_missing (the proxy sent a user's request to the hub), late_for_route
(the same, but sent after the route's recorded end because the replayer ran
late, or before the proxy confirmed the route's add, which JupyterHub
awaits: not a failure), mismatch, backend_5xx (a recorded 5xx, answered again:
not a failure). 'hubreplay
results FILE' prints its summary; 'zstd -dc FILE' shows the records.

--users 3 plays every user three times: the copies under fresh pseudonyms,
shifted by up to --jitter (seeded by --seed). --shard i/N plays one of N
deterministic parts, for N processes; 'hubreplay results merge' joins them.
A window (--from/--to) leaves out WebSocket sessions opened before it; to
keep them, cut the window with 'hubreplay slice' and replay the slice.`,
		Example: `  # CHP on :8000/:8001 with --default-target http://127.0.0.1:8081
  CONFIGPROXY_AUTH_TOKEN=secret hubreplay replay --trace peak.trace \
      --target http://127.0.0.1:8000 --api http://127.0.0.1:8001 --speed 4 -o peak.results
  hubreplay replay --trace peak.trace --target http://127.0.0.1:8000 --api http://127.0.0.1:8001 \
      --users 3 --jitter 1m --from +2m --to +12m --speed max`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tracePath == "" || target == "" {
				return usageError{errors.New("replay needs --trace TRACE and --target URL (the proxy)")}
			}
			if _, err := replay.TargetAddr(target); err != nil {
				return usageError{fmt.Errorf("--target: %w", err)} // before the trace is read or a file made
			}
			token := os.Getenv(tokenEnv)
			if !withFixtures && api != "" {
				return usageError{errors.New("--api with --fixtures=false: routes are driven by whoever runs the fixtures ('hubreplay fixtures serve --api')")}
			}
			if withFixtures && api == "" {
				return usageError{errors.New("give --api URL (the proxy's REST API) so the hub stub can route users to the emulators, or --fixtures=false when 'hubreplay fixtures serve' runs them")}
			}
			if api != "" && token == "" {
				return usageError{fmt.Errorf("--api needs the proxy's token in $%s", tokenEnv)}
			}
			if out == "" {
				out = fmt.Sprintf("replay-%s.results", time.Now().Format("20060102-150405"))
			}
			ctx := cmd.Context()
			stderr := cmd.ErrOrStderr()

			plan, recs, err := play.plan(ctx, tracePath, cmd.InOrStdin(), stderr)
			if err != nil {
				return err
			}
			if plan.Requests == 0 {
				return replay.ErrEmpty
			}
			speed := plan.Opts.Speed
			run := &replay.Runner{Target: target, Timeout: timeout, Duration: duration, TraceName: tracePath, StartAt: play.start, FixturesInProcess: withFixtures}
			var resp *fixtures.Responder
			var stub *fixtures.HubStub
			if withFixtures {
				var srv *fixtures.Servers
				if _, resp, srv, err = startFixtures(ctx, recs, stubSpeed(speed), play.serverTail, fixtures.Addrs{Hub: hubListen}); err != nil {
					return err
				}
				defer srv.Close()
				fmt.Fprintf(stderr, "fixtures: hub stub at %s (the proxy's --default-target), %d user servers emulated\n", srv.Hub(), srv.Users())
				stub = &fixtures.HubStub{API: api, Token: token, Routes: plan.Routes, Target: srv.Target, Speed: stubSpeed(speed), CheckInterval: check}
				run.Routes = stub
			}
			w, err := replay.CreateResults(out, fmt.Sprintf("replay of %s at %s", tracePath, target), force)
			if err != nil {
				return err
			}
			run.Results = w
			fmt.Fprintf(stderr, "replaying %s: %d connections, %d requests, %d WebSocket sessions over %s of trace time at %s → %s (results: %s)\n",
				tracePath, len(plan.Conns), plan.Requests, plan.Sessions, plan.Length.Round(time.Second), replay.SpeedString(speed), target, out)
			if plan.Skipped > 0 {
				fmt.Fprintf(stderr, "left out %d WebSocket sessions opened before the window (cut it with 'hubreplay slice' to keep them)\n", plan.Skipped)
			}

			stopShowing := showProgress(stderr, run)
			sum, runErr := run.Run(ctx, plan)
			stopShowing()
			if cerr := w.Close(); cerr != nil && runErr == nil {
				runErr = cerr
			}
			if sum != nil {
				fmt.Fprintln(cmd.OutOrStdout())
				_ = sum.WriteText(cmd.OutOrStdout())
			}
			if resp != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "fixtures\tanswered %d requests, played %d WebSocket sessions; %d user requests reached the hub (route missing)\n",
					resp.Served.Load(), resp.Sessions.Load(), resp.Misrouted.Load())
			}
			if stub != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "route API\t%s\n", apiCallsLine(stub.Calls()))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "results\t%s\n", out)
			if runErr != nil {
				return runErr
			}
			if ctx.Err() != nil {
				return fmt.Errorf("replay interrupted; what was replayed is in %s", out)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tracePath, "trace", "", "the trace to replay (required)")
	f.StringVar(&target, "target", "", "the proxy's public URL, e.g. http://127.0.0.1:8000 (required)")
	f.StringVarP(&out, "output", "o", "", "results file (default replay-DATE-TIME.results)")
	f.BoolVar(&force, "force", false, "replace the results file if it exists")
	play.add(f, true, true)
	f.DurationVar(&duration, "duration", 0, "stop after this much wall-clock time (default: play to the end)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long an answer may take beyond its recorded time")
	f.BoolVar(&withFixtures, "fixtures", true, "run the hub stub and user-server emulators in this process")
	f.StringVar(&hubListen, "hub-listen", "127.0.0.1:8081", "where the hub stub listens (the proxy's --default-target)")
	f.StringVar(&api, "api", "", "the proxy's REST API URL, e.g. http://127.0.0.1:8001 (routes are driven there)")
	f.StringVar(&tokenEnv, "token-env", "CONFIGPROXY_AUTH_TOKEN", "environment variable holding the proxy's API token")
	f.DurationVar(&check, "check-routes-interval", fixtures.DefaultCheckInterval, "JupyterHub's check_routes interval, in trace time (z2jh's last_activity_interval; JupyterHub alone: 5m)")
	return cmd
}

// playFlags decide what a replay plays. replay and fixtures serve share
// them: fixtures run elsewhere must drive the same routes (copies of users,
// window, speed) from the same moment.
type playFlags struct {
	speed, shard, from, to, tz, startAt string
	users                               string
	jitter                              time.Duration
	serverTail                          time.Duration // the fixtures': how long servers go on after their clients vanished
	vanishHold                          time.Duration // how long a silent client holds its connection
	seed                                uint64
	start                               time.Time // --start-at, parsed by plan
}

// add puts the flags on f: shards adds --shard, together --start-at (for
// processes that must start at one moment).
func (p *playFlags) add(f *pflag.FlagSet, shards, together bool) {
	f.StringVar(&p.speed, "speed", "1", "replay speed: 0.1 to 100 (recorded times are divided by it), or max")
	f.StringVar(&p.users, "users", "1", "play every user this many times (3 or 3x), the copies under fresh pseudonyms")
	f.DurationVar(&p.jitter, "jitter", time.Minute, "shift each copy of a user by up to this much trace time (seeded)")
	f.Uint64Var(&p.seed, "seed", 1, "seed for the copies' pseudonyms and jitter")
	f.StringVar(&p.from, "from", "", `start of the window: "+10m", "15:55", RFC 3339 (default: the trace's start)`)
	f.StringVar(&p.to, "to", "", "end of the window (default: the trace's end)")
	f.StringVar(&p.tz, "tz", "", "time zone for clock times in --from/--to (default: this machine's)")
	f.DurationVar(&p.serverTail, "server-tail", fixtures.DefaultServerTail, "where the recording's client vanished mid-answer, the emulated server goes on (to the promised length, a stream at its recorded cadence) for up to this much trace time, as the real one did; 0: stop where the recording stops")
	f.DurationVar(&p.vanishHold, "vanish-hold", 0, "a client the recording shows going silent (a laptop asleep: no reset, no close) holds its connection open, reading and sending nothing, for this much trace time, then resets it; 0: until the replay's end")
	if together {
		f.StringVar(&p.startAt, "start-at", "", "start at this moment (RFC 3339), together with other shards or 'fixtures serve' (default: now)")
	}
	if shards {
		f.StringVar(&p.shard, "shard", "0/1", "play part i of N (i/N), for N replaying processes")
	}
}

// args are the flags again, for a replay elsewhere (a pod) to play the same.
func (p *playFlags) args() []string {
	a := []string{"--speed", p.speed, "--users", p.users, "--jitter", p.jitter.String(), "--seed", fmt.Sprint(p.seed), "--server-tail", p.serverTail.String(), "--vanish-hold", p.vanishHold.String()}
	for _, f := range []struct{ name, v string }{{"--from", p.from}, {"--to", p.to}, {"--tz", p.tz}} {
		if f.v != "" {
			a = append(a, f.name, f.v)
		}
	}
	return a
}

// parseUsers reads --users: 1 to 1000 copies of every user ("3" or "3x").
func parseUsers(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimRight(s, "x×"))
	if err != nil || n < 1 || n > 1000 {
		return 0, usageError{fmt.Errorf("--users %q: give 1 to 1000 copies of every user, e.g. 3 or 3x", s)}
	}
	return n, nil
}

// plan checks the flags and reads the trace into a plan. The records it
// returns, read once, are what the fixtures' index is built from too
// (fixtures.BuildIndex): the two share them.
func (p *playFlags) plan(ctx context.Context, path string, stdin io.Reader, stderr io.Writer) (*replay.Plan, *trace.Records, error) {
	var o replay.Options
	var err error
	if o.Speed, err = replay.ParseSpeed(p.speed); err != nil {
		return nil, nil, usageError{fmt.Errorf("--speed: %w", err)}
	}
	if p.shard != "" {
		if o.Shard, err = replay.ParseShard(p.shard); err != nil {
			return nil, nil, usageError{fmt.Errorf("--shard: %w", err)}
		}
	}
	users, err := parseUsers(p.users)
	if err != nil {
		return nil, nil, err
	}
	o.Users, o.Jitter, o.Seed = users, p.jitter, p.seed
	if p.vanishHold < 0 {
		return nil, nil, usageError{fmt.Errorf("--vanish-hold %s: give a duration of 0 or more", p.vanishHold)}
	}
	o.VanishHold = p.vanishHold
	if p.startAt != "" {
		if p.start, err = time.Parse(time.RFC3339Nano, p.startAt); err != nil {
			return nil, nil, usageError{fmt.Errorf("--start-at %q: give an RFC 3339 time, e.g. %s", p.startAt, time.Now().Add(time.Minute).UTC().Format(time.RFC3339))}
		}
	}
	loc, err := loadTZ(p.tz)
	if err != nil {
		return nil, nil, err
	}
	r, err := openTrace(path, stdin)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	if o.Window, err = parseWindow(p.from, p.to, r.Header().Start, loc); err != nil {
		return nil, nil, err
	}
	recs, err := readTrace(ctx, r, path, o.Window, stderr)
	if err != nil {
		return nil, nil, err
	}
	plan, err := replay.BuildPlan(ctx, recs, o, nil)
	return plan, recs, err
}

// traceWindow reads --from and --to against the trace's start (the
// header only; a window is checked when the plan is built).
func traceWindow(path, from, to, tz string) (trace.Window, error) {
	if from == "" && to == "" {
		return trace.Window{}, nil
	}
	loc, err := loadTZ(tz)
	if err != nil {
		return trace.Window{}, err
	}
	r, err := openTrace(path, nil)
	if err != nil {
		return trace.Window{}, exitError{2, err}
	}
	defer r.Close()
	return parseWindow(from, to, r.Header().Start, loc)
}

// parseWindow reads --from and --to against a trace's start.
func parseWindow(from, to string, start time.Time, loc *time.Location) (trace.Window, error) {
	var win trace.Window
	var err error
	if from != "" {
		if win.From, err = trace.ParseWhen(from, start, loc); err != nil {
			return win, usageError{fmt.Errorf("--from: %w", err)}
		}
	}
	if to != "" {
		if win.To, err = trace.ParseWhen(to, start, loc); err != nil {
			return win, usageError{fmt.Errorf("--to: %w", err)}
		}
	}
	return win, nil
}

// startFixtures starts the hub stub and user-server emulators for a trace.
func startFixtures(ctx context.Context, recs *trace.Records, speed float64, tail time.Duration, addrs fixtures.Addrs) (*fixtures.Index, *fixtures.Responder, *fixtures.Servers, error) {
	ix, err := fixtures.BuildIndex(ctx, recs, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	resp := &fixtures.Responder{Index: ix, Speed: speed, Tail: tail}
	srv, err := fixtures.ListenAt(resp, ix.Targets, addrs)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start fixtures: %w", err)
	}
	return ix, resp, srv, nil
}

// readTrace reads what a replay of win needs of an opened trace into
// memory (trace.ReadWindow), with progress on a terminal: the plan and
// the fixtures' index share its records.
func readTrace(ctx context.Context, r *trace.Reader, path string, win trace.Window, stderr io.Writer) (*trace.Records, error) {
	prog := newProgress(stderr, path, "reading trace")
	defer prog.done()
	recs, err := trace.ReadWindow(ctx, r, win, prog.update)
	if err != nil {
		return nil, fmt.Errorf("read trace for replay: %w", err)
	}
	return recs, nil
}

// stubSpeed is the fixtures' speed. At max, recorded server times are not
// waited for (the fixtures take a zero speed for 1×, hence a huge factor).
func stubSpeed(speed float64) float64 {
	if speed <= 0 {
		return 1e6
	}
	return speed
}

func apiCallsLine(calls []fixtures.APICall) string {
	failed := 0
	var slowest time.Duration
	for _, c := range calls {
		if fixtures.Failed(c.Method, c.Status, c.Err) {
			failed++
		}
		slowest = max(slowest, c.Latency)
	}
	return fmt.Sprintf("%d calls, %d failed, slowest %s", len(calls), failed, slowest.Round(time.Millisecond))
}

// replayDisplay shows a replay's progress: a line redrawn every second on
// a terminal, a line every 10 s elsewhere (CI logs).
type replayDisplay struct {
	w     io.Writer
	tty   bool
	last  time.Time
	prev  replay.Progress
	shown bool
}

func newReplayDisplay(w io.Writer) *replayDisplay {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &replayDisplay{w: w, tty: tty, last: time.Now()}
}

func (d *replayDisplay) line(p replay.Progress) string {
	rate := 0.0
	if dt := (p.Elapsed - d.prev.Elapsed).Seconds(); dt > 0 {
		rate = float64(p.Done-d.prev.Done) / dt
	}
	pos := "max speed"
	if p.Length > 0 && p.Position > 0 {
		pos = fmt.Sprintf("trace %s / %s", p.Position.Truncate(time.Second), p.Length.Truncate(time.Second))
	}
	return fmt.Sprintf("replay %s (%s): %.0f req/s, %d requests, %d failed, %d connections open, %d WebSockets, %d frames",
		p.Elapsed.Truncate(time.Second), pos, rate, p.Done, p.Failed, p.Open, p.OpenWS, p.Frames)
}

func (d *replayDisplay) update(p replay.Progress) {
	switch {
	case d.tty:
		fmt.Fprintf(d.w, "\r%s\033[K", d.line(p))
		d.prev, d.shown = p, true
	case time.Since(d.last) >= 10*time.Second:
		fmt.Fprintln(d.w, d.line(p))
		d.last, d.prev = time.Now(), p
	}
}

// showProgress shows a replay's progress until the returned stop is called.
func showProgress(w io.Writer, run *replay.Runner) (stop func()) {
	disp := newReplayDisplay(w)
	ctx, cancel := context.WithCancel(context.Background())
	var shown sync.WaitGroup
	shown.Go(func() { wait.Every(ctx, time.Second, func() { disp.update(run.Progress()) }) })
	return func() {
		cancel()
		shown.Wait()
		disp.done(run.Progress())
	}
}

func (d *replayDisplay) done(p replay.Progress) {
	if d.shown {
		fmt.Fprint(d.w, "\r\033[K")
	}
}

func newResultsCmd() *cobra.Command {
	var asJSON, force bool
	var out string
	cmd := &cobra.Command{
		Use:   "results RESULTS...",
		Short: "Summarize replay results (several files: shards, taken together)",
		Example: `  hubreplay results peak.results
  hubreplay results --json shard-*.results | jq .percentiles.latency`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// A damaged file (a replay killed mid-run) still shows what it
			// holds; the damage is reported after, with exit status 2.
			all := &replay.Results{}
			var damage error
			for _, path := range args {
				res, err := replay.ReadResults(cmd.Context(), path)
				if res != nil {
					all.Append(res)
				}
				if err != nil && res == nil {
					return err
				}
				damage = cmp.Or(damage, err)
			}
			sum := all.Tally()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(sum); err != nil {
					return err
				}
				return damage
			}
			for _, run := range all.Runs {
				fmt.Fprintf(cmd.OutOrStdout(), "run\t%s at %s → %s, %d× users, shard %s: %d requests, %d sessions planned\n",
					run.Trace, replay.SpeedString(run.Speed), run.Target, run.Users, run.Shard, run.Requests, run.Sessions)
			}
			if len(all.Ends) < len(all.Runs) {
				fmt.Fprintf(cmd.OutOrStdout(), "note\t%d of %d replays did not finish (killed?): their results end early\n", len(all.Runs)-len(all.Ends), len(all.Runs))
			}
			if err := sum.WriteText(cmd.OutOrStdout()); err != nil {
				return err
			}
			return damage
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print every figure, histograms included, as JSON")
	merge := &cobra.Command{
		Use:   "merge -o OUT RESULTS...",
		Short: "Join the results of replay shards into one file",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("merge needs -o OUT")}
			}
			sum, err := replay.Merge(cmd.Context(), out, force, args...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "merged %d results into %s\n", len(args), out)
			return sum.WriteText(cmd.OutOrStdout())
		},
	}
	merge.Flags().StringVarP(&out, "output", "o", "", "the merged results file (required)")
	merge.Flags().BoolVar(&force, "force", false, "replace the output file if it exists")
	cmd.AddCommand(merge)
	return cmd
}
