package trace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// ErrNotTrace is matched (errors.Is) by the error for a file that is not a
// hubreplay trace at all.
var ErrNotTrace = errors.New("not a hubreplay trace")

// NotTraceError says why a file is not a trace.
type NotTraceError struct {
	Path   string
	Reason string // e.g. "it is a pcap capture"
	Kind   string // what was expected: "trace" when empty, "results", …
}

func (e *NotTraceError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "trace"
	} else if kind != "trace" {
		kind += " file"
	}
	return fmt.Sprintf("%s: not a hubreplay %s: %s", orStdin(e.Path), kind, e.Reason)
}
func (e *NotTraceError) Is(target error) bool { return target == ErrNotTrace }

// DamageError reports a trace that ends early or is damaged. Every record
// before Offset has been returned; nothing after it has.
type DamageError struct {
	Path      string
	Offset    int64  // byte offset in the file where the damage starts; -1 if unknown
	Frame     int    // 0-based data frame; -1 if not framed
	Truncated bool   // the file ends early (as when its writer was killed)
	Reason    string // what is wrong there
	Records   uint64 // records returned before the damage, header included
}

func (e *DamageError) Error() string {
	what := "damaged"
	if e.Truncated {
		what = "truncated"
	}
	where := ""
	if e.Offset >= 0 {
		where = fmt.Sprintf(" at byte %d", e.Offset)
	}
	if e.Frame >= 0 {
		where += fmt.Sprintf(" (frame %d)", e.Frame)
	}
	return fmt.Sprintf("%s: trace %s%s: %s; the %d records before it are intact",
		orStdin(e.Path), what, where, e.Reason, e.Records)
}

func orStdin(p string) string {
	if p == "" {
		return "<input>"
	}
	return p
}

type readMode int

const (
	modeFramed readMode = iota // as Writer writes it: indexed frames and an end marker
	modeStream                 // any zstd stream of JSON lines, e.g. recompressed by the zstd tool
	modeLines                  // uncompressed JSON lines, e.g. `hubreplay cat` output
)

// Reader streams the records of a trace. Next returns them in file order,
// the header first; Header gives the header without consuming it.
type Reader struct {
	path   string
	src    *bufio.Reader
	closer io.Closer
	mode   readMode
	dec    *zstd.Decoder
	header *Header

	off      int64        // bytes of src consumed
	frame    int          // data frames loaded so far
	frameOff int64        // offset of the current frame's index
	comp     bytes.Buffer // the current frame, compressed
	buf      []byte       // the current frame, decompressed
	pos      int
	records  uint64
	err      error // sticky: io.EOF or a *DamageError

	lines   *bufio.Reader // modeStream, modeLines
	lineNo  int64
	pending Record // the header, read ahead by NewReader
}

// Open opens a trace file.
func Open(path string) (*Reader, error) { return OpenFormat(path, FormatName) }

// OpenFormat opens a file written with this package's framing whose header
// names format: a trace (FormatName), or another kind of hubreplay file
// that reuses the framing, such as replay results.
func OpenFormat(path, format string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", kindOf(format), err)
	}
	r, err := newReader(f, path, format)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader reads a trace from src; name is used in error messages.
func NewReader(src io.Reader, name string) (*Reader, error) {
	return newReader(src, name, FormatName)
}

// NewReaderFormat reads a file of the given format (see OpenFormat) from src.
func NewReaderFormat(src io.Reader, name, format string) (*Reader, error) {
	return newReader(src, name, format)
}

// kindOf names a format for messages: "trace" or "results".
func kindOf(format string) string {
	if k, ok := strings.CutPrefix(format, "hubreplay-"); ok {
		return k
	}
	return format
}

func newReader(src io.Reader, name, format string) (*Reader, error) {
	r := &Reader{path: name, src: bufio.NewReaderSize(src, 256<<10)}
	head, err := r.src.Peek(4)
	if len(head) == 0 {
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read trace %s: %w", orStdin(name), err)
		}
		return nil, &NotTraceError{name, "the file is empty", kindOf(format)}
	}
	var zstdOpts = []zstd.DOption{zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxFrameBytes)}
	var magic uint32
	if len(head) == 4 {
		magic = binary.LittleEndian.Uint32(head)
	}
	switch {
	case len(head) == 4 && magic == skippableMagic:
		r.mode = modeFramed
		r.dec, err = zstd.NewReader(nil, zstdOpts...)
	case len(head) == 4 && (magic == zstdMagic || isSkippable(magic)):
		r.mode = modeStream
		r.dec, err = zstd.NewReader(r.src, zstdOpts...)
		r.lines = bufio.NewReaderSize(r.dec, 256<<10)
	case firstNonSpace(r.src) == '{':
		r.mode = modeLines
		r.lines = r.src
	default:
		return nil, &NotTraceError{name, sniff(head), kindOf(format)}
	}
	if err != nil {
		return nil, fmt.Errorf("read trace %s: start zstd decoder: %w", orStdin(name), err)
	}

	first, err := r.next()
	if err != nil {
		r.Close() // the decoder's goroutines; the file is Open's to close
		var de *DamageError
		if errors.As(err, &de) && r.mode != modeFramed && r.records == 0 && !de.Truncated {
			return nil, &NotTraceError{name, "its first line is not a " + kindOf(format) + " record (" + de.Reason + ")", kindOf(format)}
		}
		if err == io.EOF {
			return nil, &NotTraceError{name, "it holds no records", kindOf(format)}
		}
		return nil, err
	}
	h, ok := first.(*Header)
	if !ok || h.Format != format {
		r.Close()
		why := fmt.Sprintf("its first record is %q, not a %s header", first.Type(), format)
		if ok && strings.HasPrefix(h.Format, "hubreplay-") {
			why = fmt.Sprintf("it is a hubreplay %s file", kindOf(h.Format))
		} else if ok {
			why = fmt.Sprintf("its header names format %q, not %s", h.Format, format)
		}
		return nil, &NotTraceError{name, why, kindOf(format)}
	}
	if h.Version > Version {
		r.Close()
		return nil, fmt.Errorf("%s: trace format version %d is newer than this hubreplay reads (%d): upgrade hubreplay", orStdin(name), h.Version, Version)
	}
	r.header = h
	r.pending = h
	return r, nil
}

// firstNonSpace peeks past leading white space without consuming it.
func firstNonSpace(b *bufio.Reader) byte {
	for n := 1; n <= 64; n++ {
		p, _ := b.Peek(n)
		if len(p) < n {
			return 0
		}
		switch c := p[n-1]; c {
		case ' ', '\t', '\r', '\n':
		default:
			return c
		}
	}
	return 0
}

// sniff names what a file that is not a trace looks like.
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0xd4, 0xc3, 0xb2, 0xa1}), bytes.HasPrefix(head, []byte{0xa1, 0xb2, 0xc3, 0xd4}),
		bytes.HasPrefix(head, []byte{0x4d, 0x3c, 0xb2, 0xa1}), bytes.HasPrefix(head, []byte{0xa1, 0xb2, 0x3c, 0x4d}):
		return "it is a pcap packet capture (turn it into a trace with `hubreplay capture --pcap`)"
	case bytes.HasPrefix(head, []byte{0x0a, 0x0d, 0x0d, 0x0a}):
		return "it is a pcapng packet capture (turn it into a trace with `hubreplay capture --pcap`)"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "it is gzip-compressed data (traces are zstd; if it is a gzip'd trace, run it through `gunzip` first)"
	}
	return fmt.Sprintf("it starts with bytes % x, which are neither zstd nor JSON", head)
}

// Header returns the trace's header record.
func (r *Reader) Header() *Header { return r.header }

// Offset is how many bytes of the file have been consumed: for progress.
func (r *Reader) Offset() int64 { return r.off }

// Close releases the reader and closes the file Open opened.
func (r *Reader) Close() error {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	if r.closer != nil {
		c := r.closer
		r.closer = nil
		return c.Close()
	}
	return nil
}

// Next returns the next record. At the clean end of a trace it returns
// io.EOF; if the trace is truncated or damaged it returns every whole
// record before the damage and then a *DamageError.
func (r *Reader) Next() (Record, error) {
	if r.pending != nil {
		rec := r.pending
		r.pending = nil
		return rec, nil
	}
	return r.next()
}

// Each calls fn with every record from the reader's position on, the
// header included if it has not been read yet. It returns nil at the
// clean end of the trace, the reader's error (a *DamageError for a damaged
// trace) after the records before it, the first error fn returns, or the
// context's error. progress, if not nil, is called now and then with the
// bytes read so far.
func (r *Reader) Each(ctx context.Context, progress func(offset int64), fn func(Record) error) error {
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read trace %s: %w", orStdin(r.path), err)
			}
			if progress != nil {
				progress(r.Offset())
			}
		}
		rec, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// EachNumbered is Each, with each record's number: its line in the
// decompressed trace, the header's being 1, counted from a reader at its
// start.
func (r *Reader) EachNumbered(ctx context.Context, progress func(offset int64), fn func(int64, Record) error) error {
	var n int64
	return r.Each(ctx, progress, func(rec Record) error {
		n++
		return fn(n, rec)
	})
}

func (r *Reader) next() (Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	var rec Record
	var err error
	if r.mode == modeFramed {
		rec, err = r.nextFramed()
	} else {
		rec, err = r.nextLine()
	}
	if err != nil {
		r.err = err
		return nil, err
	}
	r.records++
	return rec, nil
}

func (r *Reader) damage(off int64, frame int, truncated bool, format string, args ...any) error {
	return &DamageError{Path: r.path, Offset: off, Frame: frame, Truncated: truncated,
		Reason: fmt.Sprintf(format, args...), Records: r.records}
}

func (r *Reader) nextFramed() (Record, error) {
	for r.pos >= len(r.buf) {
		if err := r.loadFrame(); err != nil {
			return nil, err
		}
	}
	line := r.buf[r.pos:]
	end := bytes.IndexByte(line, '\n') // the frame ends in '\n': checked when loaded
	line = line[:end]
	r.pos += end + 1
	rec, err := ParseJSON(line)
	if err != nil {
		return nil, r.damage(r.frameOff, r.frame-1, false, "a record in the frame does not parse: %v", err)
	}
	return rec, nil
}

// loadFrame reads the next index and data frame, or the end marker.
func (r *Reader) loadFrame() error {
	start := r.off
	var hdr [skippableHeaderLen]byte
	n, err := io.ReadFull(r.src, hdr[:])
	r.off += int64(n)
	if n == 0 && err == io.EOF {
		return r.damage(start, -1, true, "the file ends without an end-of-trace marker (its writer did not close it: was the capture killed?)")
	}
	if err != nil {
		return r.readFailure(start, err, "frame header")
	}
	magic, size := binary.LittleEndian.Uint32(hdr[:]), binary.LittleEndian.Uint32(hdr[4:])
	switch {
	case magic == skippableMagic && size == indexPayloadLen:
	case magic == skippableMagic && size == endPayloadLen:
		return r.readEnd(start)
	case isSkippable(magic) && magic != skippableMagic && size <= MaxFrameBytes:
		// Someone else's skippable frame: zstd says to skip it, and so do we.
		m, err := io.CopyN(io.Discard, r.src, int64(size))
		r.off += m
		if err != nil {
			return r.readFailure(start, err, "skippable frame")
		}
		return nil
	case magic == zstdMagic:
		return r.damage(start, r.frame, false, "a zstd frame without its hubreplay index")
	default:
		return r.damage(start, r.frame, false, "expected a frame index, found bytes % x", hdr[:])
	}
	var payload [indexPayloadLen]byte
	n, err = io.ReadFull(r.src, payload[:])
	r.off += int64(n)
	if err != nil {
		return r.readFailure(start, err, "frame index")
	}
	idx, ok := parseIndex(payload[:])
	if !ok {
		return r.damage(start, r.frame, false, "the frame index fails its checksum")
	}
	if idx.compressed > MaxFrameBytes || idx.decompressed > MaxFrameBytes || idx.records == 0 {
		return r.damage(start, r.frame, false, "the frame index declares an impossible frame (%d bytes, %d records)", idx.compressed, idx.records)
	}
	r.frameOff = start
	frameStart := r.off
	// Copy rather than allocate the declared size up front: a damaged
	// index must not cost 64 MiB of memory before the file runs out.
	r.comp.Reset()
	m, err := io.CopyN(&r.comp, r.src, int64(idx.compressed))
	r.off += m
	if err != nil {
		if err == io.EOF {
			return r.damage(frameStart, r.frame, true, "the frame declares %d bytes but the file ends after %d", idx.compressed, m)
		}
		return r.readFailure(frameStart, err, "frame")
	}
	r.buf, err = r.dec.DecodeAll(r.comp.Bytes(), r.buf[:0])
	if err != nil {
		return r.damage(frameStart, r.frame, false, "the frame does not decompress: %v", err)
	}
	if len(r.buf) != int(idx.decompressed) {
		return r.damage(frameStart, r.frame, false, "the frame decompresses to %d bytes, its index says %d", len(r.buf), idx.decompressed)
	}
	if got := bytes.Count(r.buf, []byte{'\n'}); got != int(idx.records) || r.buf[len(r.buf)-1] != '\n' {
		return r.damage(frameStart, r.frame, false, "the frame holds %d whole lines, its index says %d records", got, idx.records)
	}
	r.pos = 0
	r.frame++
	return nil
}

func (r *Reader) readEnd(start int64) error {
	var payload [endPayloadLen]byte
	n, err := io.ReadFull(r.src, payload[:])
	r.off += int64(n)
	if err != nil {
		return r.readFailure(start, err, "end-of-trace marker")
	}
	end, ok := parseEnd(payload[:])
	if !ok {
		return r.damage(start, -1, false, "the end-of-trace marker fails its checksum")
	}
	if end.records != r.records || int(end.frames) != r.frame {
		return r.damage(start, -1, false, "the end-of-trace marker counts %d records in %d frames, the file holds %d in %d",
			end.records, end.frames, r.records, r.frame)
	}
	if extra, _ := r.src.Peek(1); len(extra) > 0 {
		return r.damage(r.off, -1, false, "data follows the end-of-trace marker")
	}
	return io.EOF
}

// readFailure turns a failed read of a part of a frame into an error.
func (r *Reader) readFailure(start int64, err error, what string) error {
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return r.damage(start, r.frame, true, "the file ends inside a %s", what)
	}
	return fmt.Errorf("read trace %s at byte %d: %w", orStdin(r.path), r.off, err)
}

// maxLine bounds one JSON line in the unframed modes.
const maxLine = MaxFrameBytes

func (r *Reader) nextLine() (Record, error) {
	for {
		line, err := readLine(r.lines)
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, r.streamFailure(err, r.lineNo)
		}
		r.lineNo++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rec, perr := ParseJSON(line)
		if perr != nil {
			if err == io.EOF { // an unterminated last line that does not parse: cut short
				return nil, r.damage(-1, -1, true, "the file ends inside line %d", r.lineNo)
			}
			if err != nil { // the last line, cut short by the failure
				return nil, r.streamFailure(err, r.lineNo-1) // the cut line is not whole
			}
			return nil, r.damage(-1, -1, false, "line %d does not parse: %v", r.lineNo, perr)
		}
		if err != nil && err != io.EOF {
			// A line that parses but was not ended before a failure may be a
			// prefix of a longer one: do not trust it.
			return nil, r.streamFailure(err, r.lineNo-1) // the cut line is not whole
		}
		return rec, nil
	}
}

// streamFailure turns a failure of the unframed input after `whole`
// whole lines into an error.
func (r *Reader) streamFailure(err error, whole int64) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return r.damage(-1, -1, true, "the zstd stream ends early, after line %d", whole)
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		return r.damage(-1, -1, false, "line %d is longer than %d bytes", whole+1, maxLine)
	}
	if r.mode == modeStream {
		return r.damage(-1, -1, false, "the zstd stream is damaged after line %d: %v", whole, err)
	}
	return fmt.Errorf("read trace %s: %w", orStdin(r.path), err)
}

// readLine reads one line without its newline, bounded by maxLine. At the
// end of input it returns the last unterminated line with io.EOF.
func readLine(b *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := b.ReadSlice('\n')
		if len(line)+len(frag) > maxLine {
			return nil, bufio.ErrBufferFull
		}
		if err == bufio.ErrBufferFull {
			line = append(line, frag...)
			continue
		}
		if line == nil && err == nil {
			return frag[:len(frag)-1], nil
		}
		line = append(line, frag...)
		if err == nil {
			return line[:len(line)-1], nil
		}
		return line, err
	}
}
