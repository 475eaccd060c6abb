package replay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/trace"
)

// RecordWriter takes result records: a results file (trace.Writer), or
// anything else that stores them.
type RecordWriter interface {
	Write(trace.Record) error
}

// RouteDriver applies a plan's route events (the hub stub does). Prime
// puts in the routes the replay starts with (time 0), before any traffic;
// Run applies the rest, timed from start (the wall-clock time of replay
// time 0), until ctx is cancelled.
type RouteDriver interface {
	Prime(ctx context.Context) error
	Run(ctx context.Context, start time.Time) error
}

// LateRoutes is what a route driver may tell of its own lateness: that
// the route serving path for a request due at at (replay time) was not yet
// in place when it was sent, at sent, because the driver woke late for its
// add or had not had it confirmed (and how late it woke). The hub stub
// does.
type LateRoutes interface {
	LateAdd(path string, at time.Duration, sent time.Time) (time.Duration, bool)
}

// Runner replays plans against a target proxy.
type Runner struct {
	// Target is the proxy's public URL, e.g. http://127.0.0.1:8000.
	Target string
	// Results receives a Run record, then every Request and Session as it
	// ends, then an End record. Optional.
	Results RecordWriter
	// Routes, if set, drives the plan's route events.
	Routes RouteDriver
	// Timeout is how long an answer may take beyond its recorded (scaled)
	// time before the request counts as timed out (default 30 s); it
	// also bounds connecting.
	Timeout time.Duration
	// MaxOpen caps connections open at once (default: what the process's
	// file limit allows, less a reserve): beyond it, connections wait, and
	// their requests show it as send-time error.
	MaxOpen int
	// FixturesInProcess says the fixtures answer in this process: each
	// connection then costs it two files (the fixtures' end too), and
	// the default MaxOpen is half as many, so that a burst cannot leave
	// the fixtures without files to accept with.
	FixturesInProcess bool
	// Duration stops the replay after this much wall-clock time (0: none).
	Duration time.Duration
	// StartAt, if set, is the wall-clock time of replay time 0: processes
	// that replay shards of one trace, and fixtures run elsewhere, agree
	// on it. Run waits for it.
	StartAt time.Time
	// TraceName goes into the Run record.
	TraceName string
	Log       *slog.Logger

	stats   stats
	tally   *Tally
	started atomic.Int64 // unix ns of replay time 0
	plan    atomic.Pointer[Plan]
	errMu   sync.Mutex // serializes Results.Write
	wErr    error
}

type stats struct {
	sent, done, failed      atomic.Int64
	open, openWS            atomic.Int64
	framesSent, framesRecvd atomic.Int64
}

// Progress is a look at a running replay.
type Progress struct {
	Elapsed  time.Duration // wall-clock time since replay time 0
	Position time.Duration // trace time reached (Elapsed × speed)
	Length   time.Duration // trace time to cover
	Sent     int64         // requests sent
	Done     int64         // requests ended
	Failed   int64         // … in a failure class
	Open     int64         // connections open now
	OpenWS   int64         // WebSocket sessions open now
	Frames   int64         // WebSocket frames sent and received
}

// Progress returns the replay's figures now.
func (r *Runner) Progress() Progress {
	p := Progress{Sent: r.stats.sent.Load(), Done: r.stats.done.Load(), Failed: r.stats.failed.Load(),
		Open: r.stats.open.Load(), OpenWS: r.stats.openWS.Load(), Frames: r.stats.framesSent.Load() + r.stats.framesRecvd.Load()}
	plan := r.plan.Load()
	if start := r.started.Load(); start != 0 && plan != nil {
		p.Elapsed = max(0, time.Since(time.Unix(0, start)))
		p.Length = plan.Length
		if plan.Opts.Speed > 0 {
			p.Position = min(plan.Length, time.Duration(float64(p.Elapsed)*plan.Opts.Speed))
		}
	}
	return p
}

// Started is the wall-clock time of replay time 0 (zero before Run gets
// there): what the proxy's samples are placed against.
func (r *Runner) Started() time.Time {
	if ns := r.started.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

func (r *Runner) timeout() time.Duration {
	if r.Timeout <= 0 {
		return 30 * time.Second
	}
	return r.Timeout
}

// TargetAddr is the host:port a proxy URL names, or an error saying what a
// target looks like: callers check it before they load a trace.
func TargetAddr(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "") {
		return "", fmt.Errorf("replay target %q: give the proxy's URL, e.g. http://127.0.0.1:8000", target)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80"), nil
	}
	return u.Host, nil
}

// Run replays the plan to its end (or until ctx ends, or Duration), and
// returns the tally. Failures of the target are results, not errors: an
// error means the replay itself could not go on (its results could not be
// written, or the target URL makes no sense).
func (r *Runner) Run(ctx context.Context, p *Plan) (*Summary, error) {
	addr, err := TargetAddr(r.Target)
	if err != nil {
		return nil, err
	}
	if p.Requests == 0 {
		return nil, ErrEmpty
	}
	r.tally = NewTally()
	r.plan.Store(p)
	if err := r.write(&Run{
		Trace: filepath.Base(r.TraceName), TraceStart: p.Header.Start, Source: p.Header.Source, Target: r.Target,
		Speed: p.Opts.Speed, Users: p.Opts.Users, Jitter: p.Opts.Jitter, Seed: p.Opts.Seed,
		From: p.Opts.Window.From, To: p.Opts.Window.To, Shard: p.Opts.Shard.String(), Length: p.Length,
		Conns: len(p.Conns), Requests: p.Requests, Sessions: p.Sessions, ClientFrames: p.ClientFrames, ServerFrames: p.ServerFrames, Skipped: p.Skipped,
		Vanished: p.Vanished,
	}); err != nil {
		return nil, fmt.Errorf("write results: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if r.Duration > 0 {
		var c context.CancelFunc
		runCtx, c = context.WithTimeout(runCtx, r.Duration)
		defer c()
	}
	if r.Routes != nil {
		if err := r.Routes.Prime(runCtx); err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
	}
	start := time.Now()
	if !r.StartAt.IsZero() {
		// Shards and fixtures in other processes start together.
		if !wait.Until(runCtx, r.StartAt) {
			return nil, fmt.Errorf("replay: stopped before its start at %s", r.StartAt.Format(time.RFC3339))
		}
		start = r.StartAt
	}
	var routes sync.WaitGroup
	routeCtx, stopRoutes := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRoutes()
	if r.Routes != nil {
		routes.Go(func() {
			if err := r.Routes.Run(routeCtx, start); err != nil {
				r.log().Warn("route driver", "err", err)
			}
		})
	}
	r.started.Store(start.UnixNano())

	spans := newRouteSpans(p.Routes)
	slots := make(chan struct{}, r.maxOpen())
	var conns sync.WaitGroup
	for _, c := range p.Conns {
		if !wait.Until(runCtx, r.wall(start, p, c.Open)) {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-runCtx.Done():
		}
		if runCtx.Err() != nil {
			break
		}
		conns.Go(func() {
			defer func() { <-slots }()
			cl := &client{r: r, p: p, c: c, addr: addr, start: start, spans: spans}
			cl.run(runCtx)
		})
	}
	conns.Wait()
	// The trace's last events may be route changes (the culler at the
	// end): the replay lasts as long as the trace, and its routes.
	end := p.Length
	if r.Routes != nil && len(p.Routes) > 0 {
		end = max(end, p.Routes[len(p.Routes)-1].TS)
	}
	wait.Until(runCtx, r.wall(start, p, end))
	stopRoutes()
	routes.Wait()
	wall := time.Since(start)
	cancelled := runCtx.Err() != nil
	sum := r.tally.Summary(wall)
	_ = r.write(&End{TS: wall, Cancelled: cancelled, Tally: sum}) // its error is kept in wErr
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return sum, r.wErr
}

// maxOpen leaves room in the file limit for the process's other files
// (and, when the fixtures run in it, their side of every connection).
func (r *Runner) maxOpen() int {
	if r.MaxOpen > 0 {
		return r.MaxOpen
	}
	var lim syscall.Rlimit
	n := 256
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur >= 512 {
		n = int(lim.Cur) - 256
	}
	if r.FixturesInProcess {
		n /= 2
	}
	return n
}

// wall maps replay time to the wall clock.
func (r *Runner) wall(start time.Time, p *Plan, t time.Duration) time.Time {
	if p.Opts.Speed <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(t) / p.Opts.Speed))
}

func (r *Runner) write(rec trace.Record) error {
	switch v := rec.(type) {
	case *Request:
		r.tally.AddRequest(v)
		r.stats.done.Add(1)
		if Failed(v.Error) {
			r.stats.failed.Add(1)
		}
	case *Session:
		r.tally.AddSession(v)
	}
	if r.Results == nil {
		return nil
	}
	r.errMu.Lock()
	defer r.errMu.Unlock()
	err := r.Results.Write(rec)
	if err != nil {
		if r.wErr == nil {
			r.wErr = fmt.Errorf("write results: %w", err)
			r.log().Error("results can no longer be written; the replay goes on", "err", err)
		}
	}
	return err
}

// classify names a network error's class.
func classify(err error, dialing bool) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.Canceled) {
		return ErrCancelled
	}
	if dialing {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return ErrConnectRefused
		}
		return ErrConnect
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return ErrReset
	}
	var ne net.Error
	if errors.Is(err, errTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return ErrTimeout
	}
	return ErrClosed
}

var errTimeout = errors.New("no answer in time")
