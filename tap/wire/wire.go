// Package wire carries a trace from a capture inside a pod to the
// operator's machine over the container's log stream: container logs are
// lines of text, so each write becomes one base64 line, and the reader
// turns the lines back into the bytes written.
package wire

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
)

// Writer writes each Write as one base64 line. The trace writer writes a
// frame at a time, so a line is a frame.
type Writer struct{ w io.Writer }

// NewWriter encodes onto w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

func (l *Writer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	buf := make([]byte, base64.StdEncoding.EncodedLen(len(p))+1)
	base64.StdEncoding.Encode(buf, p)
	buf[len(buf)-1] = '\n'
	if _, err := l.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// separator is the line between two traces in one stream (a flight
// recorder's dumps): not base64, so no frame can be mistaken for it.
const separator = "."

// EndTrace marks the end of a trace: what follows is another one.
func (l *Writer) EndTrace() error {
	_, err := io.WriteString(l.w, separator+"\n")
	return err
}

// Reader decodes the lines a Writer wrote back into bytes. Lines that are
// not base64 (a log line the runtime or the capture's own stderr put in
// the stream) are an error that says which line: they would be holes in
// the trace.
type Reader struct {
	r    *bufio.Reader
	buf  []byte
	line int
	err  error
	end  bool // at a separator: this trace's io.EOF, until Next
}

// Next moves past the end of one trace to the next one in the stream; it
// reports whether there is one.
func (l *Reader) Next() bool {
	if !l.end {
		return false
	}
	l.end = false
	_, err := l.r.Peek(1)
	return err == nil
}

// NewReader decodes r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 1<<20)} }

func (l *Reader) Read(p []byte) (int, error) {
	for len(l.buf) == 0 {
		if l.end {
			return 0, io.EOF
		}
		if l.err != nil {
			return 0, l.err
		}
		line, err := l.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a line longer than the buffer: a big frame
			long := append([]byte(nil), line...) // ReadSlice's next call reuses line
			for err == bufio.ErrBufferFull {
				line, err = l.r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			l.err = err
			if err == io.EOF && len(line) > 0 {
				// A last line cut short: the stream ended mid-frame.
				l.err = io.ErrUnexpectedEOF
			}
			continue
		}
		l.line++
		text := line[:len(line)-1]
		if len(text) > 0 && text[len(text)-1] == '\r' {
			text = text[:len(text)-1]
		}
		if len(text) == 0 {
			continue
		}
		if string(text) == separator {
			l.end = true
			continue
		}
		dec := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
		n, derr := base64.StdEncoding.Decode(dec, text)
		if derr != nil {
			l.err = fmt.Errorf("line %d of the stream is not the trace (%.60q): %w", l.line, text, derr)
			return 0, l.err
		}
		l.buf = dec[:n]
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}
