package compare

import (
	"fmt"
	"math"
	"time"

	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// judging is what a rule sees: the runs and the thresholds.
type judging struct {
	a, b      *Figures
	noise     []*Figures
	th        Thresholds
	saturated bool
}

// noiseNote says how far A's runs were apart, when there was a noise run.
func (j *judging) noiseNote(c Check) string {
	if len(j.noise) == 0 {
		return ""
	}
	return fmt.Sprintf(", over the nearest of A's runs, with the noise between them %.3g", c.Noise)
}

// A rule is one check of the verdict: which figure of B it compares with
// A's, how far B may stray (the threshold plus the noise between A's
// runs), and what it says when B is worse. The table rules is the
// verdict, in report order; docs/ARCHITECTURE.md lists it (a test keeps
// the two in step).
type rule struct {
	name, unit string
	// flag is the threshold's flag on compare and report; a check of
	// --fail-on-restart is off when it is false.
	flag string
	// leftOut is what a saturated harness takes out of the check: all of
	// it (whole), or the part its figure leaves out (timeouts of failed
	// requests); "" when a saturated harness does not touch it.
	leftOut string
	whole   bool
	allowed func(j *judging) float64
	get     func(j *judging, f *Figures) (float64, measure)
	value   func(float64) string // a value with its unit, for sentences
	lacks   string               // what a run without the figure lacks
	worse   func(j *judging, c Check) string
	better  func(j *judging, c Check) string // optional: what B did better, when the name alone says too little
}

// failOnRestart is the flag that turns the restart and probe checks off.
const failOnRestart = "--fail-on-restart"

const (
	noSamples = "no samples of the proxy: plain replay results, or a backend that gives none; turn the check off to judge without it"
	noProbes  = "liveness probes sampled by hubreplay (a cluster's kubelet probes there, and its restarts count as restarts)"
)

func unit(format string) func(float64) string {
	return func(x float64) string { return fmt.Sprintf(format, x) }
}

// rules are the verdict's checks.
var rules = []rule{
	{
		// Latency is judged on the typical p99 (the median of the trace's
		// stretches' p99s): the whole run's p99 raised false alarms on A
		// against A.
		name: "latency p99", unit: "ms", flag: "--max-p99-regression, --min-p99-delta", leftOut: "latency", whole: true,
		allowed: func(j *judging) float64 { return j.latencyAllowed(j.a.TypicalP99) },
		get: func(_ *judging, f *Figures) (float64, measure) {
			if n := f.Latency.Count; n > 0 && n < MinP99Requests {
				return f.TypicalP99, tooFew
			}
			return f.TypicalP99, traffic(int(f.Latency.Count))
		},
		value: unit("%.1f ms"), lacks: "answered requests",
		worse: func(j *judging, c Check) string {
			return fmt.Sprintf("p99 latency %.1f ms against A's %.1f ms, typically (the median of the trace's stretches; whole run %.1f against %.1f ms) (allowed: +%.1f ms%s)",
				c.B, c.A, float64(j.b.Latency.P99)/1000, float64(j.a.Latency.P99)/1000, c.Limit, j.noiseNote(c))
		},
	},
	{
		// A saturated harness times requests out itself: the rest is judged.
		name: "failed requests", unit: "%", flag: "--max-error-rate", leftOut: "timeouts",
		allowed: func(j *judging) float64 { return j.th.MaxErrorRate * 100 },
		get: func(j *judging, f *Figures) (float64, measure) {
			if j.saturated {
				return ratio(f.Failed-f.Errors[replay.ErrTimeout], f.Requests) * 100, traffic(f.Requests)
			}
			return f.ErrorRate * 100, traffic(f.Requests)
		},
		value: unit("%.2f%%"), lacks: "requests",
		worse: func(j *judging, c Check) string {
			timeouts := ""
			if j.saturated {
				timeouts = ", timeouts left out"
			}
			return fmt.Sprintf("%.2f%% of requests failed against A's %.2f%% (%s; allowed: +%.2f points%s%s)", c.B, c.A, errorsLine(j.b), c.Limit, j.noiseNote(c), timeouts)
		},
	},
	{
		// Short of processor time the harness fails handshakes itself
		// (sent late, timed out), either way round.
		name: "WebSocket connects failed", unit: "%", flag: "--max-ws-loss", leftOut: "WebSocket connects", whole: true,
		allowed: func(j *judging) float64 { return j.th.MaxWSLoss * 100 },
		get:     func(_ *judging, f *Figures) (float64, measure) { return (1 - f.ConnectRate) * 100, traffic(f.Sessions) },
		value:   unit("%.2f%%"), lacks: "WebSocket sessions",
		worse: func(j *judging, c Check) string {
			return fmt.Sprintf("%.2f%% of WebSocket sessions did not connect against A's %.2f%% (allowed: +%.2f points%s)", c.B, c.A, c.Limit, j.noiseNote(c))
		},
	},
	{
		name: "WebSocket frames lost", unit: "%", flag: "--max-ws-loss", leftOut: "frames delivered in order and in time", whole: true,
		allowed: func(j *judging) float64 { return j.th.MaxWSLoss * 100 },
		get:     func(_ *judging, f *Figures) (float64, measure) { return (1 - f.Delivery) * 100, traffic(f.FramesWant) },
		value:   unit("%.2f%%"), lacks: "server WebSocket frames",
		worse: func(j *judging, c Check) string {
			return fmt.Sprintf("%.2f%% of the server's WebSocket frames were not delivered in order against A's %.2f%% (allowed: +%.2f points%s)", c.B, c.A, c.Limit, j.noiseNote(c))
		},
	},
	{
		// The hub awaits each route's add before it sends its user on,
		// so the replay excuses requests sent before the add was
		// confirmed (late_for_route): a proxy slow to confirm would go
		// unblamed but for this figure. The median, as a few hundred
		// calls' p99 is their slowest one.
		name: "route API latency", unit: "ms", flag: "--max-p99-regression, --min-p99-delta", leftOut: "route API latency", whole: true,
		allowed: func(j *judging) float64 { return j.latencyAllowed(apiMedian(j.a)) },
		get:     func(_ *judging, f *Figures) (float64, measure) { return apiMedian(f), traffic(f.API.Calls) },
		value:   unit("%.1f ms"), lacks: "route API calls",
		worse: func(j *judging, c Check) string {
			return fmt.Sprintf("the routes API answered the hub in %.1f ms against A's %.1f ms, the median of %d calls (slowest %.0f against %.0f ms; allowed: +%.1f ms%s): every spawn waits that long for its route",
				c.B, c.A, j.b.API.Calls, float64(j.b.API.Latency.Max)/1000, float64(j.a.API.Latency.Max)/1000, c.Limit, j.noiseNote(c))
		},
	},
	{
		name: "memory kept after idle", unit: "MiB", flag: "--max-rss-growth",
		allowed: func(j *judging) float64 { return float64(j.th.MaxRSSGrowth) / (1 << 20) },
		get: func(_ *judging, f *Figures) (float64, measure) {
			if f.Proxy == nil {
				return 0, missing
			}
			return float64(f.Proxy.RSSGrowth) / (1 << 20), measured
		},
		value: unit("%.1f MiB"), lacks: noSamples,
		worse: func(j *judging, c Check) string {
			return fmt.Sprintf("resident memory grew by %.1f MiB over the run and did not come back after idle, against A's %.1f MiB (allowed: +%.1f MiB%s)", c.B, c.A, c.Limit, j.noiseNote(c))
		},
	},
	{
		name: "sockets left open", flag: "--max-sockets-left",
		allowed: func(j *judging) float64 { return float64(j.th.MaxSocketsLeft) },
		get: func(_ *judging, f *Figures) (float64, measure) {
			if f.Proxy == nil {
				return 0, missing
			}
			return float64(f.Proxy.StatefulLeft()), measured
		},
		value: unit("%.0f"), lacks: noSamples,
		worse: func(j *judging, c Check) string {
			cw := ""
			if j.b.Proxy != nil && j.b.Proxy.CloseWaitEnd > 0 {
				cw = fmt.Sprintf(", %d of them in CLOSE_WAIT", j.b.Proxy.CloseWaitEnd)
			}
			per := ""
			if n := j.b.Vanished; n > 0 {
				per = fmt.Sprintf(" (%s per 1,000 vanished clients, of %d)", perThousand(c.B-c.A, n), n)
			}
			return fmt.Sprintf("a socket leak: it left %.0f sockets open after the run and idle%s%s, against A's %.0f (allowed: +%.0f%s)", c.B, per, cw, c.A, c.Limit, j.noiseNote(c))
		},
		better: func(j *judging, c Check) string {
			per := ""
			if n := j.a.Vanished; n > 0 {
				per = fmt.Sprintf(": %s per 1,000 vanished clients, of %d", perThousand(c.A-c.B, n), n)
			}
			return fmt.Sprintf("fewer sockets left open: %.0f after the run and idle against A's %.0f, whose leak is %.0f more%s", c.B, c.A, c.A-c.B, per)
		},
	}, {
		// A descriptor kept after its connection is gone (reset, or
		// closed by the peer and past TIME_WAIT): chp@5.3.0's way of
		// leaking on vanished clients, and 4.x's with the tabs left open
		// on stopped servers.
		name: "sockets left in no TCP state", flag: "--max-stateless-sockets-left",
		allowed: func(j *judging) float64 { return float64(j.th.MaxStatelessLeft) },
		get: func(_ *judging, f *Figures) (float64, measure) {
			if f.Proxy == nil || !f.Proxy.TCPStates {
				// No states to split by: "sockets left open" judges
				// them all, or says it could not.
				return 0, noStates
			}
			return float64(f.Proxy.StatelessEnd()), measured
		},
		value: unit("%.0f"), lacks: noSamples,
		worse: func(j *judging, c Check) string {
			per := ""
			if n := j.b.Vanished; n > 0 {
				per = fmt.Sprintf(" (%s per 1,000 vanished clients, of %d)", perThousand(c.B-c.A, n), n)
			}
			return fmt.Sprintf("a socket leak: it kept %.0f socket descriptors whose connections were gone (in no TCP state) after the run and idle%s, against A's %.0f (allowed: +%.0f%s)", c.B, per, c.A, c.Limit, j.noiseNote(c))
		},
	},
	{
		name: "restarts", flag: failOnRestart,
		allowed: func(*judging) float64 { return 0 },
		get:     func(_ *judging, f *Figures) (float64, measure) { return float64(f.Restarts), measured },
		value:   times,
		worse: func(j *judging, c Check) string {
			b := j.b
			s := fmt.Sprintf("the candidate exited %s during the run against A's %s", times(c.B), times(c.A))
			if len(b.Exits) > 0 {
				s += fmt.Sprintf(" (first: %s at %s of trace time", b.Exits[0].Cause, clock(b.Exits[0].At))
				e := b.Exits[0]
				if e.Recovered {
					s += fmt.Sprintf(", requests failed for %s after it", e.Window.Round(time.Second))
				} else {
					s += ", requests did not recover"
				}
				if e.RoutesMissing > 0 {
					s += fmt.Sprintf("; its routes were missing for %s, until the hub's route check", e.MissingFor.Round(time.Second))
				}
				s += ")"
			}
			return s
		},
	},
	{
		// The kubelet's judgement: a silence as long as its failure
		// threshold would have restarted the candidate. Shorter ones are
		// the next rule's figure.
		name: "liveness restarts", flag: failOnRestart,
		allowed: func(*judging) float64 { return 0 },
		get: func(j *judging, f *Figures) (float64, measure) {
			return float64(len(j.kubelet(f))), probed(f)
		},
		value: times, lacks: noProbes,
		worse: func(j *judging, c Check) string {
			first := j.kubelet(j.b)[0]
			return fmt.Sprintf("its liveness probe (/_chp_healthz) went unanswered for %s from %s of trace time while its process ran: it hung, and z2jh's kubelet (%s) would have restarted it %s, against A's %s",
				first.Len.Round(time.Second), clock(first.From), j.th.Liveness, times(c.B), times(c.A))
		},
	},
	{
		name: "longest probe silence", unit: "s", flag: failOnRestart, leftOut: "probe silences", whole: true,
		// One period of the liveness probe: a silence that much longer
		// fails at most one more of the kubelet's probes, and a
		// candidate on a full core (4.6.2 at 40x on the 300-student
		// peak) strays further than that from run to run (6 to 45 s).
		allowed: func(j *judging) float64 { return j.th.Liveness.period().Seconds() },
		get: func(_ *judging, f *Figures) (float64, measure) {
			if f.Proxy == nil {
				return 0, missing
			}
			return f.Proxy.Longest(), probed(f)
		},
		value: unit("%.0f s"), lacks: noProbes,
		worse: func(j *judging, c Check) string {
			from := time.Duration(0)
			for _, s := range j.b.Proxy.Silences {
				if s.Len.Seconds() == c.B {
					from = s.From
				}
			}
			return fmt.Sprintf("the candidate left its liveness probe (/_chp_healthz, %s timeout) unanswered for up to %.0f s at a time (from %s of trace time), against A's %.0f s (allowed: +%.0f s%s); short of z2jh's restart (%s)",
				proxy.ProbeTimeout, c.B, clock(from), c.A, c.Limit, j.noiseNote(c), j.th.Liveness)
		},
	},
}

// latencyAllowed is how many ms more than A's a latency of B's may be:
// the share, or the least difference counted, whichever is more.
func (j *judging) latencyAllowed(aMs float64) float64 {
	return math.Max(aMs*j.th.MaxP99Regression, float64(j.th.MinP99Delta)/float64(time.Millisecond))
}

// perThousand is n per 1,000 of of, for a leak's rate.
func perThousand(n float64, of int) string {
	return fmt.Sprintf("%.0f", n*1000/float64(of))
}

// apiMedian is the median latency of a run's route API calls, in ms.
func apiMedian(f *Figures) float64 { return float64(f.API.Latency.P50) / 1000 }

// kubelet lists a run's probe silences the kubelet would have restarted
// the candidate for.
func (j *judging) kubelet(f *Figures) []Silence {
	var out []Silence
	if f.Proxy != nil {
		for _, s := range f.Proxy.Silences {
			if s.Len >= j.th.Liveness.restartAfter() {
				out = append(out, s)
			}
		}
	}
	return out
}

func probed(f *Figures) measure {
	switch {
	case f.Proxy == nil:
		return missing
	case !f.Proxy.Probed:
		return noTraffic
	}
	return measured
}
