package compare

import (
	"fmt"
	"maps"
	"math"
	"time"

	"github.com/hubreplay/hubreplay/proxy"
	"github.com/hubreplay/hubreplay/replay"
)

// Thresholds decide the verdict: how much worse than A, beyond the noise
// between A's runs, B may be.
type Thresholds struct {
	// MaxP99Regression: B's p99 latency may exceed A's by this share…
	MaxP99Regression float64
	// …or by MinP99Delta, whichever is more: on a 2-core machine the
	// typical p99 of one proxy against itself moves by up to 10 ms between
	// runs (scripts/false-alarms, BENCHMARKS.md), which is scheduling, not
	// the proxy.
	MinP99Delta time.Duration
	// MaxErrorRate: B's share of failed requests may exceed A's by this
	// much (0.005 = half a percentage point).
	MaxErrorRate float64
	// MaxWSLoss: B's share of WebSocket sessions that did not connect, and
	// of server frames not delivered, may exceed A's by this much.
	MaxWSLoss float64
	// MaxRSSGrowth: memory B keeps after standing idle may exceed what A
	// keeps by this many bytes.
	MaxRSSGrowth int64
	// MaxSocketsLeft: sockets B leaves open after standing idle, its
	// users and their servers gone, may exceed A's by this many.
	MaxSocketsLeft int
	// FailOnRestart: B may not exit (crash, OOM) more often than A, nor
	// hang (leave its liveness probe unanswered) for longer than A, with
	// two seconds' grace.
	FailOnRestart bool
	// Off are checks not in force, by name: shown, never judged.
	Off map[string]bool `json:"off,omitempty"`
	// Liveness is the liveness probe the kubelet would run (z2jh's
	// proxy.chp.livenessProbe): a candidate would have been restarted only
	// after Failures probes in a row, Period apart, went unanswered.
	Liveness Liveness `json:"liveness"`
}

// Liveness is a liveness probe's schedule.
type Liveness struct {
	Period   time.Duration `json:"period_ns"`
	Timeout  time.Duration `json:"timeout_ns"`
	Failures int           `json:"failure_threshold"`
}

// DefaultLiveness is z2jh's: every 10 s, 3 s timeout, 30 failures.
func DefaultLiveness() Liveness {
	return Liveness{Period: 10 * time.Second, Timeout: 3 * time.Second, Failures: 30}
}

// restartAfter is how long a silence lasts before the kubelet restarts.
func (l Liveness) restartAfter() time.Duration {
	if l.Period <= 0 || l.Failures <= 0 {
		l = DefaultLiveness()
	}
	return time.Duration(l.Failures) * l.Period
}

func (l Liveness) String() string {
	if l.Period <= 0 || l.Failures <= 0 {
		l = DefaultLiveness()
	}
	return fmt.Sprintf("every %s, %s timeout, %d failures in a row", l.Period, l.Timeout, l.Failures)
}

// DefaultThresholds are the verdict's defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxP99Regression: 0.10, MinP99Delta: 10 * time.Millisecond, MaxErrorRate: 0.005, MaxWSLoss: 0.005,
		MaxRSSGrowth: 64 << 20, MaxSocketsLeft: 20, FailOnRestart: true, Liveness: DefaultLiveness()}
}

// Class is how B did on one figure against A.
type Class string

const (
	Worse  Class = "worse"  // beyond the threshold and the noise: judged against B
	Better Class = "better" // beyond them the other way
	Same   Class = "same"   // within them
	// Unmeasured: a run lacks the figure (no samples of the proxy). In
	// force, it leaves the comparison without an answer; never a pass.
	Unmeasured Class = "not measured"
	// NotApplicable: neither run had the traffic the figure is about (a
	// trace without WebSockets).
	NotApplicable Class = "not applicable"
	// Off: the check was turned off (--max-…=off, --fail-on-restart=false).
	Off Class = "not judged"
	// NotValid: the harness was saturated; the figure measured it too.
	NotValid Class = "not valid (harness saturated)"
)

// Check is one comparison of B with A.
type Check struct {
	Name string  `json:"name"`
	Unit string  `json:"unit"`
	A    float64 `json:"a"`
	B    float64 `json:"b"`
	// Noise is how far A's runs were apart on this figure (0 without a
	// noise run); Limit how far B may stray from A either way before it is
	// worse or better: the threshold plus the noise.
	Noise float64 `json:"noise"`
	Limit float64 `json:"limit"`
	Class Class   `json:"class"`
	// Pass: not worse (kept for readers of older reports).
	Pass bool   `json:"pass"`
	Why  string `json:"why"`
}

// Verdict is the comparison's outcome, both ways.
type Verdict struct {
	// Regression: B is worse than A beyond the thresholds and the noise on
	// a check in force.
	Regression bool `json:"regression"`
	// Unanswered: a check in force could not be measured; without a
	// regression the comparison has no answer (exit status 2).
	Unanswered bool    `json:"unanswered,omitempty"`
	Checks     []Check `json:"checks"`
	// Reasons name each check B failed, Better each it did better on,
	// Unmeasured each check in force that could not be measured.
	Reasons    []string `json:"reasons,omitempty"`
	Better     []string `json:"better,omitempty"`
	Unmeasured []string `json:"unmeasured,omitempty"`
	// Saturated: in some run the harness, not the candidate, was the
	// bottleneck (Why says where); LeftOut names the figures the verdict
	// then leaves out.
	Saturated bool     `json:"saturated,omitempty"`
	Why       []string `json:"saturated_why,omitempty"`
	LeftOut   []string `json:"left_out,omitempty"`
}

// Of returns the classes of the checks, by class, for headlines.
func (v Verdict) Of(c Class) []Check {
	var out []Check
	for _, x := range v.Checks {
		if x.Class == c {
			out = append(out, x)
		}
	}
	return out
}

// measure says whether a run has a figure.
type measure int

const (
	measured  measure = iota
	noTraffic         // the run had nothing to measure it on
	missing           // it should have it, and does not
)

func have(ok bool) measure {
	if ok {
		return measured
	}
	return missing
}

func traffic(n int) measure {
	if n > 0 {
		return measured
	}
	return noTraffic
}

// figure is one figure a check compares.
type figure struct {
	name, unit string
	allowed    float64
	get        func(*Figures) (float64, measure)
	value      func(float64) string // a value with its unit, for sentences
	lacks      string               // what a run without the figure lacks
	worse      func(c Check) string
}

// judge compares B with A (and A's noise runs), both ways.
func judge(a, b *Figures, noise []*Figures, th Thresholds) Verdict {
	var v Verdict
	for _, f := range append([]*Figures{a, b}, noise...) {
		if f.Harness != nil && f.Harness.Saturated {
			v.Saturated = true
			for _, w := range f.Harness.Why {
				v.Why = append(v.Why, fmt.Sprintf("%s (%s): %s", f.Role, f.Spec, w))
			}
		}
	}
	if v.Saturated {
		v.LeftOut = []string{"latency", "timeouts", "probe silences", "frames delivered in order and in time"}
	}
	// spread is how far A's runs were apart on a figure.
	spread := func(get func(*Figures) (float64, measure)) float64 {
		av, _ := get(a)
		s := 0.0
		for _, n := range noise {
			if nv, m := get(n); m == measured {
				s = math.Max(s, math.Abs(nv-av))
			}
		}
		return s
	}
	add := func(f figure) {
		av, am := f.get(a)
		bv, bm := f.get(b)
		c := Check{Name: f.name, Unit: f.unit, A: av, B: bv, Pass: true}
		switch {
		case th.Off[f.name]:
			c.Class, c.Why = Off, "turned off"
		case v.Saturated && saturatedChecks[f.name] != "":
			c.Class, c.Why = NotValid, "the harness was saturated: this figure measured it as much as the candidate"
		case am == noTraffic && bm == noTraffic:
			c.Class, c.Why = NotApplicable, "neither run had "+f.lacks
		case am != measured || bm != measured:
			who := "B"
			switch {
			case am != measured && bm != measured:
				who = "A and B"
			case am != measured:
				who = "A"
			}
			c.Class = Unmeasured
			c.Why = fmt.Sprintf("%s: not measured for %s (%s)", f.name, who, f.lacks)
			v.Unanswered = true
			v.Unmeasured = append(v.Unmeasured, c.Why)
		default:
			c.Noise = spread(f.get)
			c.Limit = f.allowed + c.Noise
			switch {
			case bv-av > c.Limit:
				c.Class, c.Pass = Worse, false
				c.Why = f.worse(c)
				v.Regression = true
				v.Reasons = append(v.Reasons, c.Why)
			case av-bv > c.Limit:
				c.Class = Better
				c.Why = fmt.Sprintf("%s %s against A's %s", f.name, f.value(bv), f.value(av))
				v.Better = append(v.Better, c.Why)
			default:
				c.Class = Same
				c.Why = fmt.Sprintf("%s %s against A's %s, within %s", f.name, f.value(bv), f.value(av), f.value(c.Limit))
			}
		}
		v.Checks = append(v.Checks, c)
	}
	noiseNote := func(c Check) string {
		if len(noise) == 0 {
			return ""
		}
		return fmt.Sprintf(", noise between A's runs %.3g", c.Noise)
	}
	unit := func(format string) func(float64) string {
		return func(x float64) string { return fmt.Sprintf(format, x) }
	}
	const noSamples = "no samples of the proxy: plain replay results, or a backend that gives none; turn the check off to judge without it"

	// Latency is judged on the typical p99 (the median of the trace's
	// buckets' p99s): the whole run's p99 raised false alarms on A against A.
	p99 := func(f *Figures) (float64, measure) { return f.TypicalP99, traffic(int(f.Latency.Count)) }
	ap99, _ := p99(a)
	add(figure{name: "latency p99", unit: "ms", allowed: math.Max(ap99*th.MaxP99Regression, float64(th.MinP99Delta)/float64(time.Millisecond)),
		get: p99, value: unit("%.1f ms"), lacks: "answered requests", worse: func(c Check) string {
			return fmt.Sprintf("p99 latency %.1f ms against A's %.1f ms, typically (the median of the trace's stretches; whole run %.1f against %.1f ms) (allowed: +%.1f ms%s)",
				c.B, c.A, float64(b.Latency.P99)/1000, float64(a.Latency.P99)/1000, c.Limit, noiseNote(c))
		}})
	failed := func(f *Figures) (float64, measure) { return f.ErrorRate * 100, traffic(f.Requests) }
	timeouts := ""
	if v.Saturated {
		// A saturated harness times requests out itself: judge the rest.
		failed = func(f *Figures) (float64, measure) {
			return ratio(f.Failed-f.Errors[replay.ErrTimeout], f.Requests) * 100, traffic(f.Requests)
		}
		timeouts = ", timeouts left out"
	}
	add(figure{name: "failed requests", unit: "%", allowed: th.MaxErrorRate * 100,
		get: failed, value: unit("%.2f%%"), lacks: "requests", worse: func(c Check) string {
			return fmt.Sprintf("%.2f%% of requests failed against A's %.2f%% (%s; allowed: +%.2f points%s%s)", c.B, c.A, errorsLine(b), c.Limit, noiseNote(c), timeouts)
		}})
	add(figure{name: "WebSocket connects failed", unit: "%", allowed: th.MaxWSLoss * 100,
		get:   func(f *Figures) (float64, measure) { return (1 - f.ConnectRate) * 100, traffic(f.Sessions) },
		value: unit("%.2f%%"), lacks: "WebSocket sessions", worse: func(c Check) string {
			return fmt.Sprintf("%.2f%% of WebSocket sessions did not connect against A's %.2f%% (allowed: +%.2f points%s)", c.B, c.A, c.Limit, noiseNote(c))
		}})
	add(figure{name: "WebSocket frames lost", unit: "%", allowed: th.MaxWSLoss * 100,
		get:   func(f *Figures) (float64, measure) { return (1 - f.Delivery) * 100, traffic(f.FramesWant) },
		value: unit("%.2f%%"), lacks: "server WebSocket frames", worse: func(c Check) string {
			return fmt.Sprintf("%.2f%% of the server's WebSocket frames were not delivered in order against A's %.2f%% (allowed: +%.2f points%s)", c.B, c.A, c.Limit, noiseNote(c))
		}})
	add(figure{name: "memory kept after idle", unit: "MiB", allowed: float64(th.MaxRSSGrowth) / (1 << 20),
		get: func(f *Figures) (float64, measure) {
			if f.Proxy == nil {
				return 0, missing
			}
			return float64(f.Proxy.RSSGrowth) / (1 << 20), measured
		}, value: unit("%.1f MiB"), lacks: noSamples, worse: func(c Check) string {
			return fmt.Sprintf("resident memory grew by %.1f MiB over the run and did not come back after idle, against A's %.1f MiB (allowed: +%.1f MiB%s)", c.B, c.A, c.Limit, noiseNote(c))
		}})
	add(figure{name: "sockets left open", allowed: float64(th.MaxSocketsLeft),
		get: func(f *Figures) (float64, measure) {
			if f.Proxy == nil {
				return 0, missing
			}
			return float64(f.Proxy.SocketsLeft()), measured
		}, value: unit("%.0f"), lacks: noSamples, worse: func(c Check) string {
			cw := ""
			if b.Proxy != nil && b.Proxy.CloseWaitEnd > 0 {
				cw = fmt.Sprintf(", %d of them in CLOSE_WAIT", b.Proxy.CloseWaitEnd)
			}
			return fmt.Sprintf("%.0f sockets left open after the run and idle%s, against A's %.0f (allowed: +%.0f%s): a socket leak", c.B, cw, c.A, c.Limit, noiseNote(c))
		}})
	if !th.FailOnRestart {
		th.Off = maps.Clone(th.Off)
		if th.Off == nil {
			th.Off = map[string]bool{}
		}
		th.Off["restarts"], th.Off["liveness restarts"], th.Off["longest probe silence"] = true, true, true
	}
	add(figure{name: "restarts", get: func(f *Figures) (float64, measure) { return float64(f.Restarts), measured },
		value: times, worse: func(c Check) string {
			s := fmt.Sprintf("the candidate exited %s during the run against A's %s", times(c.B), times(c.A))
			if len(b.Exits) > 0 {
				s += fmt.Sprintf(" (first: %s at %s of trace time", b.Exits[0].Cause, clock(b.Exits[0].At))
				if b.Exits[0].Recovered {
					s += fmt.Sprintf(", requests failed for %s after it)", b.Exits[0].Window.Round(time.Second))
				} else {
					s += ", requests did not recover)"
				}
			}
			return s
		}})
	// The kubelet's judgement: a silence as long as its failure threshold
	// would have restarted the candidate. Shorter ones are a figure.
	kubelet := func(f *Figures) []Silence {
		var out []Silence
		if f.Proxy != nil {
			for _, s := range f.Proxy.Silences {
				if s.Len >= th.Liveness.restartAfter() {
					out = append(out, s)
				}
			}
		}
		return out
	}
	probed := func(f *Figures) measure {
		switch {
		case f.Proxy == nil:
			return missing
		case !f.Proxy.Probed:
			return noTraffic
		}
		return measured
	}
	const noProbes = "liveness probes sampled by hubreplay (a cluster's kubelet probes there, and its restarts count as restarts)"
	add(figure{name: "liveness restarts", get: func(f *Figures) (float64, measure) {
		return float64(len(kubelet(f))), probed(f)
	}, value: times, lacks: noProbes, worse: func(c Check) string {
		first := kubelet(b)[0]
		return fmt.Sprintf("its liveness probe (/_chp_healthz) went unanswered for %s from %s of trace time while its process ran: it hung, and z2jh's kubelet (%s) would have restarted it %s, against A's %s",
			first.Len.Round(time.Second), clock(first.From), th.Liveness, times(c.B), times(c.A))
	}})
	add(figure{name: "longest probe silence", unit: "s", allowed: 2,
		get: func(f *Figures) (float64, measure) {
			if f.Proxy == nil {
				return 0, missing
			}
			return f.Proxy.Longest(), probed(f)
		}, value: unit("%.0f s"), lacks: noProbes, worse: func(c Check) string {
			from := time.Duration(0)
			for _, s := range b.Proxy.Silences {
				if s.Len.Seconds() == c.B {
					from = s.From
				}
			}
			return fmt.Sprintf("the candidate left its liveness probe (/_chp_healthz, %s timeout) unanswered for up to %.0f s at a time (from %s of trace time), against A's %.0f s (allowed: +%.0f s%s); short of z2jh's restart (%s)",
				proxy.ProbeTimeout, c.B, clock(from), c.A, c.Limit, noiseNote(c), th.Liveness)
		}})
	return v
}

func times(n float64) string {
	switch n {
	case 0:
		return "never"
	case 1:
		return "once"
	}
	return fmt.Sprintf("%.0f times", n)
}

func errorsLine(f *Figures) string {
	s := ""
	for _, k := range sortedKeys(f.Errors) {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, f.Errors[k])
	}
	if len(f.ProxyStatus) > 0 {
		s += "; the proxy's own answers:"
		for _, k := range sortedKeys(f.ProxyStatus) {
			s += fmt.Sprintf(" %s×%d", k, f.ProxyStatus[k])
		}
	}
	if s == "" {
		return "no errors"
	}
	return s
}

// clock shows trace time as m:ss (or h:mm:ss).
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		return "-" + clock(-d)
	}
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
