package trace_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

// benchSession is a sample session large enough to measure: about 60k
// records, mostly WebSocket frames, as a lecture's traffic is.
func benchSession(b *testing.B) (trace.Header, []trace.Record) {
	b.Helper()
	return tracetest.Sample(tracetest.SampleOptions{Seed: 1, Users: 300, Duration: 30 * time.Minute})
}

// jsonBytes is the size of the records as JSON lines, uncompressed.
func jsonBytes(b *testing.B, h trace.Header, recs []trace.Record) int {
	b.Helper()
	n := 0
	line, err := trace.AppendJSON(nil, &h)
	if err != nil {
		b.Fatal(err)
	}
	n += len(line)
	for _, r := range recs {
		if line, err = trace.AppendJSON(line[:0], r); err != nil {
			b.Fatal(err)
		}
		n += len(line)
	}
	return n
}

func reportTrace(b *testing.B, records, jsonSize, fileSize int) {
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(jsonSize)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(jsonSize)/float64(records), "json-B/record")
	b.ReportMetric(float64(fileSize)/float64(records), "file-B/record")
	b.ReportMetric(0, "ns/op") // per-op time of a whole trace says little; the rates above do
}

func BenchmarkWrite(b *testing.B) {
	for _, lvl := range []struct {
		name  string
		level zstd.EncoderLevel
	}{{"fastest", zstd.SpeedFastest}, {"default", zstd.SpeedDefault}, {"better", zstd.SpeedBetterCompression}} {
		b.Run(lvl.name, func(b *testing.B) {
			h, recs := benchSession(b)
			size := jsonBytes(b, h, recs)
			var file int
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				cw := &countingWriter{}
				encode(b, cw, h, recs, &trace.WriterOptions{Level: lvl.level})
				file = cw.n
			}
			reportTrace(b, len(recs)+1, size, file)
		})
	}
}

func BenchmarkRead(b *testing.B) {
	h, recs := benchSession(b)
	size := jsonBytes(b, h, recs)
	var buf bytes.Buffer
	encode(b, &buf, h, recs, nil)
	data := buf.Bytes()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := trace.NewReader(bytes.NewReader(data), "bench")
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			n++
		}
		r.Close()
		if n != len(recs)+1 {
			b.Fatalf("read %d records, wrote %d", n, len(recs)+1)
		}
	}
	reportTrace(b, len(recs)+1, size, len(data))
}

func encode(b *testing.B, out io.Writer, h trace.Header, recs []trace.Record, opts *trace.WriterOptions) {
	w, err := trace.NewWriter(out, h, opts)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }
