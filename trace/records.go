package trace

import (
	"context"
	"fmt"
)

// Records is a trace read once into memory, for building more than one
// thing from it: compare's replay plan and the fixtures' index each took
// their own decoded copy of every record before, the larger part of its
// memory on a lecture peak. Each numbers records as a Reader's does.
type Records struct {
	header *Header
	recs   []Record
	path   string
	size   int64 // bytes read: progress counts up to it
}

// ReadAll reads the rest of r (the header included if it was not read
// yet). A damaged trace is an error, as for Each: nothing is built on part
// of a trace without saying so.
func ReadAll(ctx context.Context, r *Reader, progress func(offset int64)) (*Records, error) {
	rs := &Records{header: r.Header(), path: r.path}
	in := interner{}
	err := r.Each(ctx, progress, func(rec Record) error {
		switch rec := rec.(type) {
		case *HTTP:
			in.http(rec)
		case *WSFrame:
			rec.MsgType, rec.Channel = in.of(rec.MsgType), in.of(rec.Channel)
		}
		rs.recs = append(rs.recs, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	rs.size = r.Offset()
	return rs, nil
}

// Header is the trace's header record.
func (rs *Records) Header() *Header { return rs.header }

// Len is how many records there are, the header included.
func (rs *Records) Len() int { return len(rs.recs) }

// Each calls fn with every record in order, as Reader.Each does; progress,
// if not nil, gets the share of the trace's bytes gone through.
func (rs *Records) Each(ctx context.Context, progress func(offset int64), fn func(Record) error) error {
	for i, rec := range rs.recs {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read trace %s: %w", orStdin(rs.path), err)
			}
			if progress != nil {
				progress(rs.size * int64(i) / int64(len(rs.recs)))
			}
		}
		if err := fn(rec); err != nil {
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
