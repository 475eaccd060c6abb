// Package wsframe parses one direction of a WebSocket connection (RFC 6455)
// from reassembled TCP bytes fed in arbitrary pieces: frame headers (decoded
// by gobwas/ws), unmasking, control frames and close codes. Payloads are
// kept up to a limit; larger ones are counted, not held.
package wsframe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gobwas/ws"
)

// DefaultMaxPayload is how much of a frame's payload a parser keeps.
const DefaultMaxPayload = 1 << 20

// Frame is one parsed frame.
type Frame struct {
	ws.Header
	// Payload is the unmasked payload, or its first MaxPayload bytes.
	Payload []byte
	// Lost counts payload bytes the capture lost (they are in Length).
	Lost       int64
	Start, End time.Duration // first and last byte on the wire
	// Incomplete: the stream ended before the frame did.
	Incomplete bool
}

// Truncated reports whether Payload holds less than the whole payload.
func (f *Frame) Truncated() bool { return int64(len(f.Payload)) < f.Length }

// CloseCode returns a close frame's status code, 0 if it has none.
func (f *Frame) CloseCode() uint16 {
	if f.OpCode != ws.OpClose || f.Length < 2 || len(f.Payload) < 2 {
		return 0
	}
	code, _ := ws.ParseCloseFrameData(f.Payload)
	return uint16(code)
}

// Clock gives the capture time of the byte at offset off of the data
// passed to Feed.
type Clock func(off int) time.Duration

// Parser parses one direction; create with New.
type Parser struct {
	// MaxPayload bounds the payload bytes kept per frame.
	MaxPayload int
	done       func(*Frame)

	hdr      []byte // partial frame header
	cur      *Frame
	left     int64 // payload bytes still to come for cur
	read     int64 // payload bytes of cur seen so far (for the mask offset)
	lost     bool  // a gap hit a frame header: nothing more can be parsed
	hdrStart time.Duration
	consumed int64
	hbuf     [ws.MaxHeaderSize]byte
}

// preallocMax is the largest payload given its room when its header is
// read; a larger one grows as its bytes come, so that a header claiming
// much does not make the parser hold it.
const preallocMax = 64 << 10

// New returns a parser that calls done for every frame, in order.
func New(done func(*Frame)) *Parser {
	return &Parser{MaxPayload: DefaultMaxPayload, done: done}
}

// Lost reports whether the parser lost its place in the stream.
func (p *Parser) Lost() bool { return p.lost }

// HeaderError is a frame header that cannot be right.
type HeaderError struct {
	Offset int64
	Err    error
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("malformed WebSocket frame header at byte %d of the stream: %v", e.Offset, e.Err)
}
func (e *HeaderError) Unwrap() error { return e.Err }

// Feed parses data. After an error (or a lost header) the parser ignores
// the rest of the stream: WebSocket frames carry no marker to resync on.
func (p *Parser) Feed(data []byte, at Clock) error {
	off := 0
	for off < len(data) && !p.lost {
		if p.cur == nil {
			n, err := p.header(data[off:], off, at)
			off += n
			if err != nil {
				p.lost = true
				return err
			}
			continue
		}
		n := int(min(int64(len(data)-off), p.left))
		f := p.cur
		if room := p.MaxPayload - len(f.Payload); room > 0 {
			start := len(f.Payload)
			f.Payload = append(f.Payload, data[off:off+min(n, room)]...)
			if f.Masked {
				ws.Cipher(f.Payload[start:], f.Mask, int(p.read))
			}
		}
		p.read += int64(n)
		p.left -= int64(n)
		off += n
		f.End = at(off - 1)
		if p.left == 0 {
			p.emit()
		}
	}
	p.consumed += int64(len(data))
	return nil
}

// header decodes a frame header from p.hdr plus data; it returns the
// bytes of data it used.
func (p *Parser) header(data []byte, base int, at Clock) (int, error) {
	prev := len(p.hdr)
	if prev == 0 {
		p.hdrStart = at(base)
	}
	take := min(ws.MaxHeaderSize-prev, len(data))
	buf := append(p.hdr, data[:take]...)
	h, err := ws.ReadHeaderBuffer(bytes.NewReader(buf), p.hbuf[:ws.MaxHeaderSize-2])
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		p.hdr = buf
		return take, nil
	}
	if err == nil && (h.OpCode.IsReserved() || (h.OpCode.IsControl() && (h.Length > 125 || !h.Fin))) {
		err = fmt.Errorf("invalid %s frame (opcode %#x, length %d, fin %v)", opName(h.OpCode), byte(h.OpCode), h.Length, h.Fin)
	}
	if err != nil {
		return take, &HeaderError{Offset: p.consumed + int64(base), Err: err}
	}
	used := wireHeaderSize(buf) - prev
	p.hdr = p.hdr[:0]
	p.cur = &Frame{Header: h, Start: p.hdrStart, End: at(base + used - 1)}
	if h.Length <= preallocMax {
		// Room for the whole payload at once: one that comes in many
		// segments is not copied again at each.
		p.cur.Payload = make([]byte, 0, min(int(h.Length), p.MaxPayload))
	}
	p.left, p.read = h.Length, 0
	if h.Length == 0 {
		p.emit()
	}
	return used, nil
}

// wireHeaderSize is the size of the header at the start of b as encoded,
// which need not be the minimal encoding ws.HeaderSize assumes.
func wireHeaderSize(b []byte) int {
	n := 2
	if b[1]&0x80 != 0 {
		n += 4
	}
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

func (p *Parser) emit() {
	f := p.cur
	p.cur = nil
	p.done(f)
}

// Gap tells the parser n bytes were lost at ts. Inside a payload they are
// counted and skipped; in a header the parser has lost its place.
func (p *Parser) Gap(n int64, ts time.Duration) {
	p.consumed += n
	if p.lost {
		return
	}
	if p.cur != nil && len(p.hdr) == 0 && n < p.left {
		p.cur.Lost += n
		p.read += n
		p.left -= n
		return
	}
	if p.cur != nil && n == p.left {
		p.cur.Lost += n
		p.cur.End = ts
		p.left = 0
		p.emit()
		return
	}
	p.End(ts)
	p.lost = true
}

// End tells the parser the stream ended at ts; a frame in progress is
// reported as incomplete.
func (p *Parser) End(ts time.Duration) {
	if p.cur != nil {
		p.cur.Incomplete = true
		p.cur.End = max(p.cur.End, p.cur.Start)
		p.emit()
	}
	p.hdr = p.hdr[:0]
}

func opName(op ws.OpCode) string {
	switch op {
	case ws.OpContinuation:
		return "continuation"
	case ws.OpText:
		return "text"
	case ws.OpBinary:
		return "binary"
	case ws.OpClose:
		return "close"
	case ws.OpPing:
		return "ping"
	case ws.OpPong:
		return "pong"
	}
	return "reserved"
}
