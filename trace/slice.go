package trace

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Window is a part of a trace, [From, To) in capture-relative time.
// To == 0 means "to the end".
type Window struct {
	From, To time.Duration
}

func (w Window) contains(ts time.Duration) bool {
	return ts >= w.From && (w.To == 0 || ts < w.To)
}

// RecordWriter is where Slice puts records; *Writer is one.
type RecordWriter interface {
	Write(Record) error
}

// SliceResult says what a slice holds.
type SliceResult struct {
	Header  Header // the slice's header: Start moved to the window's start
	Records uint64 // records written, the header not included
	// Carried counts the records made to restore the state at the
	// window's start: connections already open, their WebSocket upgrades,
	// routes already in the table.
	Carried uint64
	// Closed counts connections still open at the window's end, closed
	// there with how "capture_end".
	Closed uint64
}

// SliceHeader is the header of a slice of a trace with header h.
func SliceHeader(h Header, win Window) Header {
	out := h
	out.Start = h.Start.Add(win.From)
	note := fmt.Sprintf("slice [+%s, %s) of a trace that started %s", win.From, toString(win.To), h.Start.Format(time.RFC3339Nano))
	if h.Note != "" {
		note += "; " + h.Note
	}
	out.Note = note
	return out
}

// connState is what a slice must know about a connection open at its start.
type connState struct {
	open    *ConnOpen
	upgrade *HTTP // the WebSocket upgrade exchange, if the connection became one
}

// Slice copies the records of r that start inside win to w, with times
// rebased so that the window's start is ts 0. A slice stands on its own:
// connections open at the window's start are carried in (conn_open with
// mid set, and their WebSocket upgrade, at ts 0), routes in the proxy's
// table at the start are re-added at ts 0, connections still open at the
// end are closed there ("capture_end"), and capture counters count from
// the window's start.
//
// The caller writes the returned header (SliceHeader) before the records;
// Slice calls start with it once it knows the window holds records, so an
// empty window creates nothing. On damage, the records before it are
// written and the damage error returned. progress, if not nil, is called
// now and then with the bytes read so far.
func Slice(ctx context.Context, r *Reader, win Window, start func(Header) (RecordWriter, error), progress func(offset int64)) (SliceResult, error) {
	return sliceRecords(ctx, *r.Header(), win, start, func(fn func(Record) error) error { return r.Each(ctx, progress, fn) })
}

// sliceRecords is Slice over the records each gives, of a trace with
// header h.
func sliceRecords(ctx context.Context, h Header, win Window, start func(Header) (RecordWriter, error), each func(func(Record) error) error) (SliceResult, error) {
	if win.To != 0 && win.To <= win.From {
		return SliceResult{}, fmt.Errorf("slice: the window ends (+%s) before it starts (+%s)", win.To, win.From)
	}
	s := newSlicer(win, start)
	s.res.Header = SliceHeader(h, win)
	var writeErr error
	readErr := each(func(rec Record) error {
		writeErr = s.step(rec)
		return writeErr
	})
	if writeErr != nil {
		return s.res, writeErr
	}
	if readErr != nil && ctx.Err() != nil {
		return s.res, fmt.Errorf("slice trace: %w", readErr)
	}
	if s.out == nil {
		if readErr != nil {
			return s.res, readErr
		}
		return s.res, fmt.Errorf("slice: no records in [+%s, %s): the trace's records run from +0s to +%s",
			win.From, toString(win.To), s.last)
	}
	if err := s.closeRest(s.out); err != nil {
		return s.res, err
	}
	return s.res, readErr
}

// step takes one record: state before the window, the record itself
// inside it (starting the output at the first), nothing after it.
func (s *slicer) step(rec Record) error {
	if _, ok := rec.(*Header); ok {
		return nil
	}
	s.last = max(s.last, rec.Time())
	if !s.win.contains(rec.Time()) {
		if s.out != nil && rec.Time() < s.win.From {
			return s.late(rec)
		}
		s.before(rec)
		return nil
	}
	if s.out == nil {
		out, err := s.start(s.res.Header)
		if err != nil {
			return err
		}
		s.out = out
		if err := s.carry(out); err != nil {
			return err
		}
	}
	return s.emit(s.out, rec)
}

func toString(to time.Duration) string {
	if to == 0 {
		return "end"
	}
	return "+" + to.String()
}

type slicer struct {
	win    Window
	start  func(Header) (RecordWriter, error)
	out    RecordWriter  // nil until the window's first record
	last   time.Duration // the latest time seen in the trace, for the error on an empty window
	res    SliceResult
	conns  map[ConnID]*connState // open before the window
	routes map[string]*Route     // in the table before the window
	stats  *Stats                // the last counters before the window
	inWin  map[ConnID]bool       // open inside the window
	maxEnd time.Duration         // latest rebased time written
}

func newSlicer(win Window, start func(Header) (RecordWriter, error)) *slicer {
	return &slicer{win: win, start: start, conns: map[ConnID]*connState{}, routes: map[string]*Route{}, inWin: map[ConnID]bool{}}
}

// state is what a window starting now would inherit, as records with their
// own times: open connections, their WebSocket upgrades, routes in the
// table, the last counters.
func (s *slicer) state() []Record {
	var out []Record
	for _, id := range sortedKeys(s.conns) {
		st := s.conns[id]
		out = append(out, st.open)
		if st.upgrade != nil {
			out = append(out, st.upgrade)
		}
	}
	for _, path := range sortedKeys(s.routes) {
		out = append(out, s.routes[path])
	}
	if s.stats != nil {
		out = append(out, s.stats)
	}
	return out
}

// before tracks the state the window inherits from a record outside it.
// Records after the window are ignored: traces are in completion order,
// not strictly by start, so reading goes on to the end.
func (s *slicer) before(rec Record) {
	if rec.Time() >= s.win.From {
		return
	}
	switch r := rec.(type) {
	case *ConnOpen:
		s.conns[r.Conn] = &connState{open: r}
	case *ConnClose:
		delete(s.conns, r.Conn)
	case *HTTP:
		if r.Upgrade && r.Resp != nil && r.Resp.Status == 101 {
			st := s.conns[r.Conn]
			if st == nil { // the trace itself began mid-connection
				st = &connState{open: &ConnOpen{Conn: r.Conn, Mid: true}}
				s.conns[r.Conn] = st
			}
			st.upgrade = r
		}
	case *Route:
		switch r.Op {
		case RouteAdd:
			s.routes[r.Path] = r
		case RouteDelete:
			delete(s.routes, r.Path)
		}
	case *Stats:
		if s.stats == nil || r.TS >= s.stats.TS {
			s.stats = r
		}
	}
}

// carry writes, at ts 0, the state the window starts with.
func (s *slicer) carry(w RecordWriter) error {
	for _, id := range sortedKeys(s.conns) {
		st := s.conns[id]
		open := *st.open
		open.TS, open.Mid = 0, true
		if err := s.write(w, &open); err != nil {
			return err
		}
		s.res.Carried++
		s.inWin[id] = true
		if st.upgrade != nil {
			up := *st.upgrade
			resp := *up.Resp
			up.TS, up.Req.End, resp.Start, resp.End = 0, 0, 0, 0
			up.Resp = &resp
			if err := s.write(w, &up); err != nil {
				return err
			}
			s.res.Carried++
		}
	}
	for _, path := range sortedKeys(s.routes) {
		rt := *s.routes[path]
		rt.TS = 0
		if err := s.write(w, &rt); err != nil {
			return err
		}
		s.res.Carried++
	}
	return nil
}

// late takes a record from before the window that arrives after the window
// began: records are in completion order, so a route added just before the
// window can follow an exchange inside it. What it changes of the state the
// window starts with is carried at ts 0, like the rest of that state.
func (s *slicer) late(rec Record) error {
	switch r := rec.(type) {
	case *ConnOpen:
		open := *r
		open.TS, open.Mid = 0, true
		s.inWin[r.Conn] = true
		s.res.Carried++
		return s.write(s.out, &open)
	case *ConnClose:
		if !s.inWin[r.Conn] {
			return nil
		}
		c := *r
		c.TS = 0
		delete(s.inWin, r.Conn)
		return s.write(s.out, &c)
	case *HTTP:
		if !(r.Upgrade && r.Resp != nil && r.Resp.Status == 101) || !s.inWin[r.Conn] {
			return nil
		}
		up := *r
		resp := *r.Resp
		up.TS, up.Req.End, resp.Start, resp.End = 0, 0, 0, 0
		up.Resp = &resp
		s.res.Carried++
		return s.write(s.out, &up)
	case *Route:
		rt := *r
		rt.TS = 0
		s.res.Carried++
		return s.write(s.out, &rt)
	}
	return nil
}

func (s *slicer) emit(w RecordWriter, rec Record) error {
	off := s.win.From
	if c, ok := Conn(rec); ok {
		if _, isClose := rec.(*ConnClose); !isClose {
			s.inWin[c] = true // opened in the window, carried in, or begun before the trace did
		}
	}
	switch r := rec.(type) {
	case *ConnOpen:
		c := *r
		c.TS -= off
		return s.write(w, &c)
	case *ConnClose:
		c := *r
		c.TS -= off
		if c.Quiet > 0 {
			c.Quiet = max(c.Quiet-off, 1) // silent since before the window: from its start
		}
		delete(s.inWin, c.Conn)
		return s.write(w, &c)
	case *HTTP:
		h := *r
		h.TS -= off
		h.Req.End -= off
		if r.Resp != nil {
			resp := *r.Resp
			resp.Start -= off
			resp.End -= off
			h.Resp = &resp
		}
		return s.write(w, &h)
	case *WSFrame:
		f := *r
		f.TS -= off
		return s.write(w, &f)
	case *Route:
		rt := *r
		rt.TS -= off
		return s.write(w, &rt)
	case *Gap:
		g := *r
		g.TS -= off
		return s.write(w, &g)
	case *Stats:
		st := *r
		st.TS -= off
		if base := s.stats; base != nil {
			st.Packets -= min(st.Packets, base.Packets)
			st.Bytes -= min(st.Bytes, base.Bytes)
			if len(r.Drops) > 0 {
				st.Drops = make(map[string]uint64, len(r.Drops))
				for k, v := range r.Drops {
					st.Drops[k] = v - min(v, base.Drops[k])
				}
			}
		}
		return s.write(w, &st)
	case *Unknown:
		// A newer record type: its times cannot be rebased safely without
		// knowing its fields, so it is dropped rather than left wrong.
		return nil
	}
	return fmt.Errorf("slice: unexpected record %T", rec)
}

func (s *slicer) write(w RecordWriter, rec Record) error {
	if err := w.Write(rec); err != nil {
		return fmt.Errorf("slice: write record: %w", err)
	}
	s.res.Records++
	end := rec.Time()
	if h, ok := rec.(*HTTP); ok {
		end = h.End()
	}
	s.maxEnd = max(s.maxEnd, end)
	return nil
}

// closeRest closes, at the window's end, the connections still open there.
func (s *slicer) closeRest(w RecordWriter) error {
	at := s.maxEnd
	if s.win.To != 0 {
		at = s.win.To - s.win.From
	}
	for _, id := range sortedKeys(s.inWin) {
		if err := s.write(w, &ConnClose{TS: at, Conn: id, How: CloseCaptureEnd}); err != nil {
			return err
		}
		s.res.Closed++
	}
	return nil
}

func sortedKeys[K ConnID | string, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

var (
	clockRE    = regexp.MustCompile(`^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?$`)
	ErrNoTime  = errors.New("empty time")
	whenFormat = `"+10m" or "10m" (from the trace's start), "15:55" or "15:55:30" (clock time), or RFC 3339 ("2026-11-03T15:55:00+01:00")`
)

// ParseWhen turns a user's --from/--to into capture-relative time for a
// trace that started at start. It takes a duration from the start ("+10m",
// "1h5m"), a clock time ("15:55", "15:55:30", in loc, on the trace's first
// day; up to 12 hours before the start means the start, earlier than that
// the next day), or an RFC 3339 instant.
func ParseWhen(s string, start time.Time, loc *time.Location) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, ErrNoTime
	}
	if loc == nil {
		loc = time.Local
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "+")); err == nil {
		if d < 0 {
			return 0, fmt.Errorf("time %q: a duration from the trace's start must not be negative", s)
		}
		return d, nil
	}
	if m := clockRE.FindStringSubmatch(s); m != nil {
		var h, mins int
		var sec float64
		fmt.Sscan(m[1], &h)
		fmt.Sscan(m[2], &mins)
		if m[3] != "" {
			fmt.Sscan(m[3], &sec)
		}
		day := start.In(loc)
		t := time.Date(day.Year(), day.Month(), day.Day(), h, mins, 0, 0, loc).Add(time.Duration(sec * float64(time.Second)))
		if t.Before(start) && start.Sub(t) > 12*time.Hour {
			// Captures run past midnight: a clock time long before the
			// start means the next day. One shortly before it ("15:45" for
			// a capture begun at 15:50) means the start.
			t = t.AddDate(0, 0, 1)
		}
		return max(0, t.Sub(start)), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		if t.Before(start) {
			return 0, fmt.Errorf("time %q is before the trace starts (%s)", s, start.In(loc).Format(time.RFC3339))
		}
		return t.Sub(start), nil
	}
	return 0, fmt.Errorf("time %q: use %s", s, whenFormat)
}
