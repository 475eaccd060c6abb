package tracetest

import (
	"bytes"

	"github.com/hubreplay/hubreplay/trace"
)

// Encode writes a trace into memory, as a file would hold it, and returns
// its bytes.
func Encode(h trace.Header, opts *trace.WriterOptions, recs []trace.Record) ([]byte, error) {
	var buf bytes.Buffer
	w, err := trace.NewWriter(&buf, h, opts)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			w.Close()
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
