//go:build !tapimage

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hubreplay/hubreplay/compare"
	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/kindcluster"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

const verdictHelp = `Every figure is judged both ways: B is worse, better or the same as A
(beyond or within the threshold and the noise between A's runs), or it was
not measured. The report's first lines say what B did worse and what it did
better.

Exit status: 0 when B is no worse than A, 1 for a regression (the report
names why), 2 when the comparison gave no answer: it failed (a candidate
that would not start, a damaged trace, a bad command line), or a check in
force could not be measured (plain replay results hold no samples of the
proxy: give --max-rss-growth off --max-sockets-left off
--fail-on-restart=false to judge them without).

B is worse than A when, beyond the thresholds and beyond the noise between
A's runs (--noise-runs), its p99 latency is higher (--max-p99-regression,
at least --min-p99-delta), more of its requests failed (--max-error-rate:
refused, reset, timed out, the proxy's own 502/503, missing routes), fewer
WebSocket sessions connected or fewer server frames arrived in order
(--max-ws-loss), it kept more memory after standing idle (--max-rss-growth)
or left more sockets open (--max-sockets-left: the leak; descriptors of
connections gone, in no TCP state, --max-stateless-sockets-left), or its routes
API answered the hub more slowly (the median call, by the latency
thresholds: the hub awaits every add before it sends the user on), or it
exited during the run, or would have been restarted by z2jh's liveness
probe (/_chp_healthz unanswered as the kubelet counts it: every 10 s, 3 s
timeout, 30 failures in a row, or what --values says), or left its probe
unanswered for longer stretches than A, by more than one probe period
(--fail-on-restart).

When the harness itself was the bottleneck in a run (the replayer got to
over 1% of its requests more than 100 ms late, or the fixtures to over 1%
of their answers and frames, or the processors were 95% busy for a tenth of
the run or of the stretches the typical latency is taken from, or the
hypervisor took 5% of them (steal), or it ran at --speed max), or A could
not keep the trace's pace in a run (a tenth of its requests waited more
than 100 ms for its earlier answers: it set the load itself, and B's cannot
be set against it), the headline says SATURATED, and latency, route API latency, timeouts, probe
silences, WebSocket connects and frame delivery are left out of the
verdict. 'hubreplay
capacity' finds the highest speed this machine's harness holds a trace at;
compare says before a run whether its speed is within it.

Every run starts on a machine as quiet as the last run left it: it first
waits (a minute at most) for the sockets earlier runs left in TIME_WAIT to
expire.`

// verdictFlags are the thresholds, shared by compare and report.
type verdictFlags struct {
	p99, errRate, wsLoss, rssGrowth, socketsLeft, statelessLeft string
	minP99                                                      time.Duration
	failOnRestart                                               bool
}

func (v *verdictFlags) add(f *pflag.FlagSet) {
	d := compare.DefaultThresholds()
	f.StringVar(&v.p99, "max-p99-regression", "10%", "how much higher B's p99 latency, and its routes API's median, may be than A's ('off': not judged)")
	f.DurationVar(&v.minP99, "min-p99-delta", d.MinP99Delta, "a latency difference smaller than this is never a regression")
	f.StringVar(&v.errRate, "max-error-rate", "0.5%", "how many more of B's requests may fail, in percentage points ('off': not judged)")
	f.StringVar(&v.wsLoss, "max-ws-loss", "0.5%", "how many more WebSocket sessions and frames B may lose, in percentage points ('off': not judged)")
	f.StringVar(&v.rssGrowth, "max-rss-growth", "64Mi", "how much more memory B may keep after the run and idle ('off': not judged)")
	f.StringVar(&v.socketsLeft, "max-sockets-left", strconv.Itoa(d.MaxSocketsLeft), "how many more sockets B may leave open after the run and idle, connections in a TCP state (ESTABLISHED, CLOSE_WAIT: the incident's leak) ('off': not judged)")
	f.StringVar(&v.statelessLeft, "max-stateless-sockets-left", strconv.Itoa(d.MaxStatelessLeft), "how many more socket descriptors in no TCP state (their connections gone, never closed) B may keep after the run and idle ('off': not judged)")
	f.BoolVar(&v.failOnRestart, "fail-on-restart", true, "a B that exits (crash, OOM) more often than A, or hangs, is a regression")
}

func (v *verdictFlags) thresholds() (compare.Thresholds, error) {
	th := compare.Thresholds{MinP99Delta: v.minP99, FailOnRestart: v.failOnRestart, Off: map[string]bool{}}
	var err error
	// "off" takes a check out of force: shown, never judged.
	off := func(val string, checks ...string) bool {
		if strings.EqualFold(strings.TrimSpace(val), "off") {
			for _, c := range checks {
				th.Off[c] = true
			}
			return true
		}
		return false
	}
	for _, p := range []struct {
		flag, val string
		dst       *float64
		checks    []string
	}{{"--max-p99-regression", v.p99, &th.MaxP99Regression, []string{"latency p99", "route API latency"}},
		{"--max-error-rate", v.errRate, &th.MaxErrorRate, []string{"failed requests"}},
		{"--max-ws-loss", v.wsLoss, &th.MaxWSLoss, []string{"WebSocket connects failed", "WebSocket frames lost"}}} {
		if off(p.val, p.checks...) {
			continue
		}
		if *p.dst, err = parseShare(p.val); err != nil {
			return th, usageError{fmt.Errorf("%s: %w (or 'off')", p.flag, err)}
		}
	}
	if !off(v.rssGrowth, "memory kept after idle") {
		if th.MaxRSSGrowth, err = parseSize(v.rssGrowth); err != nil {
			return th, usageError{fmt.Errorf("--max-rss-growth: %w (or 'off')", err)}
		}
	}
	for _, p := range []struct {
		flag, val string
		dst       *int
		check     string
	}{{"--max-sockets-left", v.socketsLeft, &th.MaxSocketsLeft, "sockets left open"},
		{"--max-stateless-sockets-left", v.statelessLeft, &th.MaxStatelessLeft, "sockets left in no TCP state"}} {
		if off(p.val, p.check) {
			continue
		}
		if *p.dst, err = strconv.Atoi(strings.TrimSpace(p.val)); err != nil || *p.dst < 0 {
			return th, usageError{fmt.Errorf("%s: %q is not a count of sockets (or 'off')", p.flag, p.val)}
		}
	}
	return th, nil
}

// parseShare reads "10%" or "0.1".
func parseShare(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSuffix(t, "%"), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q: give a share like 10%% or 0.1", s)
	}
	if pct {
		v /= 100
	}
	return v, nil
}

func newCompareCmd() *cobra.Command {
	var (
		tracePath, a, b, out, memLimit, limitBy string
		play                                    playFlags
		verdict                                 verdictFlags
		noiseRuns, harnessProcs                 int
		settle, timeout, check, restartDelay    time.Duration
		force                                   bool
		kind                                    kindFlags
	)
	cmd := &cobra.Command{
		Use:   "compare --trace TRACE --a SPEC --b SPEC",
		Short: "Replay a trace against two candidate proxies, one after the other, and judge B against A",
		Long: `compare answers "is B better than A, and is it safe?" on recorded traffic: it
replays TRACE against candidate A (what runs in production), then against B
(a fork, a PR build, a new release), each started as z2jh starts the proxy,
behind fresh fixtures and a fresh hub stub that drives its routes API, with
the same plan (--speed, --users, --seed). Each candidate is sampled every
second — memory, CPU, file descriptors, TCP sockets by state, error lines in
its log, exits — and after its replay it stands idle for --settle, so that
what it does not give back shows. --noise-runs 1 runs A once more, after B,
to measure how much two runs of the same proxy differ; the verdict then
looks only beyond that.

Into the output directory (-o) go each run's results file (A.results,
B.results, A-noise.results) and the report three ways: report.html (one
file, plots over trace time, opens without network), report.md (for a pull
request; also appended to $GITHUB_STEP_SUMMARY when that is set) and
report.json (every figure). 'hubreplay report' renders them again from the
results files, with other thresholds if wanted.

--backend kind runs each candidate in a kind cluster instead (created, or
reused by --kind-name; Docker needed), as production runs it: the proxy as
z2jh's Deployment (its probes, and resources from --values), the fixtures
as a Deployment, the replay as --shards pods of an Indexed Job. Samples come
from the kubelet (memory, CPU, file descriptors, sockets); restarts and OOM
kills from the pod's status. Candidates are chp@VERSION (the project's
image) or image:REPO:TAG (loaded into the nodes); hubreplay's own image
must be there ('hubreplay kind image', or --kind-build SRC).

--backend k8s does the same in a cluster of yours (--kubeconfig, --context):
each candidate in a namespace of its own (hubreplay-a, hubreplay-b, ...,
deleted after its run unless --keep), the trace and the results on a volume
claim there (--storage-class, --access-mode: ReadWriteMany unless all shards
fit one node), copied in and out through a pod running hubreplay's image
(--image REPO:TAG, pullable from the cluster). Candidates' images must be
pullable too. With N --shards on N nodes it grows past one machine.

` + verdictHelp + `

` + proxy.SpecHelp,
		Example: `  hubreplay compare --trace peak.trace --a chp@4.5.6 --b chp:../my-fork --speed 10
  hubreplay compare --trace peak.trace --a chp@4.5.6 --b chp@5.3.0 --noise-runs 1 --users 2x -o out/
  hubreplay compare --trace peak.trace --a chp@4.5.6 --b chp:. --max-p99-regression 25% --max-rss-growth 128Mi`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tracePath == "" || a == "" || b == "" {
				return usageError{errors.New("compare needs --trace TRACE, --a SPEC and --b SPEC")}
			}
			specA, err := proxy.ParseSpec(a)
			if err != nil {
				return usageError{fmt.Errorf("--a: %w", err)}
			}
			specB, err := proxy.ParseSpec(b)
			if err != nil {
				return usageError{fmt.Errorf("--b: %w", err)}
			}
			th, err := verdict.thresholds()
			if err != nil {
				return err
			}
			if th.Liveness, err = livenessOf(kind.values); err != nil {
				return err
			}
			mem, err := parseSize(memLimit)
			if err != nil {
				return usageError{fmt.Errorf("--memory-limit: %w", err)}
			}
			if noiseRuns < 0 || noiseRuns > 5 {
				return usageError{fmt.Errorf("--noise-runs %d: 0 to 5", noiseRuns)}
			}
			if out == "" {
				out = "compare-" + time.Now().Format("20060102-150405")
			}
			if err := writableDir(out); err != nil {
				return usageError{fmt.Errorf("-o: %w", err)} // before the trace is read
			}
			ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
			plan, recs, err := play.plan(ctx, tracePath, cmd.InOrStdin(), stderr)
			if err != nil {
				return exitError{2, err}
			}
			if plan.Requests == 0 {
				return exitError{2, replay.ErrEmpty}
			}
			o := compare.Options{TraceName: tracePath, Plan: plan, A: specA, B: specB, NoiseRuns: noiseRuns,
				Settle: settle, ServerTail: play.serverTail, Timeout: timeout, CheckInterval: check, MemoryLimit: mem, LimitBy: limitBy, RestartDelay: restartDelay,
				Dir: out, Force: force}
			switch kind.backend {
			case "local":
				if o.Index, err = fixtures.BuildIndex(ctx, recs, nil); err != nil {
					return exitError{2, err}
				}
				boundHarness(harnessProcs)
			case "kind":
				b, cleanup, err := kind.start(ctx, stderr, tracePath, play.args(), settle, check, mem)
				if err != nil {
					return exitError{2, err}
				}
				defer cleanup()
				o.Backend = b
			case "k8s":
				b, err := kind.startK8s(stderr, tracePath, play.args(), settle, check, mem)
				if err != nil {
					var u usageError
					if errors.As(err, &u) {
						return u
					}
					return exitError{2, err}
				}
				o.Backend = b
			default:
				return usageError{fmt.Errorf("--backend %q: local, kind or k8s", kind.backend)}
			}
			// What this machine's harness held before says whether this speed will do.
			var capacity *compare.Capacity
			if kind.backend == "local" {
				if capacity, err = compare.LoadCapacity(capacityFile()); err != nil {
					fmt.Fprintf(stderr, "hubreplay: %v (starting afresh)\n", err)
				}
				if advice, warn := capacity.Advise(plan, specA.Raw, specB.Raw); warn {
					fmt.Fprintf(stderr, "warning: %s\n", advice)
				} else {
					fmt.Fprintf(stderr, "harness: %s\n", advice)
				}
			}
			runs := 2 + noiseRuns
			fmt.Fprintf(stderr, "comparing %s (A) with %s (B) on %s: %d requests, %d WebSocket sessions over %s of trace time at %s; %d runs of about %s each, then %s idle\n",
				specA, specB, tracePath, plan.Requests, plan.Sessions, plan.Length.Round(time.Second), replay.SpeedString(plan.Opts.Speed),
				runs, wallTime(plan), settle)
			w := &compareWatch{w: stderr}
			o.Watch = w.watch
			speed, peak := plan.Opts.Speed, plan.PeakRate()
			files, err := compare.Run(ctx, o)
			w.stop()
			if err != nil {
				if len(files) > 0 {
					err = fmt.Errorf("%w (results so far: %s)", err, strings.Join(files, ", "))
				}
				return exitError{2, err}
			}
			rep, err := analyzeAndWrite(ctx, cmd.OutOrStdout(), stderr, th, out, files)
			if rep != nil && capacity != nil {
				if cerr := capacity.Record(speed, peak, rep); cerr != nil {
					fmt.Fprintf(stderr, "hubreplay: %v\n", cerr)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&tracePath, "trace", "", "the trace to replay (required)")
	f.StringVar(&a, "a", "", "candidate A, the reference, e.g. chp@4.5.6 (required)")
	f.StringVar(&b, "b", "", "candidate B, judged against A, e.g. chp:../my-fork (required)")
	f.IntVar(&noiseRuns, "noise-runs", 0, "run A this many more times to measure run-to-run noise")
	f.StringVarP(&out, "output", "o", "", "directory for the results and reports (default compare-DATE-TIME)")
	f.BoolVar(&force, "force", false, "replace results in the output directory")
	play.add(f, false, false)
	f.DurationVar(&settle, "settle", 10*time.Second, "how long each candidate stands idle after its replay before the last sample")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long an answer may take beyond its recorded time")
	f.DurationVar(&check, "check-routes-interval", fixtures.DefaultCheckInterval, "JupyterHub's check_routes interval, in trace time (z2jh's last_activity_interval; JupyterHub alone: 5m)")
	f.StringVar(&memLimit, "memory-limit", "", "cap each candidate's memory like a pod limit, e.g. 1Gi (kind: the pod's limit, over --values)")
	f.StringVar(&limitBy, "limit-by", "", "how to cap memory: cgroup or node (default: cgroup where the machine has one)")
	f.DurationVar(&restartDelay, "restart-delay", 10*time.Second, "how long a dead candidate stays down before it is restarted")
	f.IntVar(&harnessProcs, "harness-procs", 0, "local: "+harnessProcsHelp)
	verdict.add(f)
	kind.add(f)
	return cmd
}

func wallTime(p *replay.Plan) string {
	if p.Opts.Speed <= 0 {
		return "as fast as it goes"
	}
	return (time.Duration(float64(p.Length) / p.Opts.Speed)).Round(time.Second).String()
}

func newReportCmd() *cobra.Command {
	var (
		out, values string
		verdict     verdictFlags
		force       bool
	)
	cmd := &cobra.Command{
		Use:   "report A.results B.results [A-noise.results...]",
		Short: "Render a comparison again from its results files (HTML, Markdown, JSON), with its verdict",
		Long: `report judges B against A from stored results — those 'hubreplay compare'
wrote, or two plain 'hubreplay replay' results of the same plan (then
without the proxy's resources) — and writes report.html, report.md and
report.json into -o (default: the first file's directory).

` + verdictHelp,
		Example: `  hubreplay report out/A.results out/B.results out/A-noise.results
  hubreplay report --max-p99-regression 25% -o /tmp/r out/*.results`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			th, err := verdict.thresholds()
			if err != nil {
				return err
			}
			if th.Liveness, err = livenessOf(values); err != nil {
				return err
			}
			if out == "" {
				out = filepath.Dir(args[0])
			}
			if !force {
				for _, name := range reportNames {
					if _, err := os.Stat(filepath.Join(out, name)); err == nil {
						return usageError{fmt.Errorf("%s exists: give --force to replace the reports in %s, or another -o", filepath.Join(out, name), out)}
					}
				}
			}
			return writeReports(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), th, out, args)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory for the reports (default: the first results file's)")
	cmd.Flags().BoolVar(&force, "force", false, "replace reports already in the directory")
	cmd.Flags().StringVar(&values, "values", "", "a z2jh values file: its proxy.chp.livenessProbe says when the kubelet would restart a silent candidate")
	verdict.add(cmd.Flags())
	return cmd
}

// capacityFile is where compare keeps what this machine's harness held:
// beside the candidate cache ($HUBREPLAY_CACHE, or ~/.cache/hubreplay).
func capacityFile() string {
	return filepath.Join(filepath.Dir(proxy.DefaultCache().Dir), "harness.json")
}

// livenessOf is the liveness probe of a z2jh values file (z2jh's defaults
// without one): the kubelet's judgement of a candidate that stops answering.
func livenessOf(values string) (compare.Liveness, error) {
	v, err := kindcluster.LoadValues(values)
	if err != nil {
		return compare.Liveness{}, err
	}
	p := v.Proxy.CHP.LivenessProbe
	l := compare.Liveness{Period: time.Duration(p.PeriodSeconds) * time.Second, Timeout: time.Duration(p.TimeoutSeconds) * time.Second, Failures: int(p.FailureThreshold)}
	if l.Period <= 0 || l.Failures <= 0 {
		return compare.Liveness{}, usageError{fmt.Errorf("%s: proxy.chp.livenessProbe needs periodSeconds and failureThreshold above 0", values)}
	}
	return l, nil
}

// writeReports analyzes results files, writes the three reports, prints
// the Markdown and the verdict, and returns the exit status as an error.
func writeReports(ctx context.Context, stdout, stderr io.Writer, th compare.Thresholds, dir string, files []string) error {
	_, err := analyzeAndWrite(ctx, stdout, stderr, th, dir, files)
	return err
}

// analyzeAndWrite is writeReports, and returns the report (nil if it could
// not be made).
func analyzeAndWrite(ctx context.Context, stdout, stderr io.Writer, th compare.Thresholds, dir string, files []string) (*compare.Report, error) {
	rep, err := compare.Analyze(ctx, th, files...)
	if err != nil {
		return nil, exitError{2, err}
	}
	return rep, renderReports(stdout, stderr, rep, dir)
}

// writableDir tells whether files can be made in dir, or in the directory
// that would hold it, without making anything that stays.
func writableDir(dir string) error {
	probe := dir
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("%s is a file, not a directory", dir)
	} else if err != nil {
		probe = filepath.Dir(dir)
		for { // the nearest directory that exists
			if _, err := os.Stat(probe); err == nil || probe == filepath.Dir(probe) {
				break
			}
			probe = filepath.Dir(probe)
		}
	}
	f, err := os.CreateTemp(probe, ".hubreplay-probe-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", probe, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// reportNames are the reports a comparison writes: HTML, Markdown, JSON.
var reportNames = []string{"report.html", "report.md", "report.json"}

// renderReports writes the three reports, prints the Markdown and the
// verdict, and returns the exit status as an error.
func renderReports(stdout, stderr io.Writer, rep *compare.Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return exitError{2, fmt.Errorf("reports: %w", err)}
	}
	for i, write := range []func(io.Writer) error{rep.WriteHTML, rep.WriteMarkdown, rep.WriteJSON} {
		if err := writeFile(filepath.Join(dir, reportNames[i]), write); err != nil {
			return exitError{2, err}
		}
	}
	if err := rep.WriteMarkdown(stdout); err != nil {
		return exitError{2, err}
	}
	if summary := os.Getenv("GITHUB_STEP_SUMMARY"); summary != "" {
		f, err := os.OpenFile(summary, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			err = rep.WriteMarkdown(f)
			err = errors.Join(err, f.Close())
		}
		if err != nil {
			fmt.Fprintf(stderr, "hubreplay: $GITHUB_STEP_SUMMARY: %v\n", err)
		}
	}
	html, _ := filepath.Abs(filepath.Join(dir, "report.html"))
	fmt.Fprintf(stderr, "\n%s\nreport: %s (also report.md, report.json)\n", rep.Headline(), html)
	switch {
	case rep.Verdict.Regression:
		return exitError{1, errors.New("regression: " + strings.Join(rep.Verdict.Reasons, "; "))}
	case rep.Verdict.Unanswered:
		return exitError{2, errors.New("no answer: " + strings.Join(rep.Verdict.Unmeasured, "; "))}
	}
	return nil
}

// writeFile writes a file whole, or not at all.
func writeFile(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	// Readable as the results beside it are (a temporary file is 0600).
	if err := errors.Join(tmp.Chmod(0o644), write(tmp), tmp.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// compareWatch shows a comparison's progress: a line per stage of each
// run, and the replay's progress while it replays.
type compareWatch struct {
	w        io.Writer
	mu       sync.Mutex
	started  time.Time
	stopShow func() // the replay's progress display, while one shows
}

func (c *compareWatch) watch(role, spec, stage string, run *replay.Runner) {
	c.stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started.IsZero() {
		c.started = time.Now()
	}
	fmt.Fprintf(c.w, "[%s] %s (%s): %s\n", time.Since(c.started).Truncate(time.Second), role, spec, stage)
	if run != nil {
		c.stopShow = showProgress(c.w, run)
	}
}

func (c *compareWatch) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopShow != nil {
		c.stopShow()
		c.stopShow = nil
	}
}
