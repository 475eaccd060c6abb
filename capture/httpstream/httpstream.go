// Package httpstream parses one direction of an HTTP/1.1 connection from
// reassembled TCP bytes, fed in whatever pieces the network delivered them:
// keep-alive and pipelined messages, chunked and close-delimited bodies,
// HEAD and 1xx responses, and the switch to another protocol after a 101.
// It records what a capture needs (start line, headers in wire order, body
// size, first and last byte times) and never holds a whole body: only the
// first MaxBody bytes are kept.
package httpstream

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// Limits bound what one parser holds. Header blocks beyond MaxHeaderBytes
// are a parse error (a proxy would refuse them too).
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxBody        = 64 << 10
)

// Message is one parsed request or response.
type Message struct {
	Response bool
	// Request line.
	Method, Target string
	// Status line.
	Status int
	Reason string
	Proto  string

	Headers []trace.Field
	// BodySize counts body bytes (de-chunked) including bytes lost in
	// capture gaps; Body holds the first MaxBody of those that were seen.
	BodySize int64
	Body     []byte
	// BodyLost counts body bytes the capture lost; they are in BodySize.
	BodyLost int64

	Start, End time.Duration // first and last byte
	// Incomplete: the stream ended (or lost bytes that cannot be skipped)
	// before the message did.
	Incomplete bool
}

// Header returns the first value of the named header (case-insensitive).
func (m *Message) Header(name string) (string, bool) { return trace.HeaderValue(m.Headers, name) }

// HasToken reports whether a comma-separated header (Connection, Upgrade,
// Transfer-Encoding) lists token, in any of its lines.
func (m *Message) HasToken(name, token string) bool {
	for _, f := range m.Headers {
		if !strings.EqualFold(f[0], name) {
			continue
		}
		for v := range strings.SplitSeq(f[1], ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// WantsUpgrade reports whether a request asks to switch protocols.
func (m *Message) WantsUpgrade() bool {
	_, up := m.Header("Upgrade")
	return !m.Response && up && m.HasToken("Connection", "upgrade")
}

// Clock gives the capture time of the byte at offset off of the data
// passed to Feed.
type Clock func(off int) time.Duration

// Handler receives what a Parser finds.
type Handler interface {
	// Head is called when a message's header block is complete, before
	// its body. The message is complete only when Done is called.
	Head(m *Message)
	// Done is called when a message has ended (or, Incomplete, when the
	// stream lost it).
	Done(m *Message)
}

// State says what a parser will do with the next bytes.
type State int

const (
	StateHead     State = iota // expecting a start line
	StateBody                  // inside a body
	StatePaused                // after a request that asked to upgrade: waiting for the response
	StateSwitched              // after a 101 (or CONNECT 2xx): bytes are another protocol
	StateLost                  // bytes were lost where they cannot be skipped; looking for a start line
)

// Parser parses one direction. The zero value is not usable; see New.
type Parser struct {
	response bool
	h        Handler
	// MaxHeaderBytes and MaxBody bound memory; see the Default constants.
	MaxHeaderBytes int
	MaxBody        int

	state State
	head  []byte // partial header block
	msg   *Message

	body     bodyMode
	left     int64 // bytes left in a Content-Length body or the current chunk
	chunk    chunkState
	line     []byte // partial chunk-size or trailer line
	methods  []string
	consumed int64 // total bytes consumed, for error offsets
}

type bodyMode int

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
	bodyClose
)

type chunkState int

const (
	chunkSize    chunkState = iota // reading "1a;ext\r\n"
	chunkData                      // left bytes of data
	chunkDataEnd                   // the CRLF after data
	chunkTrailer                   // trailer lines until an empty one
)

// New returns a parser for requests (response false) or responses.
func New(response bool, h Handler) *Parser {
	return &Parser{response: response, h: h, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxBody: DefaultMaxBody}
}

// State returns the parser's state.
func (p *Parser) State() State { return p.state }

// ExpectResponse tells a response parser the method of the next request
// in FIFO order, so that it knows HEAD responses have no body. Responses
// without a known request are parsed as answers to GET.
func (p *Parser) ExpectResponse(method string) {
	if len(p.methods) >= maxMethods {
		p.methods = p.methods[1:] // answers that never came: forget the oldest
	}
	p.methods = append(p.methods, method)
}

// maxMethods bounds the requests a response parser remembers.
const maxMethods = 1024

// Resume continues a paused request parser (the upgrade was refused).
func (p *Parser) Resume() {
	if p.state == StatePaused {
		p.state = StateHead
	}
}

// SyntaxError is a malformed message; the parser goes to StateLost and
// looks for the next start line.
type SyntaxError struct {
	Offset int64 // bytes into this direction of the stream
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("malformed HTTP at byte %d of the stream: %s", e.Offset, e.Reason)
}

// Feed parses data. It returns how many bytes it consumed: all of them,
// unless the parser paused or switched protocols, in which case the rest
// belongs to what comes next. A syntax error is returned after the parser
// has moved on to StateLost; feeding may continue.
func (p *Parser) Feed(data []byte, at Clock) (int, error) {
	off := 0
	var firstErr error
	for off < len(data) {
		var n int
		var err error
		switch p.state {
		case StateHead:
			n, err = p.feedHead(data[off:], off, at)
		case StateBody:
			n, err = p.feedBody(data[off:], off, at)
		case StateLost:
			n = p.resync(data[off:], off, at)
		case StatePaused, StateSwitched:
			return off, firstErr
		}
		off += n
		p.consumed += int64(n)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			p.lose(at(max(off-1, 0)))
		}
	}
	return off, firstErr
}

// Gap tells the parser n bytes were lost at time ts. Inside a body of
// known length they are skipped and counted; anywhere else the message
// is lost and the parser looks for the next start line.
func (p *Parser) Gap(n int64, ts time.Duration) {
	p.consumed += n
	if p.state == StateBody && p.msg != nil {
		switch {
		case p.body == bodyLength && n < p.left:
			p.left -= n
			p.msg.BodySize += n
			p.msg.BodyLost += n
			return
		case p.body == bodyClose:
			p.msg.BodySize += n
			p.msg.BodyLost += n
			return
		case p.body == bodyChunked && p.chunk == chunkData && n < p.left:
			p.left -= n
			p.msg.BodySize += n
			p.msg.BodyLost += n
			return
		}
	}
	if p.state == StatePaused || p.state == StateSwitched {
		return
	}
	p.lose(ts)
}

// End tells the parser the stream ended at ts: a close-delimited body
// is complete, anything else in progress is incomplete.
func (p *Parser) End(ts time.Duration) {
	if p.msg == nil {
		return
	}
	m := p.msg
	p.msg = nil
	// A close-delimited body is complete at the close; its last byte is
	// the last one seen, not the FIN.
	m.Incomplete = !(p.state == StateBody && p.body == bodyClose)
	if m.End == 0 {
		m.End = max(m.Start, ts)
	}
	p.h.Done(m)
	p.state = StateHead
}

// lose drops the message in progress (as incomplete) and resynchronises.
func (p *Parser) lose(ts time.Duration) {
	if p.msg != nil {
		m := p.msg
		p.msg = nil
		m.Incomplete = true
		if m.End == 0 {
			m.End = max(m.Start, ts)
		}
		p.h.Done(m)
	}
	p.releaseHead()
	p.line = p.line[:0]
	p.state = StateLost
}

// resync skips bytes until the start of a line that looks like a start
// line, then parses again from there.
func (p *Parser) resync(data []byte, base int, at Clock) int {
	for i := 0; i < len(data); i++ {
		if i > 0 && data[i-1] != '\n' {
			continue
		}
		rest := data[i:]
		if len(rest) < 9 {
			// Too short to tell: keep it as the start of a head, the
			// head parser fails cleanly if it is not one.
			if looksLikeStart(rest, p.response, true) {
				p.state = StateHead
				return i
			}
			continue
		}
		if looksLikeStart(rest, p.response, false) {
			p.state = StateHead
			return i
		}
	}
	return len(data)
}

var methods = []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

func looksLikeStart(b []byte, response, partial bool) bool {
	cands := methods
	if response {
		cands = []string{"HTTP/1."}
	}
	for _, c := range cands {
		if partial {
			if len(b) < len(c) && bytes.HasPrefix([]byte(c), b) {
				return true
			}
		}
		if bytes.HasPrefix(b, []byte(c)) {
			return true
		}
	}
	return false
}

func (p *Parser) syntax(off int, format string, args ...any) error {
	return &SyntaxError{Offset: p.consumed + int64(off), Reason: fmt.Sprintf(format, args...)}
}

// feedHead accumulates a header block and parses it when complete.
func (p *Parser) feedHead(data []byte, base int, at Clock) (int, error) {
	if len(p.head) == 0 {
		// Tolerate blank lines between messages (RFC 9112 §2.2).
		skip := 0
		for skip < len(data) && (data[skip] == '\r' || data[skip] == '\n') {
			skip++
		}
		if skip > 0 {
			return skip, nil
		}
		p.msg = &Message{Response: p.response, Start: at(base)}
	}
	// Find the end of the header block, which may straddle feeds. Only a
	// block that does straddle is copied: a connection keeps no more than
	// its unfinished header between feeds.
	prev := len(p.head)
	var block []byte
	used := -1
	if prev == 0 {
		if end := headerEnd(data, 0); end >= 0 {
			block, used = data[:end], end
		}
	} else {
		p.head = append(p.head, data...)
		if end := headerEnd(p.head, max(prev-3, 0)); end >= 0 {
			block, used = p.head[:end], end-prev
		}
	}
	if block == nil {
		if prev == 0 {
			p.head = append(p.head, data...)
		}
		if len(p.head) > p.MaxHeaderBytes {
			p.releaseHead()
			return len(data), p.syntax(0, "header block longer than %d bytes", p.MaxHeaderBytes)
		}
		return len(data), nil
	}
	m := p.msg
	m.End = at(base + used - 1)
	err := p.parseHead(m, block)
	p.releaseHead()
	if err != nil {
		return used, err
	}
	if err := p.startBody(m); err != nil {
		return used, err
	}
	return used, nil
}

// releaseHead empties the header buffer, and lets a big one go: thousands
// of idle keep-alive connections must not each hold a large buffer.
func (p *Parser) releaseHead() {
	p.head = p.head[:0]
	if cap(p.head) > 4<<10 {
		p.head = nil
	}
}

// headerEnd returns the index just past the blank line ending a header
// block, or -1. Bare LF line ends are accepted.
func headerEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

func (p *Parser) parseHead(m *Message, block []byte) error {
	lines := strings.Split(strings.TrimRight(string(block), "\r\n"), "\n")
	start := strings.TrimSuffix(lines[0], "\r")
	if p.response {
		proto, rest, ok := strings.Cut(start, " ")
		if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
			return p.syntax(0, "bad status line %.40q", start)
		}
		code, reason, _ := strings.Cut(rest, " ")
		st, err := strconv.Atoi(code)
		if err != nil || len(code) != 3 || st < 100 {
			return p.syntax(0, "bad status code %.10q", code)
		}
		m.Proto, m.Status, m.Reason = proto, st, reason
	} else {
		method, rest, ok1 := strings.Cut(start, " ")
		target, proto, ok2 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || method == "" || target == "" || !strings.HasPrefix(proto, "HTTP/1.") || !isToken(method) {
			return p.syntax(0, "bad request line %.60q", start)
		}
		m.Method, m.Target, m.Proto = method, target, proto
	}
	m.Headers = make([]trace.Field, 0, len(lines)-1)
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(m.Headers) > 0 {
			// Obsolete line folding: join to the previous value.
			last := &m.Headers[len(m.Headers)-1]
			last[1] += " " + strings.TrimSpace(l)
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || !isToken(name) {
			return p.syntax(0, "bad header line %.40q", l)
		}
		m.Headers = append(m.Headers, trace.Field{name, strings.TrimSpace(value)})
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return s != ""
}

// startBody decides how the body is delimited (RFC 9112 §6.3) and hands
// the head to the handler.
func (p *Parser) startBody(m *Message) error {
	p.h.Head(m)
	p.body = bodyNone
	switch {
	case p.response:
		method := "GET"
		if m.Status >= 200 || m.Status == 101 {
			// A final response (or a switch) answers the oldest request; 1xx do not.
			if len(p.methods) > 0 {
				method = p.methods[0]
				p.methods = p.methods[1:]
			}
		}
		switch {
		case m.Status == 101 || (method == "CONNECT" && m.Status/100 == 2):
			p.finish(m)
			p.state = StateSwitched
			return nil
		case m.Status < 200 || m.Status == 204 || m.Status == 304 || method == "HEAD":
			p.finish(m)
			return nil
		}
		if err := p.framing(m, bodyClose); err != nil {
			return err
		}
	default:
		// A request without a length has no body (RFC 9112 §6.3).
		if err := p.framing(m, bodyNone); err != nil {
			return err
		}
	}
	if p.body == bodyLength && p.left == 0 {
		p.body = bodyNone
	}
	if p.body == bodyNone {
		p.finish(m)
		if !p.response && m.WantsUpgrade() {
			p.state = StatePaused
		}
		return nil
	}
	p.state = StateBody
	return nil
}

// framing reads how a message's body is delimited: chunked, by length, or
// (without either) as otherwise says.
func (p *Parser) framing(m *Message, otherwise bodyMode) error {
	if m.HasToken("Transfer-Encoding", "chunked") {
		p.body, p.chunk = bodyChunked, chunkSize
		return nil
	}
	cl, ok := m.Header("Content-Length")
	if !ok {
		p.body = otherwise
		return nil
	}
	n, err := parseLength(cl)
	if err != nil {
		return p.syntax(0, "bad Content-Length %.20q", cl)
	}
	p.body, p.left = bodyLength, n
	return nil
}

func parseLength(s string) (int64, error) {
	// Repeated identical values ("12, 12") are allowed (RFC 9110 §8.6).
	first, _, _ := strings.Cut(s, ",")
	n, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("bad length")
	}
	return n, nil
}

func (p *Parser) finish(m *Message) {
	p.msg = nil
	p.state = StateHead
	p.h.Done(m)
}

func (p *Parser) keep(m *Message, b []byte) {
	if room := p.MaxBody - len(m.Body); room > 0 {
		if m.Body == nil && p.body == bodyLength {
			// The whole of what is kept, at once: a body in many segments is
			// not copied again at each (MaxBody bounds it).
			m.Body = make([]byte, 0, int(min(int64(room), p.left)))
		}
		m.Body = append(m.Body, b[:min(room, len(b))]...)
	}
}

func (p *Parser) feedBody(data []byte, base int, at Clock) (int, error) {
	m := p.msg
	switch p.body {
	case bodyClose:
		p.keep(m, data)
		m.BodySize += int64(len(data))
		m.End = at(base + len(data) - 1)
		return len(data), nil
	case bodyLength:
		n := int(min(int64(len(data)), p.left))
		p.keep(m, data[:n])
		m.BodySize += int64(n)
		p.left -= int64(n)
		m.End = at(base + n - 1)
		if p.left == 0 {
			p.finish(m)
		}
		return n, nil
	}
	return p.feedChunked(m, data, base, at)
}

func (p *Parser) feedChunked(m *Message, data []byte, base int, at Clock) (int, error) {
	off := 0
	for off < len(data) && p.msg != nil {
		switch p.chunk {
		case chunkSize, chunkTrailer:
			i := bytes.IndexByte(data[off:], '\n')
			if i < 0 {
				p.line = append(p.line, data[off:]...)
				if len(p.line) > 4096 {
					return len(data), p.syntax(off, "chunk line longer than 4096 bytes")
				}
				return len(data), nil
			}
			line := append(p.line, data[off:off+i]...)
			p.line = line[:0]
			off += i + 1
			m.End = at(base + off - 1)
			l := strings.TrimSpace(string(line))
			if p.chunk == chunkTrailer {
				if l == "" {
					p.finish(m)
				}
				continue
			}
			hex, _, _ := strings.Cut(l, ";")
			size, err := strconv.ParseInt(strings.TrimSpace(hex), 16, 64)
			if err != nil || size < 0 {
				return off, p.syntax(off, "bad chunk size %.20q", l)
			}
			if size == 0 {
				p.chunk = chunkTrailer
			} else {
				p.chunk, p.left = chunkData, size
			}
		case chunkData:
			n := int(min(int64(len(data)-off), p.left))
			p.keep(m, data[off:off+n])
			m.BodySize += int64(n)
			p.left -= int64(n)
			off += n
			m.End = at(base + off - 1)
			if p.left == 0 {
				p.chunk = chunkDataEnd
			}
		case chunkDataEnd:
			c := data[off]
			off++
			if c == '\n' {
				p.chunk = chunkSize
			} else if c != '\r' {
				return off, p.syntax(off-1, "no CRLF after chunk data")
			}
		}
	}
	return off, nil
}
