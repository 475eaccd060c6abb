package trace_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

type collect struct {
	header trace.Header
	recs   []trace.Record
	starts int
}

func (c *collect) start(h trace.Header) (trace.RecordWriter, error) {
	c.header = h
	c.starts++
	return c, nil
}

func (c *collect) Write(r trace.Record) error {
	c.recs = append(c.recs, r)
	return nil
}

func slice(t *testing.T, data []byte, win trace.Window) (*collect, trace.SliceResult, error) {
	t.Helper()
	r, err := trace.NewReader(bytes.NewReader(data), "mem.trace")
	require.NoError(t, err)
	defer r.Close()
	c := &collect{}
	res, err := trace.Slice(context.Background(), r, win, c.start, nil)
	return c, res, err
}

const s = time.Second

func TestSliceCarriesStateAndRebases(t *testing.T) {
	upgrade := &trace.HTTP{TS: 2 * s, Conn: 1, Upgrade: true, User: "a",
		Req:  trace.Request{End: 2 * s, Method: "GET", Target: "/user/a/api/kernels/k/channels"},
		Resp: &trace.Response{Start: 2*s + 10, End: 2*s + 20, Status: 101}}
	in := []trace.Record{
		&trace.ConnOpen{TS: 1 * s, Conn: 1, Client: "c-1:1"},
		&trace.Route{TS: 1 * s, Op: trace.RouteAdd, Path: "/user/a/", Target: "http://a"},
		upgrade,
		&trace.Route{TS: 2 * s, Op: trace.RouteAdd, Path: "/user/b/", Target: "http://b"},
		&trace.WSFrame{TS: 3 * s, Conn: 1, Dir: trace.ServerToClient, Op: trace.OpText, Fin: true, Len: 10},
		&trace.ConnOpen{TS: 3 * s, Conn: 9},
		&trace.ConnClose{TS: 4 * s, Conn: 9, How: trace.CloseFIN},
		&trace.Route{TS: 4 * s, Op: trace.RouteDelete, Path: "/user/b/"},
		&trace.Stats{TS: 4 * s, Packets: 100, Bytes: 1000, Drops: map[string]uint64{"kernel": 2}},
		&trace.WSFrame{TS: 6 * s, Conn: 1, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Len: 20, MsgType: "execute_request"},
		&trace.ConnOpen{TS: 7 * s, Conn: 2},
		&trace.HTTP{TS: 7 * s, Conn: 2, Req: trace.Request{End: 7 * s, Method: "GET", Target: "/hub/"},
			Resp: &trace.Response{Start: 7*s + 5, End: 7*s + 6, Status: 200}},
		&trace.ConnClose{TS: 8 * s, Conn: 2, How: trace.CloseRST},
		&trace.Stats{TS: 8 * s, Packets: 150, Bytes: 1600, Drops: map[string]uint64{"kernel": 5}},
		&trace.ConnOpen{TS: 9 * s, Conn: 3},
		&trace.WSFrame{TS: 12 * s, Conn: 1, Dir: trace.ServerToClient, Op: trace.OpText, Fin: true, Len: 30},
		&trace.ConnClose{TS: 13 * s, Conn: 1, How: trace.CloseFIN},
	}
	c, res, err := slice(t, writeAll(t, testHeader, nil, in), trace.Window{From: 5 * s, To: 10 * s})
	require.NoError(t, err)
	assert.Equal(t, 1, c.starts)

	assert.Equal(t, testHeader.Start.Add(5*s), c.header.Start)
	assert.Contains(t, c.header.Note, "slice [+5s, +10s)")
	assert.Equal(t, testHeader.Source, c.header.Source)

	carriedUpgrade := *upgrade
	carriedUpgrade.TS, carriedUpgrade.Req.End = 0, 0
	carriedUpgrade.Resp = &trace.Response{Status: 101}
	want := []trace.Record{
		// The state at +5s: conn 1 open and a WebSocket, route /user/a/ in the table.
		&trace.ConnOpen{TS: 0, Conn: 1, Client: "c-1:1", Mid: true},
		&carriedUpgrade,
		&trace.Route{TS: 0, Op: trace.RouteAdd, Path: "/user/a/", Target: "http://a"},
		// The window, rebased.
		&trace.WSFrame{TS: 1 * s, Conn: 1, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Len: 20, MsgType: "execute_request"},
		&trace.ConnOpen{TS: 2 * s, Conn: 2},
		&trace.HTTP{TS: 2 * s, Conn: 2, Req: trace.Request{End: 2 * s, Method: "GET", Target: "/hub/"},
			Resp: &trace.Response{Start: 2*s + 5, End: 2*s + 6, Status: 200}},
		&trace.ConnClose{TS: 3 * s, Conn: 2, How: trace.CloseRST},
		&trace.Stats{TS: 3 * s, Packets: 50, Bytes: 600, Drops: map[string]uint64{"kernel": 3}},
		&trace.ConnOpen{TS: 4 * s, Conn: 3},
		// Still open at +10s.
		&trace.ConnClose{TS: 5 * s, Conn: 1, How: trace.CloseCaptureEnd},
		&trace.ConnClose{TS: 5 * s, Conn: 3, How: trace.CloseCaptureEnd},
	}
	assert.Equal(t, want, c.recs)
	assert.Equal(t, trace.SliceResult{Header: c.header, Records: uint64(len(want)), Carried: 3, Closed: 2}, res)
	assert.Equal(t, upgrade.TS, 2*s, "the source records are not changed")
}

// A slice of a sample session is a trace in its own right: every
// connection it uses is opened in it and closed in it, and it holds the
// window's frames, no more, no fewer.
func TestSliceOfSampleStandsAlone(t *testing.T) {
	h, recs := tracetest.Sample(tracetest.SampleOptions{Seed: 3, Users: 15, Duration: 10 * time.Minute})
	win := trace.Window{From: 3 * time.Minute, To: 7 * time.Minute}
	c, _, err := slice(t, writeAll(t, h, nil, recs), win)
	require.NoError(t, err)

	var wantFrames int
	for _, r := range recs {
		if f, ok := r.(*trace.WSFrame); ok && f.TS >= win.From && f.TS < win.To {
			wantFrames++
		}
	}
	opened, closed := map[trace.ConnID]bool{}, map[trace.ConnID]bool{}
	routes := map[string]bool{}
	var frames int
	for _, r := range c.recs {
		require.GreaterOrEqual(t, r.Time(), time.Duration(0))
		require.LessOrEqual(t, r.Time(), win.To-win.From)
		switch r := r.(type) {
		case *trace.ConnOpen:
			opened[r.Conn] = true
		case *trace.ConnClose:
			require.True(t, opened[r.Conn], "conn %d closed but never opened", r.Conn)
			closed[r.Conn] = true
		case *trace.WSFrame:
			require.True(t, opened[r.Conn] && !closed[r.Conn], "frame on conn %d outside its life", r.Conn)
			frames++
		case *trace.HTTP:
			require.True(t, opened[r.Conn] && !closed[r.Conn], "exchange on conn %d outside its life", r.Conn)
		case *trace.Route:
			if r.Op == trace.RouteAdd {
				routes[r.Path] = true
			} else {
				require.True(t, routes[r.Path], "route %s deleted but never added", r.Path)
			}
		}
	}
	assert.Equal(t, wantFrames, frames)
	assert.Equal(t, opened, closed, "every connection opened in the slice is closed in it")
	assert.NotEmpty(t, routes)
}

func TestSliceEmptyWindowCreatesNothing(t *testing.T) {
	c, _, err := slice(t, writeAll(t, testHeader, nil, oneOfEach()), trace.Window{From: time.Hour, To: 2 * time.Hour})
	require.ErrorContains(t, err, "no records in [+1h0m0s, +2h0m0s)")
	assert.Equal(t, 0, c.starts)

	_, _, err = slice(t, writeAll(t, testHeader, nil, oneOfEach()), trace.Window{From: 2 * s, To: 1 * s})
	require.ErrorContains(t, err, "ends")
}

// A damaged source: the slice keeps what was readable and says why it stopped.
func TestSliceOfDamagedTrace(t *testing.T) {
	data, _, counts := framedTrace(t, oneOfEach(), 5, 8)
	c, _, err := slice(t, data[:len(data)-40], trace.Window{From: 0, To: time.Hour})
	var de *trace.DamageError
	require.True(t, errors.As(err, &de), "%v", err)
	require.Len(t, c.recs, counts[1]-1+2, "the readable records, plus closes for the two connections left open")
	assert.Equal(t, oneOfEach()[:counts[1]-1], c.recs[:counts[1]-1])
}

func TestParseWhen(t *testing.T) {
	start := time.Date(2026, 11, 3, 14, 50, 30, 0, time.UTC) // 15:50:30 in Berlin
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	for _, c := range []struct {
		in   string
		loc  *time.Location
		want time.Duration
	}{
		{"+10m", time.UTC, 10 * time.Minute},
		{"10m", time.UTC, 10 * time.Minute},
		{"1h5m30s", time.UTC, time.Hour + 5*time.Minute + 30*time.Second},
		{"0s", time.UTC, 0},
		{"15:55", berlin, 4*time.Minute + 30*time.Second},
		{"15:55:45", berlin, 5*time.Minute + 15*time.Second},
		{"16:10", berlin, 19*time.Minute + 30*time.Second},
		{"14:55", time.UTC, 4*time.Minute + 30*time.Second},
		{"15:50", berlin, 0},                                            // the start's own minute
		{"15:00", berlin, 0},                                            // shortly before the start: the start
		{"01:00", berlin, 9*time.Hour + 9*time.Minute + 30*time.Second}, // after midnight: the next day
		{"2026-11-03T16:00:30+01:00", time.UTC, 10 * time.Minute},
		{"2026-11-03T15:00:30Z", berlin, 10 * time.Minute},
	} {
		got, err := trace.ParseWhen(c.in, start, c.loc)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, "%s in %s", c.in, c.loc)
	}
	for _, bad := range []string{"", "-5m", "25:00", "15:61", "soon", "2026-11-03T14:00:00Z", "15h:00"} {
		_, err := trace.ParseWhen(bad, start, time.UTC)
		assert.Error(t, err, "%q", bad)
	}
}

// The slice's records encode like any others: a slice round-trips.
func TestSliceWritesAReadableTrace(t *testing.T) {
	h, recs := tracetest.Sample(tracetest.SampleOptions{Seed: 9, Users: 5, Duration: 5 * time.Minute})
	r, err := trace.NewReader(bytes.NewReader(writeAll(t, h, nil, recs)), "in")
	require.NoError(t, err)
	var buf bytes.Buffer
	var w *trace.Writer
	_, err = trace.Slice(context.Background(), r, trace.Window{From: time.Minute}, func(h trace.Header) (trace.RecordWriter, error) {
		w, err = trace.NewWriter(&buf, h, nil)
		return w, err
	}, nil)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	got, err := readAll(t, buf.Bytes())
	require.NoError(t, err)
	require.Greater(t, len(got), 10)
	raw, _ := json.Marshal(got[0])
	assert.Contains(t, string(raw), `"start":"2026-11-03T15:51:00Z"`)
}

// Records are in completion order: state from before the window can come
// after the window's first record (a route added just before it, recorded
// after an exchange that began inside it). It is still carried in at 0.
func TestSliceCarriesLateState(t *testing.T) {
	in := []trace.Record{
		&trace.ConnOpen{TS: 9 * s, Conn: 2},
		&trace.HTTP{TS: 10 * s, Conn: 2, Req: trace.Request{End: 10 * s, Method: "GET", Target: "/hub/home"},
			Resp: &trace.Response{Start: 10 * s, End: 10 * s, Status: 200}},
		&trace.Route{TS: 9*s + 900*time.Millisecond, Op: trace.RouteAdd, Path: "/user/a/", Target: "http://a"},
		&trace.ConnOpen{TS: 9*s + 950*time.Millisecond, Conn: 3},
		&trace.HTTP{TS: 11 * s, Conn: 3, User: "a", Req: trace.Request{End: 11 * s, Method: "GET", Target: "/user/a/lab"},
			Resp: &trace.Response{Start: 11 * s, End: 11 * s, Status: 200}},
	}
	b, err := tracetest.Encode(trace.Header{Start: time.Unix(0, 0)}, nil, in)
	require.NoError(t, err)
	c, _, err := slice(t, b, trace.Window{From: 10 * s})
	require.NoError(t, err)
	require.NoError(t, tracetest.OrderRule(c.recs))
	var route *trace.Route
	var open3 *trace.ConnOpen
	for _, r := range c.recs {
		switch r := r.(type) {
		case *trace.Route:
			route = r
		case *trace.ConnOpen:
			if r.Conn == 3 {
				open3 = r
			}
		}
	}
	require.NotNil(t, route, "the route added 100 ms before the window is in its table")
	assert.Zero(t, route.TS)
	require.NotNil(t, open3, "the connection opened before the window is carried")
	assert.True(t, open3.Mid)
	assert.Zero(t, open3.TS)
}
