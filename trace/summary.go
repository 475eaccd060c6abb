package trace

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Summary is what `hubreplay inspect` shows: enough to tell whether a
// trace holds the peak one meant to capture, and how busy it was.
type Summary struct {
	Header  Header          `json:"header"`
	Records uint64          `json:"records"` // the header included
	ByType  map[Type]uint64 `json:"by_type"`
	// Duration runs from ts 0 to the last thing seen (an exchange's end included).
	Duration time.Duration `json:"duration_ns"`
	End      time.Time     `json:"end"` // wall-clock time at Duration

	Conns  ConnSummary  `json:"connections"`
	HTTP   HTTPSummary  `json:"http"`
	WS     WSSummary    `json:"websocket"`
	Users  []string     `json:"users"` // distinct pseudonyms, sorted
	Routes RouteSummary `json:"routes"`
	Gaps   GapSummary   `json:"gaps"`
	// Capture holds the capture's last reported counters, if it reported any.
	Capture *Stats `json:"capture,omitempty"`
	// Minutes has one row per minute from ts 0 to Duration.
	Minutes []MinuteRow `json:"minutes"`
	// Damage says why reading stopped early; the summary covers the records before it.
	Damage string `json:"damage,omitempty"`
}

type ConnSummary struct {
	Opened uint64 `json:"opened"`
	// Mid counts connections already open when the trace begins: marked
	// so, or first seen without their opening.
	Mid    uint64              `json:"mid"`
	Closed map[CloseHow]uint64 `json:"closed"`
	// Peak is the most connections open at once, and when (first reached).
	Peak   int           `json:"peak"`
	PeakAt time.Duration `json:"peak_at_ns"`
}

type HTTPSummary struct {
	Exchanges uint64            `json:"exchanges"`
	Upgrades  uint64            `json:"upgrades"` // WebSocket upgrade requests
	ByMethod  map[string]uint64 `json:"by_method"`
	// ByStatus counts by status class: "1xx" … "5xx", and "none" when no
	// response was seen.
	ByStatus map[string]uint64 `json:"by_status"`
}

type WSSummary struct {
	Frames uint64 `json:"frames"`
	Bytes  int64  `json:"payload_bytes"`
	// ByDirOp counts frames by direction and opcode: "c2s text", "s2c close", …
	ByDirOp   map[string]uint64 `json:"by_dir_op"`
	ByMsgType map[string]uint64 `json:"by_msg_type"`
}

type RouteSummary struct {
	Added   uint64 `json:"added"`
	Deleted uint64 `json:"deleted"`
}

type GapSummary struct {
	Count uint64 `json:"count"`
	Bytes int64  `json:"bytes"`
}

// MinuteRow is one minute of activity.
type MinuteRow struct {
	Minute  int       `json:"minute"` // since ts 0
	Start   time.Time `json:"start"`
	Opened  uint64    `json:"conns_opened"`
	Open    int       `json:"conns_open_max"` // most connections open during the minute
	HTTP    uint64    `json:"http"`
	Errors  uint64    `json:"http_5xx"`
	WS      uint64    `json:"ws_frames"`
	Routes  uint64    `json:"route_events"`
	Users   int       `json:"active_users"`
	users   map[string]struct{}
	touched bool
}

// Summarizer builds a Summary from records fed in file order.
type Summarizer struct {
	s     Summary
	open  map[ConnID]bool
	users map[string]struct{}
	// connUser remembers whose a connection is, from its requests, so that
	// WebSocket frames count toward their user's activity.
	connUser map[ConnID]string
	rows     []*MinuteRow
}

// NewSummarizer starts a summary of the trace with header h.
func NewSummarizer(h Header) *Summarizer {
	return &Summarizer{
		s: Summary{Header: h, ByType: map[Type]uint64{},
			Conns: ConnSummary{Closed: map[CloseHow]uint64{}},
			HTTP:  HTTPSummary{ByMethod: map[string]uint64{}, ByStatus: map[string]uint64{}},
			WS:    WSSummary{ByDirOp: map[string]uint64{}, ByMsgType: map[string]uint64{}},
			Users: []string{}},
		open:     map[ConnID]bool{},
		users:    map[string]struct{}{},
		connUser: map[ConnID]string{},
	}
}

func (z *Summarizer) row(ts time.Duration) *MinuteRow {
	m := max(0, int(ts/time.Minute))
	for len(z.rows) <= m {
		z.rows = append(z.rows, &MinuteRow{Minute: len(z.rows)})
	}
	r := z.rows[m]
	if !r.touched {
		r.touched = true
		r.Open = len(z.open)
	}
	return r
}

func (z *Summarizer) user(u string, ts time.Duration) {
	if u == "" {
		return
	}
	z.users[u] = struct{}{}
	r := z.row(ts)
	if r.users == nil {
		r.users = map[string]struct{}{}
	}
	r.users[u] = struct{}{}
}

// UserOf returns the user a request path names (/user/NAME/…), if any.
func UserOf(path string) string {
	rest, ok := strings.CutPrefix(path, "/user/")
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

func (z *Summarizer) opened(c ConnID, ts time.Duration, mid bool) {
	if z.open[c] {
		return
	}
	z.open[c] = true
	if mid {
		z.s.Conns.Mid++
	}
	r := z.row(ts)
	r.Open = max(r.Open, len(z.open))
	if len(z.open) > z.s.Conns.Peak {
		z.s.Conns.Peak, z.s.Conns.PeakAt = len(z.open), ts
	}
}

// Add accounts for one record. The header record is ignored (it was given
// to NewSummarizer).
func (z *Summarizer) Add(rec Record) {
	if _, ok := rec.(*Header); ok {
		return
	}
	z.s.ByType[rec.Type()]++
	ts := rec.Time()
	end := ts
	switch rec.(type) {
	case *ConnOpen, *ConnClose:
	default:
		// A record on a connection whose opening the trace does not hold
		// (a capture that began mid-connection) still counts as open.
		if c, ok := Conn(rec); ok && !z.open[c] {
			z.opened(c, ts, true)
		}
	}
	switch r := rec.(type) {
	case *ConnOpen:
		z.s.Conns.Opened++
		z.row(ts).Opened++
		z.opened(r.Conn, ts, r.Mid)
	case *ConnClose:
		z.s.Conns.Closed[r.How]++
		z.row(ts) // before the close: the row's maximum includes this connection
		delete(z.open, r.Conn)
		delete(z.connUser, r.Conn)
	case *HTTP:
		end = r.End()
		z.s.HTTP.Exchanges++
		if r.Upgrade {
			z.s.HTTP.Upgrades++
		}
		z.s.HTTP.ByMethod[r.Req.Method]++
		class := "none"
		if r.Resp != nil {
			class = statusClass(r.Resp.Status)
		}
		z.s.HTTP.ByStatus[class]++
		row := z.row(ts)
		row.HTTP++
		if class == "5xx" {
			row.Errors++
		}
		u := r.User
		if u == "" {
			u = UserOf(r.Req.Target)
		}
		if u != "" {
			z.connUser[r.Conn] = u
		}
		z.user(u, ts)
	case *WSFrame:
		z.s.WS.Frames++
		z.s.WS.Bytes += r.Len
		z.s.WS.ByDirOp[string(r.Dir)+" "+r.Op.String()]++
		if r.MsgType != "" {
			z.s.WS.ByMsgType[r.MsgType]++
		}
		z.row(ts).WS++
		z.user(z.connUser[r.Conn], ts)
	case *Route:
		switch r.Op {
		case RouteAdd:
			z.s.Routes.Added++
		case RouteDelete:
			z.s.Routes.Deleted++
		}
		z.row(ts).Routes++
		u := r.User
		if u == "" {
			u = UserOf(r.Path)
		}
		z.user(u, ts)
	case *Gap:
		z.s.Gaps.Count++
		z.s.Gaps.Bytes += r.Bytes
	case *Stats:
		if z.s.Capture == nil || r.TS >= z.s.Capture.TS {
			z.s.Capture = r
		}
	}
	z.s.Duration = max(z.s.Duration, end)
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return fmt.Sprintf("%dxx", code/100)
}

// Summary returns the summary of the records added so far.
func (z *Summarizer) Summary() *Summary {
	s := z.s
	s.Records = 1
	for _, n := range s.ByType {
		s.Records += n
	}
	s.End = s.Header.Start.Add(s.Duration)
	s.Users = sortedKeys(z.users)
	z.row(s.Duration) // rows run to the end, quiet minutes included
	s.Minutes = make([]MinuteRow, len(z.rows))
	open := 0
	for i, r := range z.rows {
		row := *r
		if !row.touched {
			row.Open = open // nothing happened: what was open stays open
		}
		open = row.Open
		row.Start = s.Header.Start.Add(time.Duration(i) * time.Minute)
		row.Users = len(row.users)
		row.users = nil
		s.Minutes[i] = row
	}
	return &s
}

// Summarize reads a trace to its end and summarizes it. If the trace is
// damaged, the summary covers the records before the damage, says so in
// Damage, and the damage error is returned beside it. progress, if not
// nil, is called now and then with the bytes read so far.
func Summarize(ctx context.Context, r *Reader, progress func(offset int64)) (*Summary, error) {
	z := NewSummarizer(*r.Header())
	err := r.Each(ctx, progress, func(rec Record) error { z.Add(rec); return nil })
	if err == nil {
		return z.Summary(), nil
	}
	var de *DamageError
	if !errors.As(err, &de) {
		return nil, fmt.Errorf("summarize trace: %w", err)
	}
	s := z.Summary()
	s.Damage = de.Error()
	return s, err
}
