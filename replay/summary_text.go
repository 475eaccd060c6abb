package replay

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints a summary for people.
func (s *Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	failed := ""
	if s.Failed > 0 {
		failed = " (" + classes(s.Errors, true) + ")"
	}
	p("requests\t%d sent: %d answered as recorded, %d failed%s", s.Requests, s.OK, s.Failed, failed)
	if n := s.Errors[ErrBackend5xx]; n > 0 {
		p("\t%d recorded 5xx answered again by the fixtures", n)
	}
	if n := s.Errors[ErrCancelled]; n > 0 {
		p("\t%d cut short by the end of the replay", n)
	}
	if len(s.Statuses) > 0 {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(s.Statuses)) {
			parts = append(parts, fmt.Sprintf("%d×%d", code, s.Statuses[code]))
		}
		p("statuses\t%s", strings.Join(parts, "  "))
	}
	if s.Reconns > 0 {
		p("reconnects\t%d (the proxy closed a connection the recording kept alive)", s.Reconns)
	}
	p("latency\t%s (to the last byte)", s.Percentiles[HistLatency])
	p("first byte\t%s", s.Percentiles[HistTTFB])
	p("send error\t%s (how late the replayer sent requests)", s.Percentiles[HistSendError])
	if s.Sessions > 0 {
		p("websocket\t%d sessions, %d connected; frames sent %d of %d, received %d of %d (%d as recorded)",
			s.Sessions, s.Connected, s.FramesSent, s.FramesWant, s.FramesReceived, s.FramesExpected, s.FramesMatched)
		if len(s.SessionErrors) > 0 {
			p("\tsessions that failed: %s", classes(s.SessionErrors, false))
		}
		p("round trip\t%s (client message to the server's next frame)", s.Percentiles[HistWSRTT])
	}
	p("wall time\t%s", s.Wall.Round(time.Millisecond))
	return tw.Flush()
}

func classes(m map[string]int, failuresOnly bool) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if failuresOnly && !Failed(k) {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func (p Percentiles) String() string {
	if p.Count == 0 {
		return "none"
	}
	us := func(v int64) string {
		d := time.Duration(v) * time.Microsecond
		switch {
		case d < time.Millisecond:
			return d.String()
		case d < time.Second:
			return d.Round(10 * time.Microsecond).String()
		default:
			return d.Round(time.Millisecond).String()
		}
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (%d)", us(p.P50), us(p.P90), us(p.P99), us(p.Max), p.Count)
}
