package compare

import (
	"fmt"
	"math"
	"time"

	"github.com/hubreplay/hubreplay/replay"
)

// Thresholds decide the verdict: how much worse than A, beyond the noise
// between A's runs, B may be.
type Thresholds struct {
	// MaxP99Regression: B's p99 latency (and its routes API's median)
	// may exceed A's by this share…
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
	// users and their servers gone, may exceed A's by this many. A proxy
	// that leaks does so per vanished client (4.5.6: one socket for each
	// student who vanished mid-download, 30 of 30 here): a few are the
	// leak, not noise (a proxy against itself leaves the same).
	MaxSocketsLeft int
	// MaxStatelessLeft: socket descriptors B keeps in no TCP state (their
	// connections reset or closed by the peer, never closed by B) may
	// exceed A's by this many. Their count strays from run to run (CHP
	// 4.x keeps 76–88 after a 300-student peak, of the tabs left open
	// on stopped servers), so more of them are allowed than of the above.
	MaxStatelessLeft int
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

// orDefault is l, or z2jh's probe where l is not a schedule.
func (l Liveness) orDefault() Liveness {
	if l.Period <= 0 || l.Failures <= 0 {
		return DefaultLiveness()
	}
	return l
}

// restartAfter is how long a silence lasts before the kubelet restarts.
func (l Liveness) restartAfter() time.Duration {
	l = l.orDefault()
	return time.Duration(l.Failures) * l.Period
}

// period is how far apart the kubelet's probes are.
func (l Liveness) period() time.Duration { return l.orDefault().Period }

func (l Liveness) String() string {
	l = l.orDefault()
	return fmt.Sprintf("every %s, %s timeout, %d failures in a row", l.Period, l.Timeout, l.Failures)
}

// DefaultThresholds are the verdict's defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxP99Regression: 0.10, MinP99Delta: 10 * time.Millisecond, MaxErrorRate: 0.005, MaxWSLoss: 0.005,
		MaxRSSGrowth: 64 << 20, MaxSocketsLeft: 5, MaxStatelessLeft: 20, FailOnRestart: true, Liveness: DefaultLiveness()}
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
	// noise run); Limit how far B may stray beyond every one of A's runs
	// (from A's nearest run) before it is worse or better: the threshold
	// plus the noise.
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
	// bottleneck, or A itself could not keep the trace's pace (Paced): its
	// slow answers held its requests back, so what B did under the load
	// the trace asks has no run of A's to be set against. Why says where; LeftOut names the
	// figures the verdict then leaves out.
	Saturated bool     `json:"saturated,omitempty"`
	Paced     bool     `json:"baseline_set_the_pace,omitempty"`
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
	tooFew            // too few samples for the figure to mean anything
	noStates          // the samples carry no TCP states (a pod's)
)

// MinP99Requests is the fewest answered requests a run's p99 is judged
// on: below 100 a p99 is one of the slowest few requests (a 60-request
// capture of vanishing students judged 4.6.2 worse than 4.5.6 on it,
// 155 ms against 95).
const MinP99Requests = 100

func traffic(n int) measure {
	if n > 0 {
		return measured
	}
	return noTraffic
}

// CheckNames are the verdict's checks, in report order.
func CheckNames() []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.name
	}
	return out
}

// judge compares B with A (and A's noise runs), both ways, check by check.
func judge(a, b *Figures, noise []*Figures, th Thresholds) Verdict {
	var v Verdict
	for _, f := range append([]*Figures{a, b}, noise...) {
		if f.Harness != nil && f.Harness.Saturated {
			v.Saturated = true
			for _, w := range f.Harness.Why {
				v.Why = append(v.Why, fmt.Sprintf("%s (%s): %s", f.Role, f.Spec, w))
			}
		}
		// A baseline whose slow answers held its requests back set its
		// own pace: it and B were not offered the same load. On the demo
		// at 50x, 4.5.6 held 97% of its requests (8 s on average) and
		// answered the routes API in 3 ms to chp@5's 40 ms, with half
		// chp@5's sockets open. B alone doing so is B's doing: judged.
		if f != b && f.Harness.Paced() {
			v.Saturated, v.Paced = true, true
			v.Why = append(v.Why, fmt.Sprintf("%s (%s): %.1f%% of the requests waited more than %s for the candidate's own earlier answers on their connection (%s on average): at %s it, not the trace, set the pace, and B was offered a load no run of A's was",
				f.Role, f.Spec, f.Harness.HeldShare*100, LateBy, f.Harness.HeldMean.Round(time.Millisecond), replay.SpeedString(f.Speed)))
		}
	}
	j := &judging{a: a, b: b, noise: noise, th: th, saturated: v.Saturated}
	for _, r := range rules {
		if v.Saturated && r.leftOut != "" {
			v.LeftOut = append(v.LeftOut, r.leftOut)
		}
		v.Checks = append(v.Checks, j.check(&v, r))
	}
	return v
}

// check classes one rule's figure for B against A and notes it in v.
func (j *judging) check(v *Verdict, r rule) Check {
	get := func(f *Figures) (float64, measure) { return r.get(j, f) }
	av, am := get(j.a)
	bv, bm := get(j.b)
	c := Check{Name: r.name, Unit: r.unit, A: av, B: bv, Pass: true}
	switch {
	case j.th.Off[r.name] || (r.flag == failOnRestart && !j.th.FailOnRestart):
		c.Class, c.Why = Off, "turned off"
	case j.saturated && r.whole:
		c.Class, c.Why = NotValid, "the harness was saturated: this figure measured it as much as the candidate"
	case am == tooFew || bm == tooFew:
		c.Class, c.Why = NotApplicable, fmt.Sprintf("fewer than %d %s in a run: its %s would be one of its slowest few", MinP99Requests, r.lacks, r.name)
	case am == noStates || bm == noStates:
		c.Class, c.Why = NotApplicable, "no samples of sockets by TCP state (a pod's, read from its kubelet, or plain replay results): sockets left open judges them all, or says it could not"
	case am == noTraffic && bm == noTraffic:
		c.Class, c.Why = NotApplicable, "neither run had "+r.lacks
	case am != measured || bm != measured:
		who := "B"
		switch {
		case am != measured && bm != measured:
			who = "A and B"
		case am != measured:
			who = "A"
		}
		c.Class = Unmeasured
		c.Why = fmt.Sprintf("%s: not measured for %s (%s)", r.name, who, r.lacks)
		v.Unanswered = true
		v.Unmeasured = append(v.Unmeasured, c.Why)
	default:
		// The noise is how far A's runs were apart on the figure, and B
		// is judged against the nearest of them: under no difference, B
		// lands beyond A's one other run half the time, and near a
		// candidate's ceiling that run's distance understates the spread
		// (4.6.2 against itself at 20x: typical p99 21.8 ms against A's
		// 55.7 and A′'s 33.0 had been "better").
		lo, hi := av, av
		for _, n := range j.noise {
			if nv, m := get(n); m == measured {
				c.Noise = math.Max(c.Noise, math.Abs(nv-av))
				lo, hi = math.Min(lo, nv), math.Max(hi, nv)
			}
		}
		c.Limit = r.allowed(j) + c.Noise
		switch {
		case bv-hi > c.Limit:
			c.Class, c.Pass = Worse, false
			c.Why = r.worse(j, c)
			v.Regression = true
			v.Reasons = append(v.Reasons, c.Why)
		case lo-bv > c.Limit:
			c.Class = Better
			c.Why = fmt.Sprintf("%s %s against A's %s", r.name, r.value(bv), r.value(av))
			if r.better != nil {
				c.Why = r.better(j, c)
			}
			v.Better = append(v.Better, c.Why)
		default:
			c.Class = Same
			c.Why = fmt.Sprintf("%s %s against A's %s, within %s", r.name, r.value(bv), r.value(av), r.value(c.Limit))
		}
	}
	return c
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
