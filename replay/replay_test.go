package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/fixtures"
	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

const ms = time.Millisecond

const user = "u-1a2b3c4d"

// session is one user's recorded session (record numbers in comments: the
// header is 1): the route added; JupyterLab's requests on a keep-alive
// connection; a kernel WebSocket; a download the client walked away from;
// a request it gave up on (after another on the same connection); a laptop that vanished (RST); the route deleted.
func session() (trace.Header, []trace.Record) {
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Date(2026, 11, 3, 15, 50, 0, 0, time.UTC), Source: "test"}
	u := "/user/" + user
	get := func(ts time.Duration, conn trace.ConnID, target string, status int, size int64, serverTime time.Duration) *trace.HTTP {
		return &trace.HTTP{TS: ts, Conn: conn, User: user, Req: trace.Request{End: ts, Method: "GET", Target: target, Proto: "HTTP/1.1",
			Headers: []trace.Field{{"Host", "hub.example"}, {"Referer", "https://hub.example" + u + "/lab"}, {"Cookie", "jupyterhub-user-" + user + "=[redacted]"}}},
			Resp: &trace.Response{Start: ts + serverTime, End: ts + serverTime + ms, Status: status, Proto: "HTTP/1.1", BodySize: size,
				Headers: []trace.Field{{"Content-Type", "application/json"}, {"Content-Length", itoa(size)}}}}
	}
	frame := func(ts time.Duration, dir trace.Dir, op trace.Opcode, n int64) *trace.WSFrame {
		return &trace.WSFrame{TS: ts, Conn: 2, Dir: dir, Op: op, Fin: true, Len: n, Masked: dir == trace.ClientToServer}
	}
	upgrade := &trace.HTTP{TS: 400 * ms, Conn: 2, User: user, Upgrade: true,
		Req: trace.Request{End: 400 * ms, Method: "GET", Target: u + "/api/kernels/k/channels?session_id=s1",
			Headers: []trace.Field{{"Host", "hub.example"}, {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"},
				{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"Sec-WebSocket-Extensions", "permessage-deflate"}, {"Sec-WebSocket-Protocol", "v1.kernel.websocket.jupyter.org"}}},
		Resp: &trace.Response{Start: 410 * ms, End: 410 * ms, Status: 101, Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"},
			{"Sec-WebSocket-Protocol", "v1.kernel.websocket.jupyter.org"}}}}
	clientClose := frame(880*ms, trace.ClientToServer, trace.OpClose, 2)
	clientClose.CloseCode = 1000
	serverClose := frame(890*ms, trace.ServerToClient, trace.OpClose, 2)
	serverClose.CloseCode = 1000
	download := get(1000*ms, 3, u+"/files/big.csv", 200, 3<<20, 5*ms)
	download.Resp.Incomplete, download.Resp.BodySize = true, 1<<20
	download.Resp.Headers = []trace.Field{{"Content-Length", itoa(3 << 20)}}
	gaveUp := get(1000*ms, 4, u+"/api/slow", 200, 0, 0)
	gaveUp.Resp = nil
	recs := []trace.Record{
		/* 2 */ &trace.Route{TS: 0, Op: trace.RouteAdd, Path: u + "/", Target: "http://h-0000aaaa:8888", User: user, Data: json.RawMessage(`{"user":"` + user + `","server_name":""}`)},
		/* 3 */ &trace.ConnOpen{TS: 100 * ms, Conn: 1},
		/* 4 */ get(100*ms, 1, u+"/api/contents?content=1", 200, 1234, 80*ms),
		/* 5 */ get(200*ms, 1, u+"/api/kernelspecs", 200, 100000, 5*ms),
		/* 6 */ get(300*ms, 1, u+"/api/missing", 404, 30, 1*ms),
		/* 7 */ &trace.ConnOpen{TS: 400 * ms, Conn: 2},
		/* 8 */ upgrade,
		/* 9 */ frame(500*ms, trace.ClientToServer, trace.OpText, 300),
		/* 10 */ frame(520*ms, trace.ServerToClient, trace.OpText, 150),
		/* 11 */ frame(560*ms, trace.ServerToClient, trace.OpBinary, 70000),
		/* 12 */ frame(800*ms, trace.ClientToServer, trace.OpBinary, 40),
		/* 13 */ frame(850*ms, trace.ServerToClient, trace.OpText, 90),
		/* 14 */ clientClose,
		/* 15 */ serverClose,
		/* 16 */ &trace.ConnClose{TS: 900 * ms, Conn: 2, How: trace.CloseFIN, By: trace.SideClient},
		/* 17 */ &trace.ConnClose{TS: 990 * ms, Conn: 1, How: trace.CloseFIN, By: trace.SideClient},
		/* 18 */ &trace.ConnOpen{TS: 1000 * ms, Conn: 3},
		/* 19 */ &trace.ConnOpen{TS: 1000 * ms, Conn: 4},
		/* 20 */ download,
		/* 21 */ &trace.ConnClose{TS: 1200 * ms, Conn: 3, How: trace.CloseRST, By: trace.SideClient},
		/* 22 */ get(950*ms, 4, u+"/api/status", 200, 10, ms),
		/* 23 */ gaveUp,
		/* 24 */ &trace.ConnClose{TS: 1300 * ms, Conn: 4, How: trace.CloseFIN, By: trace.SideClient},
		/* 25 */ &trace.Route{TS: 1500 * ms, Op: trace.RouteDelete, Path: u + "/", User: user},
	}
	return h, recs
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeTrace writes records to a trace file and returns its path.
func writeTrace(t testing.TB, h trace.Header, recs []trace.Record) string {
	t.Helper()
	b, err := tracetest.Encode(h, nil, recs)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "test.trace")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	return path
}

func plan(t testing.TB, path string, o replay.Options) *replay.Plan {
	t.Helper()
	r, err := trace.Open(path)
	require.NoError(t, err)
	defer r.Close()
	p, err := replay.BuildPlan(context.Background(), r, o, nil)
	require.NoError(t, err)
	return p
}

// fixturesFor starts the emulators for a trace file.
func fixturesFor(t testing.TB, path string, speed float64) (*fixtures.Index, *fixtures.Responder, *fixtures.Servers) {
	t.Helper()
	r, err := trace.Open(path)
	require.NoError(t, err)
	ix, err := fixtures.BuildIndex(context.Background(), r, nil)
	r.Close()
	require.NoError(t, err)
	resp := &fixtures.Responder{Index: ix, Speed: speed}
	srv, err := fixtures.Listen(resp, ix.Targets)
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	return ix, resp, srv
}

// memResults keeps result records in memory.
type memResults struct{ buf bytes.Buffer }

func (m *memResults) Write(r trace.Record) error {
	b, err := trace.AppendJSON(nil, r)
	m.buf.Write(b)
	return err
}

func (m *memResults) read(t testing.TB) *replay.Results {
	t.Helper()
	var file bytes.Buffer
	file.WriteString(`{"type":"header","format":"hubreplay-results","version":1,"start":"2026-11-03T15:50:00Z","source":"test","anon":{"scheme":"none"},"tool":"test"}` + "\n")
	file.Write(m.buf.Bytes())
	res, err := replay.NewResultsReader(context.Background(), &file, "results")
	require.NoError(t, err)
	return res
}

// Straight at an emulator (no proxy): every request and frame of the
// session goes out, is answered as recorded, and ends as recorded.
func TestReplayAgainstEmulator(t *testing.T) {
	h, recs := session()
	path := writeTrace(t, h, recs)
	_, resp, srv := fixturesFor(t, path, 1)
	p := plan(t, path, replay.Options{Speed: 1})
	assert.Equal(t, 7, p.Requests)
	assert.Equal(t, 1, p.Sessions)
	assert.Equal(t, 3, p.ClientFrames)
	assert.Equal(t, 4, p.ServerFrames)

	out := &memResults{}
	run := &replay.Runner{Target: srv.Target("http://h-0000aaaa:8888"), Results: out, Timeout: 5 * time.Second}
	sum, err := run.Run(context.Background(), p)
	require.NoError(t, err)
	res := out.read(t)
	require.Len(t, res.Runs, 1)
	require.Len(t, res.Ends, 1)
	require.Len(t, res.Requests, 7)
	byRecord := map[int64]*replay.Request{}
	for _, q := range res.Requests {
		byRecord[q.Record] = q
		assert.GreaterOrEqual(t, q.Sent, q.TS, "record %d went out no sooner than recorded", q.Record)
	}
	for num, want := range map[int64]struct {
		status int
		bytes  int64
	}{4: {200, 1234}, 5: {200, 100000}, 6: {404, 30}, 8: {101, 0}, 20: {200, 1 << 20}, 22: {200, 10}} {
		q := byRecord[num]
		require.NotNil(t, q, "record %d", num)
		assert.Empty(t, q.Error, "record %d: %s", num, q.Detail)
		assert.Equal(t, want.status, q.Status, "record %d", num)
		assert.Equal(t, want.bytes, q.Bytes, "record %d", num)
		assert.Equal(t, "user", q.By)
	}
	assert.GreaterOrEqual(t, byRecord[4].TTFB, 80*ms, "the recorded server time")
	assert.Zero(t, byRecord[23].Status, "nothing answered the request the client gave up on")
	assert.Empty(t, byRecord[23].Error, byRecord[23].Detail)

	require.Len(t, res.Sessions, 1)
	ses := res.Sessions[0]
	assert.True(t, ses.Connected)
	assert.Equal(t, 3, ses.Sent)
	assert.Equal(t, 4, ses.Received)
	assert.Equal(t, 4, ses.Matched)
	assert.Equal(t, replay.CloseClient, ses.Close)
	assert.Equal(t, replay.CloseClient, ses.WantClose)
	assert.Empty(t, ses.Error, "%+v", ses)
	assert.Len(t, ses.RTT, 3, "a round trip per client frame")

	assert.Equal(t, 7, sum.Requests)
	assert.Equal(t, 7, sum.OK)
	assert.EqualValues(t, 6, resp.Served.Load(), "every exchange but the upgrade, each once")
	assert.EqualValues(t, 1, resp.Sessions.Load())
	assert.EqualValues(t, 4, resp.Frames.Load())
	assert.Equal(t, sum.Requests, res.Tally().Requests, "the tally can be rebuilt from the records")
}

// fullDisk takes a few records, then fails as a full disk does.
type fullDisk struct{ left int }

func (f *fullDisk) Write(trace.Record) error {
	if f.left == 0 {
		return errors.New("write peak.results: no space left on device")
	}
	f.left--
	return nil
}

// Results that can no longer be written do not stop the replay (the proxy
// still gets the whole trace); the run says what failed.
func TestResultsWriteFailure(t *testing.T) {
	h, recs := session()
	path := writeTrace(t, h, recs)
	_, resp, srv := fixturesFor(t, path, 1e6)
	p := plan(t, path, replay.Options{Speed: 0})
	run := &replay.Runner{Target: srv.Target("http://h-0000aaaa:8888"), Results: &fullDisk{left: 3}, Timeout: 5 * time.Second}
	sum, err := run.Run(context.Background(), p)
	require.ErrorContains(t, err, "write results: write peak.results: no space left on device")
	require.NotNil(t, sum)
	assert.Equal(t, p.Requests, sum.Requests, "every request was still replayed")
	assert.EqualValues(t, p.Requests-p.Sessions, resp.Served.Load())
}

// A download the recording's client took half a second over is read at
// that pace even from a server that sends it all at once: a slow reader,
// as a student on Wi-Fi is to the proxy.
func TestSlowReaderKeepsRecordedPace(t *testing.T) {
	const size = 1 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(trace.RecordHeader, r.Header.Get(trace.RecordHeader))
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(make([]byte, size))
	}))
	defer srv.Close()
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Unix(0, 0).UTC()}
	recs := []trace.Record{
		&trace.ConnOpen{TS: 0, Conn: 1},
		&trace.HTTP{TS: 0, Conn: 1, Req: trace.Request{Method: "GET", Target: "/hub/static/big.js"},
			Resp: &trace.Response{Start: 10 * ms, End: 510 * ms, Status: 200, BodySize: size}},
		&trace.ConnClose{TS: 600 * ms, Conn: 1, How: trace.CloseFIN, By: trace.SideClient},
	}
	out := &memResults{}
	sum, err := (&replay.Runner{Target: srv.URL, Results: out}).Run(context.Background(), plan(t, writeTrace(t, h, recs), replay.Options{Speed: 1}))
	require.NoError(t, err)
	require.Equal(t, 1, sum.OK, "%v", sum.Errors)
	q := out.read(t).Requests[0]
	assert.EqualValues(t, size, q.Bytes)
	assert.GreaterOrEqual(t, q.TTLB, 480*ms, "read over the recorded half second")
}

// lateStub is a route driver that made no route and says, as the hub stub
// does when it woke late, that the routes of the users in late were not in
// place in time by its own fault.
type lateStub struct{ late string }

func (lateStub) Prime(context.Context) error                { return nil }
func (lateStub) Run(ctx context.Context, _ time.Time) error { <-ctx.Done(); return nil }
func (s lateStub) LateAdd(path string, _ time.Duration, _ time.Time) (time.Duration, bool) {
	return 300 * ms, s.late != "" && strings.HasPrefix(path, s.late)
}

// A request the proxy had no route for is the harness's lateness when the
// route driver says it woke late for the route's add, and the proxy's
// missing route when it does not.
func TestLateRouteAddIsTheHarnesses(t *testing.T) {
	h, recs := session()
	path := writeTrace(t, h, recs)
	_, _, srv := fixturesFor(t, path, 1)
	for _, tc := range []struct {
		name, late, want string
	}{
		{"stub woke late", "/user/", replay.ErrLateForRoute},
		{"stub on time", "", replay.ErrRouteMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := plan(t, path, replay.Options{Speed: 4})
			out := &memResults{}
			// Straight at the hub's emulator: like a proxy with no routes.
			run := &replay.Runner{Target: srv.Hub(), Results: out, Routes: lateStub{late: tc.late}, Timeout: 5 * time.Second}
			_, err := run.Run(context.Background(), p)
			require.NoError(t, err)
			got := map[string]int{}
			for _, q := range out.read(t).Requests {
				got[q.Error]++
			}
			assert.Positive(t, got[tc.want], "%v", got)
			assert.Zero(t, got[replay.ErrRouteMissing]+got[replay.ErrLateForRoute]-got[tc.want], "every user request the hub got is classed alike: %v", got)
		})
	}
}

// Laptops that went to sleep mid-answer (the recording: no reset, no
// close, the client quiet while the server went on until it gave up) are
// replayed asleep: the client reads what the recording got, then nothing,
// and holds its connections open for --vanish-hold before it resets them.
// Their servers go on meanwhile, into buffers nobody reads.
func TestSilentClientHoldsItsConnection(t *testing.T) {
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Date(2026, 11, 3, 15, 50, 0, 0, time.UTC), Source: "test"}
	u := "/user/" + user
	recs := []trace.Record{
		&trace.Route{TS: 0, Op: trace.RouteAdd, Path: u + "/", Target: "http://h-0000aaaa:8888", User: user},
		&trace.ConnOpen{TS: 10 * ms, Conn: 1, Client: "c-1:40000", Server: "s-1:8000"},
		&trace.HTTP{TS: 20 * ms, Conn: 1, User: user, Req: trace.Request{End: 20 * ms, Method: "GET", Target: u + "/files/data/big.csv"},
			Resp: &trace.Response{Start: 30 * ms, End: 130 * ms, Status: 200, BodySize: 1 << 20, Incomplete: true,
				Headers: []trace.Field{{"Content-Length", itoa(64 << 20)}}}},
		&trace.ConnClose{TS: 2500 * ms, Conn: 1, How: trace.CloseRST, By: trace.SideServer, Quiet: 131 * ms},
		&trace.ConnOpen{TS: 10 * ms, Conn: 2, Client: "c-1:40001", Server: "s-1:8000"},
		&trace.HTTP{TS: 20 * ms, Conn: 2, User: user, Upgrade: true,
			Req:  trace.Request{End: 20 * ms, Method: "GET", Target: u + "/api/kernels/k/channels", Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}}},
			Resp: &trace.Response{Start: 25 * ms, End: 25 * ms, Status: 101, Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}}},
		&trace.WSFrame{TS: 30 * ms, Conn: 2, Dir: trace.ClientToServer, Op: trace.OpText, Fin: true, Masked: true, Len: 100},
	}
	for i := range 5 {
		recs = append(recs, &trace.WSFrame{TS: 40*ms + time.Duration(i)*20*ms, Conn: 2, Dir: trace.ServerToClient, Op: trace.OpText, Fin: true, Len: 4096})
	}
	recs = append(recs, &trace.ConnClose{TS: 2500 * ms, Conn: 2, How: trace.CloseRST, By: trace.SideServer, Quiet: 130 * ms})
	path := writeTrace(t, h, recs)
	_, resp, srv := fixturesFor(t, path, 1)
	resp.Tail = time.Minute
	p := plan(t, path, replay.Options{Speed: 1, VanishHold: 700 * ms})
	assert.Equal(t, 2, p.Vanished, "both clients vanished")

	out := &memResults{}
	run := &replay.Runner{Target: srv.Target("http://h-0000aaaa:8888"), Results: out, Timeout: 5 * time.Second}
	_, err := run.Run(context.Background(), p)
	require.NoError(t, err)
	res := out.read(t)
	require.Len(t, res.Requests, 2)
	for _, q := range res.Requests {
		assert.Empty(t, q.Error, "%s: %s", q.Target, q.Detail)
		if q.Status == 200 {
			assert.Equal(t, int64(1<<20), q.Bytes, "it read what the recording got, then nothing")
		}
	}
	require.Len(t, res.Sessions, 1)
	ses := res.Sessions[0]
	assert.Equal(t, replay.CloseClientQuiet, ses.WantClose)
	assert.Equal(t, replay.CloseClientQuiet, ses.Close)
	assert.Equal(t, 5, ses.Matched, "the recorded frames, before it went quiet")

	// The servers went on into the held connections, and were cut when
	// the hold was over: the download well short of its 63 MiB to go,
	// as nobody read it.
	require.Eventually(t, func() bool { return resp.Tails.Cut.Load()+resp.Tails.Ran.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	assert.EqualValues(t, 2, resp.Tails.Started.Load())
	assert.EqualValues(t, 2, resp.Tails.Cut.Load(), "the reset at the hold's end cut them")
	assert.Less(t, resp.Tails.Bytes.Load(), int64(63<<20))
}
