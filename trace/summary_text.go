package trace

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the summary for people, with wall-clock times in loc.
func (s *Summary) WriteText(w io.Writer, loc *time.Location) error {
	if loc == nil {
		loc = time.Local
	}
	clock := func(d time.Duration) string { return s.Header.Start.Add(d).In(loc).Format("15:04:05") }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	h := s.Header
	anon := h.Anon.Scheme
	if h.Anon.Raw {
		anon += " (RAW: holds secrets)"
	}
	p("source\t%s", h.Source)
	p("format\t%s v%d, written by %s, anonymized with %s", h.Format, h.Version, h.Tool, orNone(anon))
	if h.Note != "" {
		p("note\t%s", h.Note)
	}
	p("start\t%s", h.Start.In(loc).Format("2006-01-02 15:04:05.000 MST"))
	p("end\t%s (duration %s)", s.End.In(loc).Format("2006-01-02 15:04:05.000 MST"), s.Duration.Round(time.Millisecond))
	p("records\t%d (%s)", s.Records, counts(s.ByType, func(t Type) string { return string(t) }))
	if s.Damage != "" {
		p("DAMAGED\t%s", s.Damage)
	}
	p("")
	c := s.Conns
	p("connections\t%d opened (%d already open at the start); closed: %s", c.Opened, c.Mid, counts(c.Closed, func(h CloseHow) string { return string(h) }))
	p("peak\t%d open at once, first at +%s (%s)", c.Peak, c.PeakAt.Round(time.Second), clock(c.PeakAt))
	p("users\t%d distinct", len(s.Users))
	p("routes\t%d added, %d deleted", s.Routes.Added, s.Routes.Deleted)
	p("gaps\t%d (%d bytes lost)", s.Gaps.Count, s.Gaps.Bytes)
	if st := s.Capture; st != nil {
		p("capture\t%d packets, %d bytes; drops: %s", st.Packets, st.Bytes, counts(st.Drops, func(k string) string { return k }))
	}
	p("")
	p("HTTP\t%d exchanges, %d WebSocket upgrades", s.HTTP.Exchanges, s.HTTP.Upgrades)
	p("  by method\t%s", counts(s.HTTP.ByMethod, func(k string) string { return k }))
	p("  by status\t%s", counts(s.HTTP.ByStatus, func(k string) string { return k }))
	p("WebSocket\t%d frames, %d payload bytes", s.WS.Frames, s.WS.Bytes)
	p("  by dir/op\t%s", counts(s.WS.ByDirOp, func(k string) string { return k }))
	p("  by msg_type\t%s", counts(s.WS.ByMsgType, func(k string) string { return k }))
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nper minute:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tclock\topened\topen(max)\thttp\t5xx\tws frames\troutes\tusers\t")
	for _, r := range s.Minutes {
		fmt.Fprintf(tw, "+%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Minute, r.Start.In(loc).Format("15:04"),
			r.Opened, r.Open, r.HTTP, r.Errors, r.WS, r.Routes, r.Users)
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// counts renders a count map as "a 3, b 2", largest first.
func counts[K comparable](m map[K]uint64, name func(K) string) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b K) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), strings.Compare(name(a), name(b)))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", name(k), m[k])
	}
	return strings.Join(parts, ", ")
}
