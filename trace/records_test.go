package trace_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/fixtures/lecturepeak"
	"github.com/hubreplay/hubreplay/trace"
)

// A trace read once into memory gives what a Reader gives, record for
// record and in the same order (the record numbers replay and the
// fixtures agree on), header first; its compacted copies read the same.
func TestReadWholeGivesWhatTheReaderGives(t *testing.T) {
	recs := append(oneOfEach(), oneOfEach()...)
	data := writeAll(t, testHeader, nil, recs)
	want, err := readAll(t, data)
	require.NoError(t, err)

	r, err := trace.NewReader(bytes.NewReader(data), "mem")
	require.NoError(t, err)
	all, err := trace.ReadWindow(context.Background(), r, trace.Window{}, nil)
	require.NoError(t, err)
	assert.Equal(t, testHeader.Note, all.Header().Note)
	var got []trace.Record
	var offsets []int64
	require.NoError(t, all.EachNumbered(context.Background(), func(off int64) { offsets = append(offsets, off) }, func(n int64, rec trace.Record) error {
		got = append(got, rec)
		assert.Equal(t, int64(len(got)), n, "numbered from the header's 1")
		return nil
	}))
	require.Equal(t, len(want), all.Len(), "the records and the header")
	assert.IsType(t, &trace.Header{}, got[0])
	assert.Equal(t, want, got)
	assert.Equal(t, []int64{0}, offsets, "progress from the start")

	// Twice: the records are there to be gone through again.
	n := 0
	require.NoError(t, all.EachNumbered(context.Background(), nil, func(int64, trace.Record) error { n++; return nil }))
	assert.Equal(t, all.Len(), n)

	stop := errors.New("stop")
	assert.ErrorIs(t, all.EachNumbered(context.Background(), nil, func(int64, trace.Record) error { return stop }), stop)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, all.EachNumbered(ctx, nil, func(int64, trace.Record) error { return nil }), context.Canceled)
}

// A window keeps the exchanges and frames that begin in it, the upgrades
// before it, and every record of another kind, each under the number it
// has in the whole trace; an empty window keeps everything.
func TestReadWindowKeepsTheWindowAndTheNumbers(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	get := func(ts time.Duration, upgrade bool) *trace.HTTP {
		return &trace.HTTP{TS: ts, Conn: 1, Upgrade: upgrade, Req: trace.Request{End: ts, Method: "GET", Target: "/x"}}
	}
	recs := []trace.Record{
		&trace.ConnOpen{TS: ms(1), Conn: 1}, // 2
		get(ms(2), true),                    // 3: an upgrade before the window
		&trace.WSFrame{TS: ms(3), Conn: 1, Dir: trace.ServerToClient}, // 4
		get(ms(4), false), // 5
		&trace.Route{TS: ms(5), Op: trace.RouteAdd, Path: "/user/a/"}, // 6
		get(ms(10), false), // 7: in the window
		&trace.WSFrame{TS: ms(11), Conn: 1, Dir: trace.ClientToServer}, // 8: in
		get(ms(20), false), // 9: at its end, out
		&trace.WSFrame{TS: ms(21), Conn: 1, Dir: trace.ServerToClient},           // 10
		&trace.ConnClose{TS: ms(30), Conn: 1, How: trace.CloseFIN, By: "client"}, // 11
	}
	data := writeAll(t, testHeader, nil, recs)
	read := func(win trace.Window) map[int64]trace.Record {
		r, err := trace.NewReader(bytes.NewReader(data), "mem")
		require.NoError(t, err)
		rs, err := trace.ReadWindow(context.Background(), r, win, nil)
		require.NoError(t, err)
		got := map[int64]trace.Record{}
		require.NoError(t, rs.EachNumbered(context.Background(), nil, func(n int64, rec trace.Record) error {
			got[n] = rec
			return nil
		}))
		assert.Equal(t, len(got), rs.Len())
		return got
	}
	got := read(trace.Window{From: ms(10), To: ms(20)})
	assert.ElementsMatch(t, []int64{1, 2, 3, 6, 7, 8, 11}, slices.Collect(maps.Keys(got)))
	for n, rec := range got {
		if n > 1 {
			assert.Equal(t, recs[n-2], rec, "record %d under its own number", n)
		}
	}
	assert.Len(t, read(trace.Window{}), len(recs)+1, "no window: everything")
	assert.ElementsMatch(t, []int64{1, 2, 3, 6, 7, 8, 9, 10, 11}, slices.Collect(maps.Keys(read(trace.Window{From: ms(10)}))), "from a time to the end")
}

// A damaged trace is an error, not the part before the damage passed off
// as the whole.
func TestReadWindowOfADamagedTrace(t *testing.T) {
	data := writeAll(t, testHeader, &trace.WriterOptions{FlushRecords: 2}, oneOfEach())
	r, err := trace.NewReader(bytes.NewReader(data[:len(data)*2/3]), "cut.trace")
	require.NoError(t, err)
	_, err = trace.ReadWindow(context.Background(), r, trace.Window{}, nil)
	var de *trace.DamageError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Truncated)
}

// A window of a long trace holds about the window, not the trace: what
// lets `--from/--to` replay an hour of a day-long recording. Two hours of
// a small lecture, read whole and as a 15-minute window: an eighth of it,
// plus what the window's connections need from before it.
func TestAWindowOfALongTraceHoldsTheWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("two hours of trace: not in -short")
	}
	h, recs := lecturepeak.Generate(lecturepeak.Options{Users: 6, Duration: 2 * time.Hour, Seed: 5})
	path := filepath.Join(t.TempDir(), "long.trace")
	w, err := trace.Create(path, h, nil)
	require.NoError(t, err)
	for _, rec := range recs {
		require.NoError(t, w.Write(rec))
	}
	require.NoError(t, w.Close())
	recs = nil

	held := func(win trace.Window) int {
		r, err := trace.Open(path)
		require.NoError(t, err)
		defer r.Close()
		rs, err := trace.ReadWindow(context.Background(), r, win, nil)
		require.NoError(t, err)
		return rs.Len()
	}
	all := held(trace.Window{})
	some := held(trace.Window{From: time.Hour, To: time.Hour + 15*time.Minute})
	t.Logf("whole: %d records; 15 minutes of it: %d", all, some)
	assert.Less(t, some, all/5, "records held for an eighth of the trace")
}

// SetConn renumbers exactly the records Conn says belong to a connection
// (capture's merger numbers its workers' connections with it).
func TestSetConnRenumbersWhatConnReads(t *testing.T) {
	belong := map[trace.Type]bool{}
	for _, rec := range oneOfEach() {
		_, has := trace.Conn(rec)
		assert.Equal(t, has, trace.SetConn(rec, 4242), "%T", rec)
		if id, ok := trace.Conn(rec); ok {
			belong[rec.Type()] = true
			assert.Equal(t, trace.ConnID(4242), id, "%T", rec)
		}
	}
	assert.Len(t, belong, 5, "conn_open, conn_close, http, ws_frame, gap: %v", belong)
}
