package compare

import (
	"fmt"
	"strings"
	"time"
)

// row is one line of the summary table: a figure for each run.
type row struct {
	Section string
	Label   string
	Cells   []string // one per run: A, B, noise runs
	Worse   bool     // B's cell is a failed check
	Better  bool     // B's cell is a check B did better on
}

// rows are the summary table, for the HTML and Markdown reports.
func (r *Report) rows() []row {
	class := map[string]Class{}
	for _, c := range r.Verdict.Checks {
		class[c.Name] = c.Class
	}
	var out []row
	section := ""
	add := func(label, check string, cell func(f *Figures) string) {
		rw := row{Section: section, Label: label, Worse: check != "" && class[check] == Worse, Better: check != "" && class[check] == Better}
		for _, f := range r.Runs {
			rw.Cells = append(rw.Cells, cell(f))
		}
		out = append(out, rw)
		section = ""
	}
	ms := func(us int64) string { return fmt.Sprintf("%.1f ms", float64(us)/1000) }
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	res := func(get func(x *Resources) string) func(f *Figures) string {
		return func(f *Figures) string {
			if f.Proxy == nil {
				return "–"
			}
			return get(f.Proxy)
		}
	}

	section = "Requests"
	add("requests replayed", "", func(f *Figures) string { return fmt.Sprint(f.Requests) })
	add("failed", "failed requests", func(f *Figures) string { return fmt.Sprintf("%d (%.2f%%)", f.Failed, f.ErrorRate*100) })
	add("errors by class", "", func(f *Figures) string { return countsLine(f.Errors) })
	add("proxy's own 5xx", "", func(f *Figures) string { return countsLine(f.ProxyStatus) })
	add("latency p50 / p90", "", func(f *Figures) string { return ms(f.Latency.P50) + " / " + ms(f.Latency.P90) })
	add("latency p99", "latency p99", func(f *Figures) string { return ms(f.Latency.P99) })
	add("latency max", "", func(f *Figures) string { return ms(f.Latency.Max) })
	section = "WebSockets"
	add("sessions connected", "WebSocket connects failed", func(f *Figures) string {
		return fmt.Sprintf("%d of %d (%.2f%%)", f.Connected, f.Sessions, f.ConnectRate*100)
	})
	add("server frames delivered", "WebSocket frames lost", func(f *Figures) string {
		return fmt.Sprintf("%d of %d (%.2f%%)", f.FramesOK, f.FramesWant, f.Delivery*100)
	})
	add("message round trip p50 / p99", "", func(f *Figures) string { return ms(f.WSRTT.P50) + " / " + ms(f.WSRTT.P99) })
	section = "Proxy resources"
	add("memory limit (what enforced it)", "", func(f *Figures) string {
		if f.Limit == "" {
			return "none"
		}
		return f.Limit
	})
	add("resident memory: start / peak", "", res(func(x *Resources) string { return mib(x.RSSStart) + " / " + mib(x.RSSPeak) }))
	add("resident memory after idle", "memory kept after idle", res(func(x *Resources) string {
		return fmt.Sprintf("%s (%+.1f MiB)", mib(x.RSSEnd), float64(x.RSSGrowth)/(1<<20))
	}))
	add("memory growth per trace minute", "", res(func(x *Resources) string { return fmt.Sprintf("%+.2f MiB", x.RSSPerMinute/(1<<20)) }))
	add("memory growth per 1,000 connections", "", res(func(x *Resources) string { return fmt.Sprintf("%+.2f MiB", x.RSSPer1kConns/(1<<20)) }))
	add("sockets open: start / peak / after idle", "sockets left open", res(func(x *Resources) string {
		return fmt.Sprintf("%d / %d / %d", x.SocketsStart, x.SocketsPeak, x.SocketsEnd)
	}))
	add("after idle: in a TCP state beyond the start / in none (connection gone)", "sockets left in no TCP state", res(func(x *Resources) string {
		if !x.TCPStates {
			return "–"
		}
		return fmt.Sprintf("%d / %d", x.StatefulLeft(), x.StatelessEnd())
	}))
	add("file descriptors: start / peak / after idle", "", res(func(x *Resources) string {
		return fmt.Sprintf("%d / %d / %d", x.FDsStart, x.FDsPeak, x.FDsEnd)
	}))
	add("CLOSE_WAIT sockets: start / peak / after idle", "", res(func(x *Resources) string {
		if !x.TCPStates {
			return "not measured"
		}
		return fmt.Sprintf("%d / %d / %d", x.CloseWaitStart, x.CloseWaitPeak, x.CloseWaitEnd)
	}))
	add("CPU seconds; busiest (samples at 90%+ of a core)", "", res(func(x *Resources) string {
		return fmt.Sprintf("%.1f; %.0f%% of a core (%d)", x.CPUSeconds, x.CPUPeak*100, x.CPUBusy)
	}))
	section = "Crashes and logs"
	add("restarts", "restarts", func(f *Figures) string {
		if f.Restarts == 0 {
			return "0"
		}
		var ws []string
		for _, e := range f.Exits {
			w := "no recovery"
			if e.Recovered {
				w = "failures for " + e.Window.Round(time.Second).String()
			}
			if e.RoutesMissing > 0 {
				w += fmt.Sprintf(", routes missing for %s (%d requests sent to the hub) until the hub's route check", e.MissingFor.Round(time.Second), e.RoutesMissing)
			}
			ws = append(ws, fmt.Sprintf("%s at %s: %s", e.Cause, clock(e.At), w))
		}
		return fmt.Sprintf("%d (%s)", f.Restarts, strings.Join(ws, "; "))
	})
	add("liveness probe: longest silence (stretches)", "longest probe silence", res(func(x *Resources) string {
		if len(x.Silences) == 0 {
			return "always answered"
		}
		return fmt.Sprintf("%.0f s (%d, first from %s)", x.Longest(), len(x.Silences), clock(x.Silences[0].From))
	}))
	add("log lines: EPIPE / ECONNRESET / uncaught", "", func(f *Figures) string {
		return fmt.Sprintf("%d / %d / %d", f.Logs["epipe"], f.Logs["econnreset"], f.Logs["uncaught"])
	})
	add("per 1,000 vanished clients: sockets left (in no TCP state) / CLOSE_WAIT / ESTABLISHED / memory kept / EPIPE, ECONNRESET, uncaught lines", "", func(f *Figures) string {
		return f.PerVanished()
	})
	add("route API: calls, failed, p99", "", func(f *Figures) string {
		return fmt.Sprintf("%d, %d, %s", f.API.Calls, f.API.Failed, ms(f.API.Latency.P99))
	})
	section = "Harness"
	hs := func(get func(h *Harness) string) func(f *Figures) string {
		return func(f *Figures) string {
			if f.Harness == nil {
				return "–"
			}
			return get(f.Harness)
		}
	}
	add("replayer lag p50 / p99 / max", "", hs(func(h *Harness) string {
		return ms(h.Lag.P50) + " / " + ms(h.Lag.P99) + " / " + ms(h.Lag.Max)
	}))
	add(fmt.Sprintf("requests got to more than %s late", LateBy), "", hs(func(h *Harness) string {
		return fmt.Sprintf("%d (%.2f%%)", h.Late, h.LateShare*100)
	}))
	add(fmt.Sprintf("requests held more than %s by the candidate's earlier answers (mean hold)", LateBy), "", hs(func(h *Harness) string {
		return fmt.Sprintf("%d (%.2f%%, %s)", h.Held, h.HeldShare*100, h.HeldMean.Round(time.Millisecond))
	}))
	add(fmt.Sprintf("fixtures' answers and frames more than %s late (worst)", LateBy), "", hs(func(h *Harness) string {
		if h.Fixtures.Due == 0 {
			return "not measured"
		}
		return fmt.Sprintf("%d of %d (%.2f%%, %s)", h.Fixtures.Late, h.Fixtures.Due, h.FixtureShare*100, ms(h.Fixtures.Max.Microseconds()))
	}))
	add(fmt.Sprintf("hub stub's route changes more than %s late (worst)", LateBy), "", hs(func(h *Harness) string {
		if h.StubChanges == 0 {
			return "none made"
		}
		return fmt.Sprintf("%d of %d (%s)", h.StubLate, h.StubChanges, ms(h.StubLagMax.Microseconds()))
	}))
	add("processors busy: mean / peak (steal)", "", hs(func(h *Harness) string {
		if h.Samples == 0 {
			return "not measured"
		}
		return fmt.Sprintf("%.0f%% / %.0f%% (%.0f%%)", h.BusyMean*100, h.BusyPeak*100, h.StealMean*100)
	}))
	add(fmt.Sprintf("seconds / latency stretches with processors %.0f%%+ busy", BusyLimit*100), "", hs(func(h *Harness) string {
		if h.Samples == 0 {
			return "not measured"
		}
		return fmt.Sprintf("%d of %d / %d of %d", h.BusySecs, h.Samples, h.BusyStretches, h.Stretches)
	}))
	add("candidate waiting for a processor: mean / worst second", "", hs(func(h *Harness) string {
		if h.WaitMean < 0 {
			return "not measured"
		}
		return fmt.Sprintf("%.0f%% / %.0f%%", h.WaitMean*100, h.WaitPeak*100)
	}))
	add("sockets in TIME_WAIT at the start (waited)", "", hs(func(h *Harness) string {
		if h.TimeWait < 0 {
			return "not measured"
		}
		return fmt.Sprintf("%d (%s)", h.TimeWait, h.Waited.Round(time.Second))
	}))
	add("hubreplay's share of the processors", "", hs(func(h *Harness) string {
		if h.Samples == 0 {
			return "not measured"
		}
		return fmt.Sprintf("%.0f%%", h.SelfMean*100)
	}))
	add("saturated", "", hs(func(h *Harness) string {
		if h.Saturated {
			return "yes: " + strings.Join(h.Why, "; ")
		}
		return "no"
	}))
	return out
}

func countsLine[V int | int64](m map[string]V) string {
	if len(m) == 0 {
		return "–"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// runTitle names a run in a table header.
func runTitle(f *Figures) string {
	if f.Version != "" && f.Version != "command" && !strings.Contains(f.Spec, f.Version) {
		return fmt.Sprintf("%s: %s (%s)", f.Role, f.Spec, f.Version)
	}
	return fmt.Sprintf("%s: %s", f.Role, f.Spec)
}
