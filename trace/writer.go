package trace

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hubreplay/hubreplay/internal/version"
	"github.com/klauspost/compress/zstd"
)

// WriterOptions tune when a Writer cuts a frame. The zero value gives the
// defaults: a frame at least every second, and every 4096 records or 4 MiB
// of JSON, whichever comes first.
type WriterOptions struct {
	// FlushInterval bounds how long a written record may sit in memory:
	// a process killed at any moment loses at most this much.
	FlushInterval time.Duration
	// FlushRecords and FlushBytes cut a frame after that many records or
	// that many bytes of uncompressed JSON.
	FlushRecords int
	FlushBytes   int
	// Level is the zstd level (zstd.SpeedDefault unless set).
	Level zstd.EncoderLevel
	// Sync makes Create'd files fsync after every frame, for captures that
	// must survive a power loss and not only a killed process.
	Sync bool
	// Overwrite lets Create replace an existing file; without it Create
	// refuses, so that a capture never destroys an earlier one.
	Overwrite bool
}

func (o *WriterOptions) withDefaults() WriterOptions {
	var v WriterOptions
	if o != nil {
		v = *o
	}
	if v.FlushInterval <= 0 {
		v.FlushInterval = time.Second
	}
	if v.FlushRecords <= 0 {
		v.FlushRecords = 4096
	}
	if v.FlushBytes <= 0 {
		v.FlushBytes = 4 << 20
	}
	v.FlushBytes = min(v.FlushBytes, MaxFrameBytes/2)
	if v.Level == 0 {
		v.Level = zstd.SpeedDefault
	}
	return v
}

// Writer writes a trace. It is safe for concurrent use. Records are
// buffered and written as one zstd frame at each flush; Close writes the
// end marker that tells readers the trace is complete.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	file   *os.File // set by Create
	opts   WriterOptions
	enc    *zstd.Encoder
	timer  *time.Timer
	closed bool
	err    error // sticky: the first write error ends the trace

	pending      []byte
	pendingN     int
	minTS, maxTS int64
	out          []byte // reused frame buffer

	offset  int64
	frames  uint32
	records uint64
}

// Create creates a trace file at path and writes its header. It refuses to
// replace an existing file unless opts.Overwrite is set.
func Create(path string, h Header, opts *WriterOptions) (*Writer, error) {
	o := opts.withDefaults()
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if o.Overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		if st, serr := os.Stat(path); serr == nil && st.IsDir() {
			return nil, fmt.Errorf("create trace %s: it is a directory; give a file name", path)
		}
		if errors.Is(err, os.ErrExist) {
			// The caller says how to replace it (the commands: --force).
			return nil, fmt.Errorf("create trace %s: %w", path, os.ErrExist)
		}
		return nil, fmt.Errorf("create trace: %w", err)
	}
	w, err := newWriter(f, h, o)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("create trace %s: %w", path, err)
	}
	w.file = f
	return w, nil
}

// NewWriter writes a trace to w, starting with h. Fields of h left empty
// get defaults: format name and version, start time now, this tool's version.
func NewWriter(w io.Writer, h Header, opts *WriterOptions) (*Writer, error) {
	return newWriter(w, h, opts.withDefaults())
}

func newWriter(w io.Writer, h Header, o WriterOptions) (*Writer, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(o.Level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("start zstd encoder: %w", err)
	}
	if h.Format == "" {
		h.Format = FormatName
	}
	if h.Version == 0 {
		h.Version = Version
	}
	if h.Start.IsZero() {
		h.Start = time.Now()
	}
	h.Start = h.Start.UTC()
	if h.Tool == "" {
		h.Tool = version.Tool()
	}
	tw := &Writer{w: w, opts: o, enc: enc}
	tw.pending, err = AppendJSON(tw.pending, &h)
	if err != nil {
		return nil, err
	}
	tw.pendingN = 1
	// The header goes out at once, so that even a capture killed in its
	// first second leaves a file that says what it is.
	if err := tw.flushLocked(); err != nil {
		return nil, err
	}
	return tw, nil
}

// Write adds a record to the trace.
func (w *Writer) Write(r Record) error {
	if _, ok := r.(*Header); ok {
		return errors.New("write trace record: the header is written by NewWriter, once")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("write trace record: writer is closed")
	}
	if w.err != nil {
		return w.err
	}
	mark := len(w.pending)
	var err error
	if w.pending, err = AppendJSON(w.pending, r); err != nil {
		w.pending = w.pending[:mark]
		return err
	}
	if n := len(w.pending) - mark; n > MaxFrameBytes/2 {
		w.pending = w.pending[:mark]
		return fmt.Errorf("write %s record: %d bytes is more than a trace record may hold (%d)", r.Type(), n, MaxFrameBytes/2)
	}
	ts := int64(r.Time())
	if w.pendingN == 0 {
		w.minTS, w.maxTS = ts, ts
		w.armTimer()
	} else {
		w.minTS, w.maxTS = min(w.minTS, ts), max(w.maxTS, ts)
	}
	w.pendingN++
	if w.pendingN >= w.opts.FlushRecords || len(w.pending) >= w.opts.FlushBytes {
		return w.flushLocked()
	}
	return nil
}

// armTimer makes sure a record that just entered an empty buffer is
// written within FlushInterval even if no other record follows it.
func (w *Writer) armTimer() {
	if w.timer != nil {
		w.timer.Reset(w.opts.FlushInterval)
		return
	}
	w.timer = time.AfterFunc(w.opts.FlushInterval, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.closed && w.err == nil && w.pendingN > 0 {
			_ = w.flushLocked() // the error is sticky; the next Write or Close reports it
		}
	})
}

// Flush writes buffered records as a frame now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.pendingN == 0 {
		return nil
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	// Compress behind room for the index, then fill the index in: one
	// buffer, one write, reused from frame to frame.
	const room = skippableHeaderLen + indexPayloadLen
	w.out = w.enc.EncodeAll(w.pending, append(w.out[:0], make([]byte, room)...))
	frameIndex{
		compressed:   uint32(len(w.out) - room),
		decompressed: uint32(len(w.pending)),
		records:      uint32(w.pendingN),
		minTS:        w.minTS,
		maxTS:        w.maxTS,
	}.appendTo(w.out[:0])
	if err := w.writeLocked(w.out); err != nil {
		return err
	}
	w.frames++
	w.records += uint64(w.pendingN)
	w.pending, w.pendingN = w.pending[:0], 0
	return nil
}

func (w *Writer) writeLocked(b []byte) error {
	n, err := w.w.Write(b)
	w.offset += int64(n)
	if err == nil && w.file != nil && w.opts.Sync {
		err = w.file.Sync()
	}
	if err != nil {
		w.err = fmt.Errorf("write trace at byte %d: %w", w.offset, err)
		return w.err
	}
	return nil
}

// Records returns how many records have reached the underlying writer,
// the header included.
func (w *Writer) Records() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.records
}

// Close flushes what is buffered, writes the end marker and, for a file
// from Create, closes it. After a write error it still closes the file and
// returns that error: everything flushed before it stays readable.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	err := w.err
	if err == nil {
		err = w.flushLocked()
	}
	if err == nil {
		err = w.writeLocked(endMarker{records: w.records, frames: w.frames}.appendTo(nil))
	}
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.enc.Close()
	if w.file != nil {
		if cerr := w.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close trace %s: %w", w.file.Name(), cerr)
		}
	}
	return err
}
