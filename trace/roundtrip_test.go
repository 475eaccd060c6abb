package trace_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

var testHeader = trace.Header{
	Format:  trace.FormatName,
	Version: trace.Version,
	Start:   time.Date(2026, 11, 3, 15, 50, 0, 123456789, time.UTC),
	Source:  "pcap:peak.pcap",
	Anon:    trace.Anonymization{Scheme: "hmac-sha256/v1"},
	Tool:    "hubreplay test",
	Note:    "lecture peak, hall B",
}

// oneOfEach holds a record of every type, with every field set, including
// the awkward values: bytes that are not UTF-8, quotes and newlines in
// strings, a response that never came.
func oneOfEach() []trace.Record {
	return []trace.Record{
		&trace.ConnOpen{TS: 5 * time.Millisecond, Conn: 1, Client: "c-7f3a:50012", Server: "s-01:8000"},
		&trace.ConnOpen{TS: 6 * time.Millisecond, Conn: 2, Client: "c-11aa:50013", Server: "s-01:8000", Mid: true},
		&trace.HTTP{TS: 7 * time.Millisecond, Conn: 1, User: "u-3c9d1e",
			Req: trace.Request{End: 8 * time.Millisecond, Method: "POST", Target: "/user/u-3c9d1e/api/contents/a%20b.ipynb?x=\"y\"",
				Proto: "HTTP/1.1", Headers: []trace.Field{{"Host", "hub"}, {"Cookie", "[redacted]"}, {"Cookie", "[redacted]"}},
				BodySize: 5, Body: []byte{0xff, 0x00, '\n', '"', 0x80}, BodyForm: trace.FormRaw},
			Resp: &trace.Response{Start: 20 * time.Millisecond, End: 21 * time.Millisecond, Status: 201, Reason: "Created",
				Proto: "HTTP/1.1", Headers: []trace.Field{{"Content-Type", "application/json"}}, BodySize: 1 << 20,
				Body: []byte(`{"a":1}`), BodyForm: trace.FormRedacted}},
		&trace.HTTP{TS: 30 * time.Millisecond, Conn: 2, Upgrade: true,
			Req: trace.Request{End: 30 * time.Millisecond, Method: "GET", Target: "/user/u-3c9d1e/api/kernels/k1/channels"}},
		&trace.WSFrame{TS: 40 * time.Millisecond, Conn: 2, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true,
			RSV: 4, Masked: true, Len: 312, Payload: []byte("{\"header\":{\"msg_type\":\"execute_request\"}}\n"),
			Form: trace.FormRedacted, MsgType: "execute_request", Channel: "shell"},
		&trace.WSFrame{TS: 41 * time.Millisecond, Conn: 2, Dir: trace.ServerToClient, Op: trace.OpClose, Fin: true, Len: 2, CloseCode: 1001},
		&trace.Route{TS: 50 * time.Millisecond, Op: trace.RouteAdd, Path: "/user/u-3c9d1e/", Target: "http://10.0.0.9:8888",
			User: "u-3c9d1e", Data: json.RawMessage(`{"user":"u-3c9d1e","last_activity":"2026-11-03T15:50:00Z"}`)},
		&trace.Route{TS: 51 * time.Millisecond, Op: trace.RouteDelete, Path: "/user/u-3c9d1e/"},
		&trace.Gap{TS: 60 * time.Millisecond, Conn: 2, Dir: trace.ServerToClient, Bytes: 1448},
		&trace.Stats{TS: time.Second, Packets: 1e6, Bytes: 1 << 30, Drops: map[string]uint64{"kernel": 3, "snaplen": 1}},
		&trace.ConnClose{TS: 2 * time.Second, Conn: 1, How: trace.CloseRST, By: trace.SideClient},
		&trace.ConnClose{TS: 3 * time.Second, Conn: 2, How: trace.CloseCaptureEnd},
		&trace.Unknown{TypeName: "x_future", TS: 4 * time.Second, Raw: json.RawMessage(`{"type":"x_future","ts":4000000000,"k":[1,2]}`)},
	}
}

// tb is what both *testing.T and *rapid.T give the helpers.
type tb interface {
	require.TestingT
	Helper()
}

// writeAll writes a trace into memory and returns its bytes.
func writeAll(t tb, h trace.Header, opts *trace.WriterOptions, recs []trace.Record) []byte {
	t.Helper()
	b, err := tracetest.Encode(h, opts, recs)
	require.NoError(t, err)
	return b
}

// readAll reads every record of a trace, the header first, and the error
// that ended the reading (nil at a clean end).
func readAll(t tb, data []byte) ([]trace.Record, error) {
	t.Helper()
	r, err := trace.NewReader(bytes.NewReader(data), "mem.trace")
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var recs []trace.Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
}

func TestRoundTripEveryType(t *testing.T) {
	recs := oneOfEach()
	seen := map[trace.Type]bool{}
	for _, r := range recs {
		seen[r.Type()] = true
	}
	for _, typ := range []trace.Type{trace.TypeConnOpen, trace.TypeConnClose, trace.TypeHTTP, trace.TypeWSFrame,
		trace.TypeRoute, trace.TypeGap, trace.TypeStats} {
		require.True(t, seen[typ], "oneOfEach lacks a %s record", typ)
	}

	for _, opts := range []*trace.WriterOptions{nil, {FlushRecords: 1}, {FlushRecords: 3}} {
		data := writeAll(t, testHeader, opts, recs)
		got, err := readAll(t, data)
		require.NoError(t, err)
		h := testHeader
		assert.Equal(t, append([]trace.Record{&h}, recs...), got)
	}
}

func TestWriterFillsHeaderDefaults(t *testing.T) {
	before := time.Now()
	data := writeAll(t, trace.Header{Source: "test"}, nil, nil)
	got, err := readAll(t, data)
	require.NoError(t, err)
	require.Len(t, got, 1)
	h := got[0].(*trace.Header)
	assert.Equal(t, trace.FormatName, h.Format)
	assert.Equal(t, trace.Version, h.Version)
	assert.Equal(t, "test", h.Source)
	assert.Contains(t, h.Tool, "hubreplay")
	assert.False(t, h.Start.Before(before.Add(-time.Second)), "start %v is before the writer was made (%v)", h.Start, before)
	assert.Equal(t, time.UTC, h.Start.Location())
}

func TestWriterRejectsSecondHeader(t *testing.T) {
	w, err := trace.NewWriter(io.Discard, testHeader, nil)
	require.NoError(t, err)
	h := testHeader
	assert.Error(t, w.Write(&h))
	require.NoError(t, w.Close())
	assert.Error(t, w.Write(&trace.Gap{}), "write after close")
}

// A record that cannot be encoded is refused without spoiling the trace.
func TestWriterRefusesBadRecordAndGoesOn(t *testing.T) {
	var buf bytes.Buffer
	w, err := trace.NewWriter(&buf, testHeader, nil)
	require.NoError(t, err)
	require.Error(t, w.Write(&trace.Route{Op: trace.RouteAdd, Path: "/", Data: json.RawMessage(`{not json`)}))
	require.NoError(t, w.Write(&trace.Gap{TS: 1, Conn: 1, Dir: trace.ClientToServer, Bytes: 10}))
	require.NoError(t, w.Close())
	got, err := readAll(t, buf.Bytes())
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, &trace.Gap{TS: 1, Conn: 1, Dir: trace.ClientToServer, Bytes: 10}, got[1])
}

// Property: any header and any records, cut into frames any way, read
// back equal and in order.
func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := tracetest.Header.Draw(rt, "header")
		recs := rapid.SliceOfN(tracetest.Record, 0, 60).Draw(rt, "records")
		opts := &trace.WriterOptions{
			FlushRecords: rapid.IntRange(1, 70).Draw(rt, "flush_records"),
			FlushBytes:   rapid.IntRange(1, 1<<16).Draw(rt, "flush_bytes"),
		}
		data := writeAll(rt, *h, opts, recs)
		got, err := readAll(rt, data)
		require.NoError(rt, err)
		require.Equal(rt, append([]trace.Record{h}, recs...), got)
	})
}

// Property: the codec alone round-trips one line, and the line is one line.
func TestCodecProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		rec := tracetest.Record.Draw(rt, "record")
		line, err := trace.AppendJSON(nil, rec)
		require.NoError(rt, err)
		require.Equal(rt, 1, bytes.Count(line, []byte{'\n'}))
		require.True(rt, bytes.HasPrefix(line, []byte(`{"type":"`+string(rec.Type())+`"`)), "line %s", line)
		got, err := trace.ParseJSON(bytes.TrimSuffix(line, []byte{'\n'}))
		require.NoError(rt, err)
		require.Equal(rt, rec, got)
	})
}

func TestParseJSONErrors(t *testing.T) {
	_, err := trace.ParseJSON([]byte(`{"ts":1}`))
	assert.ErrorIs(t, err, trace.ErrNoType)
	_, err = trace.ParseJSON([]byte(`{"type":"http","ts":"soon"}`))
	assert.ErrorContains(t, err, "http record")
	_, err = trace.ParseJSON([]byte(`[1,2]`))
	assert.Error(t, err)
	// The type need not come first in hand-written lines.
	rec, err := trace.ParseJSON([]byte(`{"ts":5,"conn":3,"dir":"c2s","bytes":7,"type":"gap"}`))
	require.NoError(t, err)
	assert.Equal(t, &trace.Gap{TS: 5, Conn: 3, Dir: trace.ClientToServer, Bytes: 7}, rec)
}

func TestDamageErrorIsOneLine(t *testing.T) {
	data := writeAll(t, testHeader, &trace.WriterOptions{FlushRecords: 2}, oneOfEach())
	_, err := readAll(t, data[:len(data)-10])
	var de *trace.DamageError
	require.True(t, errors.As(err, &de), "got %v", err)
	assert.NotContains(t, err.Error(), "\n")
	assert.Contains(t, err.Error(), "mem.trace: trace truncated at byte")
}

// Writers are shared by capture goroutines: concurrent writes with the
// flush timer firing in between lose and duplicate nothing.
func TestConcurrentWrites(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex // the buffer is written under the writer's lock; the reads below come after Close
	w, err := trace.NewWriter(&lockedWriter{&mu, &buf}, testHeader, &trace.WriterOptions{FlushRecords: 7, FlushInterval: time.Millisecond})
	require.NoError(t, err)
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				assert.NoError(t, w.Write(&trace.Gap{TS: time.Duration(i), Conn: trace.ConnID(g), Dir: trace.ClientToServer, Bytes: int64(i)}))
				if i%100 == 0 {
					time.Sleep(2 * time.Millisecond) // let the timer flush a partial frame
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, w.Close())
	assert.Equal(t, uint64(1+writers*each), w.Records())

	got, err := readAll(t, buf.Bytes())
	require.NoError(t, err)
	require.Len(t, got, 1+writers*each)
	next := make([]int64, writers) // per writer, records come back in the order written
	for _, r := range got[1:] {
		g := r.(*trace.Gap)
		require.Equal(t, next[g.Conn], g.Bytes, "writer %d", g.Conn)
		next[g.Conn]++
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestEach(t *testing.T) {
	data := writeAll(t, testHeader, nil, oneOfEach())
	open := func() *trace.Reader {
		r, err := trace.NewReader(bytes.NewReader(data), "mem.trace")
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		return r
	}

	var n int
	require.NoError(t, open().Each(context.Background(), nil, func(trace.Record) error { n++; return nil }))
	assert.Equal(t, 1+len(oneOfEach()), n, "every record, the header first")

	stop := errors.New("enough")
	n = 0
	err := open().Each(context.Background(), nil, func(trace.Record) error { n++; return stop })
	assert.ErrorIs(t, err, stop)
	assert.Equal(t, 1, n, "fn's error ends the walk")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = open().Each(ctx, nil, func(trace.Record) error { t.Fatal("called after cancel"); return nil })
	assert.ErrorIs(t, err, context.Canceled)

	var offsets []int64
	require.NoError(t, open().Each(context.Background(), func(off int64) { offsets = append(offsets, off) }, func(trace.Record) error { return nil }))
	assert.NotEmpty(t, offsets, "progress is reported")

	// A damaged trace: every record before the damage, then the damage.
	r, err := trace.NewReader(bytes.NewReader(data[:len(data)-10]), "cut.trace")
	require.NoError(t, err)
	defer r.Close()
	n = 0
	err = r.Each(context.Background(), nil, func(trace.Record) error { n++; return nil })
	var de *trace.DamageError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, de.Records, uint64(n))
}
