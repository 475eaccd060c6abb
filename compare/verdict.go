package compare

import (
	"fmt"
	"math"
	"time"
)

// Thresholds decide the verdict: how much worse than A, beyond the noise
// between A's runs, B may be.
type Thresholds struct {
	// MaxP99Regression: B's p99 latency may exceed A's by this share…
	MaxP99Regression float64
	// …or by MinP99Delta, whichever is more (on loopback a few
	// milliseconds are scheduling, not the proxy).
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
}

// DefaultThresholds are the verdict's defaults.
func DefaultThresholds() Thresholds {
	return Thresholds{MaxP99Regression: 0.10, MinP99Delta: 5 * time.Millisecond, MaxErrorRate: 0.005, MaxWSLoss: 0.005,
		MaxRSSGrowth: 64 << 20, MaxSocketsLeft: 20, FailOnRestart: true}
}

// Check is one comparison of B with A.
type Check struct {
	Name string  `json:"name"`
	Unit string  `json:"unit"`
	A    float64 `json:"a"`
	B    float64 `json:"b"`
	// Noise is how far A's runs were apart on this figure (0 without a
	// noise run); Limit how far above A B may go: the threshold plus the noise.
	Noise float64 `json:"noise"`
	Limit float64 `json:"limit"`
	Pass  bool    `json:"pass"`
	// Skipped: a figure the runs lack (no samples, no WebSockets).
	Skipped bool   `json:"skipped,omitempty"`
	Why     string `json:"why"`
}

// Verdict is the comparison's outcome.
type Verdict struct {
	// Regression: B is worse than A beyond the thresholds and the noise.
	Regression bool    `json:"regression"`
	Checks     []Check `json:"checks"`
	// Reasons name each failed check in a sentence.
	Reasons []string `json:"reasons,omitempty"`
}

// judge compares B with A (and A's noise runs).
func judge(a, b *Figures, noise []*Figures, th Thresholds) Verdict {
	var v Verdict
	// spread is how far A's runs were apart on a figure.
	spread := func(get func(*Figures) (float64, bool)) float64 {
		av, _ := get(a)
		s := 0.0
		for _, n := range noise {
			if nv, ok := get(n); ok {
				s = math.Max(s, math.Abs(nv-av))
			}
		}
		return s
	}
	add := func(name, unit string, allowed float64, get func(*Figures) (float64, bool), why func(c Check) string) {
		av, aok := get(a)
		bv, bok := get(b)
		c := Check{Name: name, Unit: unit, A: av, B: bv}
		if !aok || !bok {
			c.Skipped, c.Pass, c.Why = true, true, "not measured in both runs"
			v.Checks = append(v.Checks, c)
			return
		}
		c.Noise = spread(get)
		c.Limit = allowed + c.Noise
		c.Pass = bv-av <= c.Limit
		c.Why = why(c)
		if !c.Pass {
			v.Regression = true
			v.Reasons = append(v.Reasons, c.Why)
		}
		v.Checks = append(v.Checks, c)
	}
	noiseNote := func(c Check) string {
		if len(noise) == 0 {
			return ""
		}
		return fmt.Sprintf(", noise between A's runs %.3g", c.Noise)
	}

	p99 := func(f *Figures) (float64, bool) { return float64(f.Latency.P99) / 1000, f.Latency.Count > 0 }
	ap99, _ := p99(a)
	add("latency p99", "ms", math.Max(ap99*th.MaxP99Regression, float64(th.MinP99Delta)/float64(time.Millisecond)), p99, func(c Check) string {
		return fmt.Sprintf("p99 latency %.1f ms against A's %.1f ms (allowed: +%.1f ms%s)", c.B, c.A, c.Limit, noiseNote(c))
	})
	add("failed requests", "%", th.MaxErrorRate*100, func(f *Figures) (float64, bool) { return f.ErrorRate * 100, f.Requests > 0 }, func(c Check) string {
		return fmt.Sprintf("%.2f%% of requests failed against A's %.2f%% (%s; allowed: +%.2f points%s)", c.B, c.A, errorsLine(b), c.Limit, noiseNote(c))
	})
	add("WebSocket connects failed", "%", th.MaxWSLoss*100, func(f *Figures) (float64, bool) { return (1 - f.ConnectRate) * 100, f.Sessions > 0 }, func(c Check) string {
		return fmt.Sprintf("%.2f%% of WebSocket sessions did not connect against A's %.2f%% (allowed: +%.2f points%s)", c.B, c.A, c.Limit, noiseNote(c))
	})
	add("WebSocket frames lost", "%", th.MaxWSLoss*100, func(f *Figures) (float64, bool) { return (1 - f.Delivery) * 100, f.FramesWant > 0 }, func(c Check) string {
		return fmt.Sprintf("%.2f%% of the server's WebSocket frames were not delivered in order against A's %.2f%% (allowed: +%.2f points%s)", c.B, c.A, c.Limit, noiseNote(c))
	})
	add("memory kept after idle", "MiB", float64(th.MaxRSSGrowth)/(1<<20), func(f *Figures) (float64, bool) {
		if f.Proxy == nil {
			return 0, false
		}
		return float64(f.Proxy.RSSGrowth) / (1 << 20), true
	}, func(c Check) string {
		return fmt.Sprintf("resident memory grew by %.1f MiB over the run and did not come back after idle, against A's %.1f MiB (allowed: +%.1f MiB%s)", c.B, c.A, c.Limit, noiseNote(c))
	})
	add("sockets left open", "", float64(th.MaxSocketsLeft), func(f *Figures) (float64, bool) {
		if f.Proxy == nil {
			return 0, false
		}
		return float64(f.Proxy.SocketsLeft()), true
	}, func(c Check) string {
		cw := ""
		if b.Proxy != nil && b.Proxy.CloseWaitEnd > 0 {
			cw = fmt.Sprintf(", %d of them in CLOSE_WAIT", b.Proxy.CloseWaitEnd)
		}
		return fmt.Sprintf("%.0f sockets left open after the run and idle%s, against A's %.0f (allowed: +%.0f%s): a socket leak", c.B, cw, c.A, c.Limit, noiseNote(c))
	})
	if th.FailOnRestart {
		add("restarts", "", 0, func(f *Figures) (float64, bool) { return float64(f.Restarts), true }, func(c Check) string {
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
		})
		add("liveness probe unanswered", "s", 2, func(f *Figures) (float64, bool) {
			if f.Proxy == nil {
				return 0, false
			}
			return float64(f.Proxy.Unanswered), true
		}, func(c Check) string {
			return fmt.Sprintf("the candidate did not answer its liveness probe (/_chp_healthz) for about %.0f s from %s of trace time on, against A's %.0f s, while its process ran: it hung (in z2jh the liveness probe would restart it)",
				c.B, clock(b.Proxy.UnansweredFrom), c.A)
		})
	}
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
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
