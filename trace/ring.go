package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Ring is a flight recorder: a RecordWriter that keeps only about the last
// Keep of a capture on disk and writes it out, on demand, as one trace
// that stands on its own (Dump). Left running through a lecture, it hands
// over the peak that preceded a crash without filling the disk.
//
// Records go to segment files in a directory, each a trace of its own
// covering Keep/4 of capture time; a segment is deleted once the segments
// after it cover Keep, so the disk holds at most about 1.25 Keep of
// traffic. What a window starting at a segment needs from before it (open
// connections, their WebSocket upgrades, routes in the table) is kept in
// memory with the segment, as Slice carries it.
type Ring struct {
	dir   string
	h     Header
	keep  time.Duration
	every time.Duration
	opts  *WriterOptions

	mu    sync.Mutex
	cur   *Writer
	segs  []*ringSeg // oldest first; the last is cur's
	state *slicer    // everything written so far, as a window's inheritance
	last  time.Duration
	next  int
}

type ringSeg struct {
	path  string
	start time.Duration // capture time of its first record
	carry []Record      // the state at its start
	pins  int           // dumps reading it
}

// NewRing starts a flight recorder keeping about keep of capture time in
// dir, which it creates and must not exist with segments in it.
func NewRing(dir string, h Header, keep time.Duration, opts *WriterOptions) (*Ring, error) {
	if keep <= 0 {
		return nil, fmt.Errorf("flight recorder: keep %s: it must be positive", keep)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("flight recorder: %w", err)
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "segment-*.trace")); len(old) > 0 {
		return nil, fmt.Errorf("flight recorder: %s holds segments of an earlier capture (%s ...): read them with hubreplay inspect, or remove them", dir, filepath.Base(old[0]))
	}
	return &Ring{dir: dir, h: h, keep: keep, every: max(keep/4, time.Second), opts: opts,
		state: newSlicer(Window{From: math.MaxInt64}, nil)}, nil
}

// Write adds a record, starting a new segment when the current one covers
// Keep/4 and deleting the segments no longer needed.
func (r *Ring) Write(rec Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := rec.(*Header); ok {
		return nil
	}
	r.last = max(r.last, rec.Time())
	if r.cur == nil || r.last >= r.segs[len(r.segs)-1].start+r.every {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	if err := r.cur.Write(rec); err != nil {
		return fmt.Errorf("flight recorder: %w", err)
	}
	r.state.before(rec)
	return nil
}

// rotate closes the current segment and opens the next, then deletes the
// oldest segments while the ones after them still cover Keep.
func (r *Ring) rotate() error {
	if r.cur != nil {
		if err := r.cur.Close(); err != nil {
			return fmt.Errorf("flight recorder: close segment: %w", err)
		}
		r.cur = nil
	}
	seg := &ringSeg{path: filepath.Join(r.dir, fmt.Sprintf("segment-%06d.trace", r.next)), start: r.last, carry: r.state.state()}
	r.next++
	w, err := Create(seg.path, r.h, r.opts)
	if err != nil {
		return fmt.Errorf("flight recorder: %w", err)
	}
	r.cur = w
	r.segs = append(r.segs, seg)
	for len(r.segs) > 2 && r.segs[1].start <= r.last-r.keep && r.segs[0].pins == 0 {
		if err := os.Remove(r.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("flight recorder: remove old segment: %w", err)
		}
		r.segs = r.segs[1:]
	}
	return nil
}

// Dump writes the last Keep of the capture (or all of it, if shorter) to
// path as a trace that stands on its own, as Slice writes one, and goes on
// recording. The segments it reads are kept until it is done.
func (r *Ring) Dump(ctx context.Context, path string, opts *WriterOptions) (SliceResult, error) {
	res, err := r.dump(ctx, func(h Header) (*Writer, error) { return Create(path, h, opts) })
	if err != nil {
		return res, fmt.Errorf("flight recorder: write %s: %w", path, err)
	}
	return res, nil
}

// DumpTo is Dump onto w (a stream: the tap's standard output).
func (r *Ring) DumpTo(ctx context.Context, w io.Writer, opts *WriterOptions) (SliceResult, error) {
	res, err := r.dump(ctx, func(h Header) (*Writer, error) { return NewWriter(w, h, opts) })
	if err != nil {
		return res, fmt.Errorf("flight recorder: write the recording out: %w", err)
	}
	return res, nil
}

func (r *Ring) dump(ctx context.Context, create func(Header) (*Writer, error)) (SliceResult, error) {
	r.mu.Lock()
	if r.cur == nil {
		r.mu.Unlock()
		return SliceResult{}, fmt.Errorf("flight recorder: nothing recorded yet")
	}
	// The current segment is closed, so that it reads back whole, and a
	// new one opened for what comes during the dump.
	if err := r.rotate(); err != nil {
		r.mu.Unlock()
		return SliceResult{}, err
	}
	segs := append([]*ringSeg(nil), r.segs[:len(r.segs)-1]...)
	for _, s := range segs {
		s.pins++
	}
	win := Window{From: max(0, r.last-r.keep)}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		for _, s := range segs {
			s.pins--
		}
		r.mu.Unlock()
	}()

	var out *Writer
	each := func(fn func(Record) error) error {
		for _, rec := range segs[0].carry {
			if err := fn(rec); err != nil {
				return err
			}
		}
		for _, s := range segs {
			rd, err := Open(s.path)
			if err != nil {
				return fmt.Errorf("flight recorder: %w", err)
			}
			err = rd.Each(ctx, nil, fn)
			rd.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}
	res, err := sliceRecords(ctx, r.h, win, func(h Header) (RecordWriter, error) {
		var err error
		out, err = create(h)
		return out, err
	}, each)
	if out != nil {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	return res, err
}

// Close closes the current segment. With remove, the segments and the
// directory go too (after a successful last Dump); without, they stay
// for the operator: each is a trace.
func (r *Ring) Close(remove bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if r.cur != nil {
		err = r.cur.Close()
		r.cur = nil
	}
	if remove {
		for _, s := range r.segs {
			if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
				err = rerr
			}
		}
		r.segs = nil
		if rerr := os.Remove(r.dir); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("flight recorder: %w", err)
	}
	return nil
}
