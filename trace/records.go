package trace

import (
	"context"
	"fmt"
	"time"
)

// Records is a trace read once into memory, for building more than one
// thing from it: compare's replay plan and the fixtures' index each took
// their own decoded copy of every record before, the larger part of its
// memory on a lecture peak. EachNumbered numbers records as a Reader's
// does.
type Records struct {
	header *Header
	recs   []Record
	nums   []int64 // each record's number in the whole trace
	path   string
	size   int64 // bytes read: progress counts up to it
}

// ReadWindow reads the rest of r (the header included if it was not read
// yet), keeping only what a replay of win needs: the HTTP
// exchanges and WebSocket frames that begin in it, and every record of
// another kind (connections' opening and end, routes: the state the
// window starts from). Of the exchanges outside it, a few are kept that
// say what the window's connections are: the upgrades before it (the plan
// counts their sessions as cut), each connection's first exchange and
// first one naming a user (whose pseudonym its copies are renamed from),
// and the one that ends last (where the trace ends). A day-long trace
// replayed an hour at a time thus holds about an hour of it. Records keep
// their numbers. An empty window keeps everything. A damaged trace is an
// error, as for Each: nothing is built on part of a trace without saying
// so.
func ReadWindow(ctx context.Context, r *Reader, win Window, progress func(offset int64)) (*Records, error) {
	rs := &Records{header: r.Header(), path: r.path}
	whole := win.From <= 0 && win.To <= 0
	if win.To <= 0 {
		win.To = 1<<63 - 1
	}
	in := interner{}
	seen := map[ConnID]uint8{} // 1: an exchange kept; 2: one naming a user
	var (
		last      Record // the dropped record that ends last, and its number
		lastN     int64
		lastEnd   time.Duration
		keptUntil time.Duration
	)
	keep := func(n int64, rec Record) {
		rs.recs, rs.nums = append(rs.recs, rec), append(rs.nums, n)
		keptUntil = max(keptUntil, endOf(rec))
	}
	drop := func(n int64, rec Record) {
		if e := endOf(rec); e > lastEnd {
			last, lastN, lastEnd = rec, n, e
		}
	}
	err := r.EachNumbered(ctx, progress, func(n int64, rec Record) error {
		switch rec := rec.(type) {
		case *HTTP:
			if !whole {
				s := seen[rec.Conn]
				first, named := s&1 == 0, s&2 == 0 && rec.User != ""
				if (rec.TS >= win.To || rec.TS < win.From && !rec.Upgrade) && !first && !named {
					drop(n, rec)
					return nil
				}
				if s |= 1; rec.User != "" {
					s |= 2
				}
				seen[rec.Conn] = s
			}
			in.http(rec)
		case *WSFrame:
			if !whole && (rec.TS < win.From || rec.TS >= win.To) {
				drop(n, rec)
				return nil
			}
			rec.MsgType, rec.Channel = in.of(rec.MsgType), in.of(rec.Channel)
		}
		keep(n, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if last != nil && lastEnd > keptUntil {
		if h, ok := last.(*HTTP); ok {
			in.http(h)
		}
		keep(lastN, last)
	}
	rs.size = r.Offset()
	return rs, nil
}

// endOf is the latest time a record speaks of.
func endOf(rec Record) time.Duration {
	if h, ok := rec.(*HTTP); ok {
		return max(h.TS, h.End())
	}
	return rec.Time()
}

// Header is the trace's header record.
func (rs *Records) Header() *Header { return rs.header }

// Len is how many records are kept, the header included.
func (rs *Records) Len() int { return len(rs.recs) }

// EachNumbered calls fn with every record kept, in order, and its number
// in the whole trace (the header's is 1), as Reader.EachNumbered does;
// progress, if not nil, gets the share of the trace's bytes gone through.
func (rs *Records) EachNumbered(ctx context.Context, progress func(offset int64), fn func(int64, Record) error) error {
	for i, rec := range rs.recs {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read trace %s: %w", orStdin(rs.path), err)
			}
			if progress != nil {
				progress(rs.size * int64(i) / int64(len(rs.recs)))
			}
		}
		if err := fn(rs.nums[i], rec); err != nil {
			return err
		}
	}
	return nil
}

// interner shares the strings a trace repeats on every record (header
// names and most values, methods, users' pseudonyms, a tab's polls), and
// gives header lists their exact length: decoded one record at a time,
// each held its own copies, and the header lists the room their growth
// left. On a 300-student peak that was 30% of what the records held.
type interner map[string]string

// internMax bounds what is kept: long strings are rarely repeated, and a
// trace of unique values must not grow the table without end.
const (
	internLen = 128
	internMax = 1 << 16
)

func (in interner) of(s string) string {
	if s == "" || len(s) > internLen {
		return s
	}
	if v, ok := in[s]; ok {
		return v
	}
	if len(in) < internMax {
		in[s] = s
	}
	return s
}

func (in interner) fields(fs []Field) []Field {
	if len(fs) == 0 {
		return nil
	}
	out := make([]Field, len(fs))
	for i, f := range fs {
		out[i] = Field{in.of(f[0]), in.of(f[1])}
	}
	return out
}

func (in interner) http(h *HTTP) {
	h.User = in.of(h.User)
	h.Req.Method, h.Req.Proto, h.Req.Target = in.of(h.Req.Method), in.of(h.Req.Proto), in.of(h.Req.Target)
	h.Req.Headers = in.fields(h.Req.Headers)
	if h.Resp != nil {
		h.Resp.Reason, h.Resp.Proto = in.of(h.Resp.Reason), in.of(h.Resp.Proto)
		h.Resp.Headers = in.fields(h.Resp.Headers)
	}
}
