package compare

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/internal/cpustat"
	"github.com/hubreplay/hubreplay/internal/sockstat"
	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// Options say what to compare, and how.
type Options struct {
	// TraceName is the trace's path, for the results files.
	TraceName string
	// Plan is the replay, built once from the trace; Index the fixtures'
	// view of the same trace.
	Plan  *replay.Plan
	Index *fixtures.Index
	// A is the reference (what runs in production), B the candidate.
	A, B proxy.Spec
	// NoiseRuns runs A this many more times, after B, to measure how much
	// two runs of the same proxy differ.
	NoiseRuns int
	// Settle is how long each candidate stands idle after its replay
	// before its last sample (default 10 s): Node's keep-alive timeout
	// is 5 s, so what a healthy proxy holds after it is what it keeps.
	Settle time.Duration
	// Timeout, CheckInterval: as replay's and the hub stub's; Timeout
	// also bounds each routes API call (default 30 s).
	Timeout       time.Duration
	CheckInterval time.Duration
	// ServerTail: as fixtures.Responder.Tail.
	ServerTail time.Duration
	// MemoryLimit, LimitBy, RestartDelay: as proxy.Options.
	MemoryLimit  int64
	LimitBy      string
	RestartDelay time.Duration
	// Dir receives one results file per run (A.results, B.results,
	// A'1.results …); Force replaces existing ones.
	Dir   string
	Force bool
	Cache *proxy.Cache
	Log   *slog.Logger
	// Watch, if set, hears what the comparison is doing: a stage of a run
	// ("obtaining", "starting", "replaying", "settling", "done"), and,
	// while replaying, the runner (for its Progress).
	Watch func(role, spec, stage string, run *replay.Runner)
	// Backend, if set, runs each candidate elsewhere (a kind cluster)
	// instead of as a local process; Run then only orders the runs and
	// names their results files.
	Backend Backend
}

// Backend runs one candidate on the comparison's plan and writes its
// results file: replay's records, and the candidate's through a
// CandidateWriter.
type Backend interface {
	RunCandidate(ctx context.Context, role string, spec proxy.Spec, results string) error
}

// CandidateWriter is how a backend puts the candidate's side into a
// results file, in the records Analyze reads.
type CandidateWriter struct {
	W     replay.RecordWriter
	Start time.Time // the wall-clock time of replay time 0
	// The machine's sockets in TIME_WAIT when the run started, and before
	// it waited for them (for how long): see Candidate.
	TimeWait, WaitedTW int
	Waited             time.Duration
	err                error
}

// QuietTimeWait is how few sockets in TIME_WAIT a local run waits for
// before it starts: an idle machine has tens; a run through a candidate
// that closes every connection leaves tens of thousands, against about
// 28,000 ephemeral ports. A few thousand cost a new connection little.
const QuietTimeWait = 4096

// Sample records a resource sample.
func (c *CandidateWriter) Sample(s proxy.Sample) { c.write(&Sample{TS: s.At.Sub(c.Start), Sample: s}) }

// Exit records an exit of the candidate (a crash, an OOM kill).
func (c *CandidateWriter) Exit(e proxy.Exit) { c.write(&Exit{TS: e.At.Sub(c.Start), Exit: e}) }

// APICall records a call of the hub stub's to the routes API.
func (c *CandidateWriter) APICall(a fixtures.APICall) { c.write(apiCall(a, c.Start)) }

// Candidate records which candidate this is, last.
func (c *CandidateWriter) Candidate(role, spec, version, backend, limit string, settle time.Duration) {
	c.write(&Candidate{Role: role, Spec: spec, Version: version, Backend: backend, Limit: limit, Started: c.Start, Settle: settle,
		TimeWait: c.TimeWait, WaitedTW: c.WaitedTW, Waited: c.Waited})
}

// Err is the first write error.
func (c *CandidateWriter) Err() error { return c.err }

func (c *CandidateWriter) write(r trace.Record) {
	if err := c.W.Write(r); err != nil && c.err == nil {
		c.err = fmt.Errorf("write results: %w", err)
	}
}

func (o *Options) settle() time.Duration {
	if o.Settle <= 0 {
		return 10 * time.Second
	}
	return o.Settle
}

func (o *Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.Default()
	}
	return o.Log
}

func (o *Options) watch(role, spec, stage string, run *replay.Runner) {
	if o.Watch != nil {
		o.Watch(role, spec, stage, run)
	}
}

// RunSpec is one run of a comparison.
type RunSpec struct {
	Role    string
	Spec    proxy.Spec
	Results string // its results file
}

// Runs lists the runs Options ask for, in the order they run: A, B, then
// A again for noise (after B, so that A's runs bracket B's).
func (o *Options) Runs() []RunSpec {
	runs := []RunSpec{
		{Role: RoleA, Spec: o.A, Results: filepath.Join(o.Dir, "A.results")},
		{Role: RoleB, Spec: o.B, Results: filepath.Join(o.Dir, "B.results")},
	}
	for i := range o.NoiseRuns {
		role, name := RoleNoise, "A-noise"
		if i > 0 {
			role, name = fmt.Sprintf("%s%d", RoleNoise, i+1), fmt.Sprintf("A-noise%d", i+1)
		}
		runs = append(runs, RunSpec{Role: role, Spec: o.A, Results: filepath.Join(o.Dir, name+".results")})
	}
	return runs
}

// Run runs every candidate on the plan, one after the other, and returns
// their results files. An error means the comparison could not be made
// (a candidate that cannot be obtained or started, results that cannot be
// written); what a candidate does wrong while running is a result.
func Run(ctx context.Context, o Options) ([]string, error) {
	if o.Plan == nil || (o.Index == nil && o.Backend == nil) {
		return nil, errors.New("compare: no plan or fixtures index")
	}
	runs := o.Runs()
	if !o.Force {
		for _, r := range runs {
			if _, err := os.Stat(r.Results); err == nil {
				return nil, fmt.Errorf("compare: %s exists (give --force to replace it, or another output directory)", r.Results)
			}
		}
	}
	mkdir := func() error {
		if err := os.MkdirAll(o.Dir, 0o755); err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		return nil
	}
	if o.Backend != nil {
		if err := mkdir(); err != nil {
			return nil, err
		}
		var files []string
		for _, r := range runs {
			o.watch(r.Role, r.Spec.Raw, "staging and replaying on the backend", nil)
			if err := o.Backend.RunCandidate(ctx, r.Role, r.Spec, r.Results); err != nil {
				return files, fmt.Errorf("compare: run %s (%s): %w", r.Role, r.Spec, err)
			}
			o.watch(r.Role, r.Spec.Raw, "done", nil)
			files = append(files, r.Results)
		}
		return files, nil
	}
	// Obtain both first: a misspelt B must not cost an A run.
	progs := map[string]*proxy.Program{}
	for _, r := range runs {
		if progs[r.Spec.Raw] != nil {
			continue
		}
		o.watch(r.Role, r.Spec.Raw, "obtaining", nil)
		p, err := proxy.Obtain(ctx, r.Spec, o.Cache)
		if err != nil {
			return nil, fmt.Errorf("compare: obtain %s (%s): %w", r.Role, r.Spec, err)
		}
		progs[r.Spec.Raw] = p
	}
	// Only now: a candidate that cannot be had leaves no empty directory.
	if err := mkdir(); err != nil {
		return nil, err
	}
	var files []string
	for _, r := range runs {
		if err := runOne(ctx, &o, r, progs[r.Spec.Raw]); err != nil {
			return files, fmt.Errorf("compare: run %s (%s): %w", r.Role, r.Spec, err)
		}
		files = append(files, r.Results)
		if ctx.Err() != nil {
			return files, fmt.Errorf("compare: interrupted after %s: %w", r.Role, ctx.Err())
		}
	}
	return files, nil
}

// runOne replays the plan against one candidate behind fresh fixtures,
// samples it throughout and for Settle after, and writes everything to
// its results file.
func runOne(ctx context.Context, o *Options, r RunSpec, prog *proxy.Program) error {
	plan := o.Plan
	speed := plan.Opts.Speed
	fixSpeed := speed
	if fixSpeed <= 0 {
		fixSpeed = 1e6 // as fast as possible: recorded server times are not waited for
	}
	// An earlier run's sockets in TIME_WAIT would make this run's
	// connections dearer: wait them out (a minute at most).
	waitFrom := time.Now()
	o.watch(r.Role, r.Spec.Raw, "waiting for the sockets earlier runs left in TIME_WAIT to expire", nil)
	twBefore, tw, err := sockstat.Drain(ctx, QuietTimeWait, 250*time.Millisecond)
	if err != nil && ctx.Err() != nil {
		return err
	}
	waited := time.Since(waitFrom)
	if err != nil {
		o.log().Warn("cannot tell how many sockets are in TIME_WAIT", "err", err)
		waited = 0 // not measured
	}
	o.watch(r.Role, r.Spec.Raw, "starting", nil)
	resp := &fixtures.Responder{Index: o.Index, Speed: fixSpeed, Tail: o.ServerTail, Log: o.log()}
	srv, err := fixtures.Listen(resp, o.Index.Targets)
	if err != nil {
		return fmt.Errorf("start fixtures: %w", err)
	}
	defer srv.Close()
	cand, err := proxy.Start(ctx, prog, proxy.Options{DefaultTarget: srv.Hub(), MemoryLimit: o.MemoryLimit, LimitBy: o.LimitBy,
		RestartDelay: o.RestartDelay, Log: o.log()})
	if err != nil {
		return err
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cand.Stop()
		}
	}
	defer stop()
	w, err := replay.CreateResults(r.Results, fmt.Sprintf("compare %s: %s on %s", r.Role, r.Spec, filepath.Base(o.TraceName)), o.Force)
	if err != nil {
		return err
	}
	defer w.Close()
	// The baseline is taken once the candidate's sockets hold still: for
	// a moment after start-up it may still hold one of its readiness
	// checks' connections.
	baseline := cand.Quiet(ctx, 3*time.Second)

	// A candidate that hangs must not hold the hub stub's calls longer
	// than the replay's requests.
	api := &http.Client{Timeout: cmp.Or(o.Timeout, 30*time.Second)}
	defer api.CloseIdleConnections()
	stub := &fixtures.HubStub{API: cand.APIURL(), Token: cand.Token(), Routes: plan.Routes, Target: srv.Target, Speed: fixSpeed,
		CheckInterval: o.CheckInterval, Client: api, Log: o.log()}
	run := &replay.Runner{Target: cand.URL(), Results: w, Routes: stub, Timeout: o.Timeout, TraceName: o.TraceName, Log: o.log(), FixturesInProcess: true}

	// Samples go to the file as they come, so a comparison stopped half-way
	// keeps them; their times are known once the replay has started.
	cw := &CandidateWriter{W: w, TimeWait: tw, WaitedTW: twBefore, Waited: waited}
	rec := &recorder{cw: cw, cand: cand, base: &baseline, late: &resp.Late}
	sampling, stopSampling := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { rec.follow(sampling, run) })

	o.watch(r.Role, r.Spec.Raw, "replaying", run)
	_, runErr := run.Run(ctx, plan)
	// The users and their servers are gone now: whatever the candidate
	// still holds after the idle time is its own doing (a healthy proxy
	// closes a socket whose peer has closed).
	_ = srv.Close()
	api.CloseIdleConnections() // the hub stub's, to the API: not the candidate's doing
	if runErr == nil && ctx.Err() == nil {
		o.watch(r.Role, r.Spec.Raw, "settling", nil)
		wait.For(ctx, o.settle())
	}
	final := cand.Sample(context.WithoutCancel(ctx))
	stopSampling()
	wg.Wait()
	start := run.Started()
	if start.IsZero() {
		start = time.Now()
	}
	rec.flush(start)
	cw.Sample(final)
	exits := cand.Exits() // before the stop: the stop is not an exit of the run
	stop()
	for _, e := range exits {
		cw.Exit(e)
	}
	for _, c := range stub.Calls() {
		cw.APICall(c)
	}
	cw.Candidate(r.Role, r.Spec.Raw, prog.Version, "local", cand.Limit(), o.settle())
	o.watch(r.Role, r.Spec.Raw, "done", nil)
	return errors.Join(runErr, cw.Err(), w.Close())
}

// recorder writes a candidate's samples to its results file as they come,
// and the harness's own.
type recorder struct {
	cw   *CandidateWriter
	cand *proxy.Candidate
	seen int
	base *proxy.Sample // the sample before the replay, written first
	cpu  cpustat.Times // the last reading of the processors
	late *fixtures.Lateness
}

// follow writes new samples every second once the replay has started.
func (r *recorder) follow(ctx context.Context, run *replay.Runner) {
	r.cpu, _ = cpustat.Read()
	wait.Every(ctx, time.Second, func() {
		now, err := cpustat.Read()
		if start := run.Started(); !start.IsZero() {
			r.flush(start)
			if err == nil && !r.cpu.At.IsZero() {
				r.cw.write(&HarnessSample{TS: now.At.Sub(start), Shares: now.Since(r.cpu), Fixtures: r.late.Take()})
			}
		}
		if err == nil {
			r.cpu = now
		}
	})
}

func (r *recorder) flush(start time.Time) {
	r.cw.Start = start
	if r.base != nil {
		r.cw.Sample(*r.base)
		r.base = nil
	}
	samples := r.cand.Samples()
	for _, s := range samples[r.seen:] {
		r.cw.Sample(s)
	}
	r.seen = len(samples)
}
