package trace

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lecture writes a 10-minute capture into w, second by second: a route
// added at 5 s, a kernel WebSocket from 10 s with a frame every second, a
// short HTTP connection every 2 s, counters every 10 s. It returns the
// time of each exchange.
func lecture(t *testing.T, w RecordWriter, from, to time.Duration, exchanges *[]time.Duration) {
	t.Helper()
	for s := from; s < to; s += time.Second {
		var recs []Record
		switch s {
		case 5 * time.Second:
			recs = append(recs, &Route{TS: s, Op: RouteAdd, Path: "/user/u-1", Target: "http://10.0.0.1:8888", User: "u-1"})
		case 10 * time.Second:
			recs = append(recs, &ConnOpen{TS: s, Conn: 1},
				&HTTP{TS: s, Conn: 1, User: "u-1", Upgrade: true, Req: Request{End: s, Method: "GET", Target: "/user/u-1/api/kernels/k/channels"},
					Resp: &Response{Start: s, End: s, Status: 101}})
		}
		if s > 10*time.Second {
			recs = append(recs, &WSFrame{TS: s, Conn: 1, Dir: ServerToClient, Op: OpText, Fin: true, Len: 120})
		}
		if s%(2*time.Second) == 0 {
			c := ConnID(1000 + s/time.Second)
			recs = append(recs, &ConnOpen{TS: s, Conn: c},
				&HTTP{TS: s, Conn: c, User: "u-1", Req: Request{End: s, Method: "GET", Target: "/user/u-1/api/contents"},
					Resp: &Response{Start: s + time.Millisecond, End: s + 2*time.Millisecond, Status: 200, BodySize: 300}},
				&ConnClose{TS: s + 3*time.Millisecond, Conn: c, How: CloseFIN})
			*exchanges = append(*exchanges, s)
		}
		if s%(10*time.Second) == 0 {
			recs = append(recs, &Stats{TS: s, Packets: uint64(s / time.Millisecond), Bytes: uint64(s / time.Microsecond)})
		}
		for _, r := range recs {
			require.NoError(t, w.Write(r))
		}
	}
}

func readBack(t *testing.T, path string) (*Header, []Record) {
	t.Helper()
	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	var recs []Record
	require.NoError(t, r.Each(context.Background(), nil, func(rec Record) error { recs = append(recs, rec); return nil }), "the dump reads back whole")
	return r.Header(), recs
}

func TestRingKeepsTheLastWindow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ring")
	start := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	h := Header{Format: FormatName, Version: Version, Start: start, Source: "iface:lo"}
	ring, err := NewRing(dir, h, 2*time.Minute, nil)
	require.NoError(t, err)

	var at []time.Duration
	most := 0
	for m := time.Duration(0); m < 10*time.Minute; m += 10 * time.Second {
		lecture(t, ring, m, m+10*time.Second, &at)
		segs, _ := filepath.Glob(filepath.Join(dir, "segment-*.trace"))
		most = max(most, len(segs))
	}
	assert.LessOrEqual(t, most, 6, "the disk holds about 2m + 30s of segments, never the whole capture")

	out := filepath.Join(t.TempDir(), "dump.trace")
	res, err := ring.Dump(context.Background(), out, nil)
	require.NoError(t, err)
	hd, recs := readBack(t, out)
	assert.Equal(t, start.Add(10*time.Minute-time.Second-2*time.Minute), hd.Start, "the dump starts 2 minutes before the last record")

	var exchanges, frames int
	var routes []*Route
	var opens = map[ConnID]*ConnOpen{}
	var upgrade *HTTP
	for _, r := range recs {
		assert.GreaterOrEqual(t, r.Time(), time.Duration(0))
		assert.LessOrEqual(t, r.Time(), 2*time.Minute+3*time.Millisecond)
		switch r := r.(type) {
		case *HTTP:
			if r.Upgrade {
				upgrade = r
			} else {
				exchanges++
			}
		case *WSFrame:
			frames++
		case *Route:
			routes = append(routes, r)
		case *ConnOpen:
			opens[r.Conn] = r
		}
	}
	want := 0
	for _, s := range at {
		if s >= 10*time.Minute-time.Second-2*time.Minute {
			want++
		}
	}
	assert.Equal(t, want, exchanges, "every exchange of the last 2 minutes, and none before")
	assert.Equal(t, 121, frames, "a frame a second from 7:59 to 9:59, both ends")
	require.Len(t, routes, 1, "the route added 9 minutes before is carried in")
	assert.Equal(t, time.Duration(0), routes[0].TS)
	require.Contains(t, opens, ConnID(1), "the WebSocket opened before the window is carried in")
	assert.True(t, opens[1].Mid)
	require.NotNil(t, upgrade, "with its upgrade")
	assert.Positive(t, res.Carried)

	// It goes on recording, and a second dump holds what came after.
	lecture(t, ring, 10*time.Minute, 11*time.Minute, &at)
	out2 := filepath.Join(t.TempDir(), "dump2.trace")
	_, err = ring.Dump(context.Background(), out2, nil)
	require.NoError(t, err)
	hd2, _ := readBack(t, out2)
	assert.Equal(t, start.Add(11*time.Minute-time.Second-2*time.Minute), hd2.Start)

	require.NoError(t, ring.Close(true))
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "a clean close leaves no segments")
}

func TestRingShorterThanItsWindow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ring")
	ring, err := NewRing(dir, Header{Format: FormatName, Version: Version, Start: time.Now().UTC()}, 30*time.Minute, nil)
	require.NoError(t, err)
	_, err = ring.Dump(context.Background(), filepath.Join(t.TempDir(), "empty.trace"), nil)
	assert.ErrorContains(t, err, "nothing recorded yet")

	var at []time.Duration
	lecture(t, ring, 0, time.Minute, &at)
	out := filepath.Join(t.TempDir(), "dump.trace")
	_, err = ring.Dump(context.Background(), out, nil)
	require.NoError(t, err)
	_, recs := readBack(t, out)
	var exchanges int
	for _, r := range recs {
		if h, ok := r.(*HTTP); ok && !h.Upgrade {
			exchanges++
		}
	}
	assert.Equal(t, len(at), exchanges, "all of a capture shorter than the window")
	require.NoError(t, ring.Close(false))
	segs, _ := filepath.Glob(filepath.Join(dir, "segment-*.trace"))
	assert.NotEmpty(t, segs, "without remove, the segments stay for the operator")
	_, err = NewRing(dir, Header{}, time.Minute, nil)
	assert.ErrorContains(t, err, "segments of an earlier capture", "a new recorder does not mix them with its own")
}
