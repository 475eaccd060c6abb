package tracetest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/hubreplay/hubreplay/trace"
)

// SampleOptions shape a sample session.
type SampleOptions struct {
	Seed     uint64
	Users    int           // default 20
	Duration time.Duration // default 10 minutes; at least 2 minutes
	Start    time.Time     // default 2026-11-03 15:50 UTC, a Tuesday lecture
}

// Sample makes a small, plausible JupyterHub session as a capture would
// record it: users log in, the hub adds their routes, JupyterLab loads,
// kernels talk over WebSockets, some clients vanish with a reset, the
// culler deletes routes, the capture loses a few bytes once and reports
// its counters every ten seconds. The same options give the same trace.
//
// It is test data for the trace format, not the lecture-peak generator
// (that is the fixtures package's job).
func Sample(o SampleOptions) (trace.Header, []trace.Record) {
	if o.Users <= 0 {
		o.Users = 20
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Minute
	}
	o.Duration = max(o.Duration, 2*time.Minute) // room for a login and a lab load
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 11, 3, 15, 50, 0, 0, time.UTC)
	}
	g := &sampler{rng: rand.New(rand.NewPCG(o.Seed, 0x6875627265706c61)), end: o.Duration}
	for range o.Users {
		g.user()
	}
	g.gap()
	for ts := 10 * time.Second; ts <= o.Duration; ts += 10 * time.Second {
		n := uint64(g.rng.IntN(2000)) + 500
		g.packets += n
		g.bytes += n * 600
		g.add(&trace.Stats{TS: ts, Packets: g.packets, Bytes: g.bytes, Drops: map[string]uint64{"kernel": 0}})
	}
	// A capture writes records as they complete; a sample is simply sorted
	// by start time, with a stable order for equal times.
	slices.SortStableFunc(g.recs, func(a, b trace.Record) int { return cmp.Compare(a.Time(), b.Time()) })
	h := trace.Header{
		Format: trace.FormatName, Version: trace.Version, Start: o.Start.UTC(),
		Source: fmt.Sprintf("sample:seed=%d,users=%d,duration=%s", o.Seed, o.Users, o.Duration),
		Anon:   trace.Anonymization{Scheme: "sample/v1"},
	}
	return h, g.recs
}

type sampler struct {
	rng            *rand.Rand
	end            time.Duration
	recs           []trace.Record
	nextConn       trace.ConnID
	packets, bytes uint64
	wsConns        []trace.ConnID
}

func (g *sampler) add(r trace.Record) { g.recs = append(g.recs, r) }

func (g *sampler) ms(lo, hi int) time.Duration {
	return time.Duration(lo+g.rng.IntN(hi-lo+1)) * time.Millisecond
}

func (g *sampler) open(ts time.Duration) trace.ConnID {
	g.nextConn++
	c := g.nextConn
	g.add(&trace.ConnOpen{TS: ts, Conn: c, Client: fmt.Sprintf("c-%04x:%d", g.rng.IntN(1<<16), 40000+g.rng.IntN(20000)), Server: "s-proxy:8000"})
	return c
}

// exchange records one request/response and returns when it ended.
func (g *sampler) exchange(c trace.ConnID, ts time.Duration, user, method, target string, status int, size int64) time.Duration {
	reqEnd := ts + g.ms(0, 2)
	respStart := reqEnd + g.ms(2, 120)
	respEnd := respStart + time.Duration(size/50_000)*time.Millisecond + g.ms(0, 5)
	h := &trace.HTTP{TS: ts, Conn: c, User: user,
		Req: trace.Request{End: reqEnd, Method: method, Target: target, Proto: "HTTP/1.1",
			Headers: []trace.Field{{"Host", "hub.example"}, {"Cookie", "[redacted]"}}},
		Resp: &trace.Response{Start: respStart, End: respEnd, Status: status, Proto: "HTTP/1.1",
			Headers: []trace.Field{{"Content-Type", "text/html"}}, BodySize: size}}
	if method == "POST" || method == "PUT" {
		h.Req.BodySize = int64(100 + g.rng.IntN(4000))
	}
	g.add(h)
	return respEnd
}

func (g *sampler) user() {
	user := fmt.Sprintf("u-%06x", g.rng.IntN(1<<24))
	home := "/user/" + user + "/"
	login := time.Duration(g.rng.Int64N(int64(g.end / 5)))

	// Browsing: hub pages, spawn, JupyterLab and its API on one keep-alive connection.
	c := g.open(login)
	t := g.exchange(c, login+g.ms(1, 5), "", "GET", "/hub/login", 200, 4200)
	t = g.exchange(c, t+g.ms(500, 4000), "", "POST", "/hub/login?next=%2Fhub%2F", 302, 0)
	t = g.exchange(c, t+g.ms(5, 50), user, "GET", "/hub/spawn/"+user, 302, 0)
	spawned := t + g.ms(1500, 8000)
	g.add(&trace.Route{TS: spawned, Op: trace.RouteAdd, Path: home, Target: fmt.Sprintf("http://10.0.%d.%d:8888", g.rng.IntN(8), 2+g.rng.IntN(250)),
		User: user, Data: json.RawMessage(fmt.Sprintf(`{"user":%q,"server_name":""}`, user))})
	if g.rng.IntN(10) == 0 {
		// The proxy answered before the route arrived: the 503s operators know.
		g.exchange(c, spawned-g.ms(200, 900), user, "GET", home+"lab", 503, 900)
	}
	t = g.exchange(c, spawned+g.ms(20, 200), user, "GET", home+"lab", 200, 31_000)
	for _, asset := range []string{"static/lab/main.js", "static/lab/vendor.js", "static/lab/style.css", "api/settings", "api/kernelspecs"} {
		status, size := 200, int64(2_000+g.rng.IntN(2_000_000))
		if g.rng.IntN(3) == 0 {
			status, size = 304, 0
		}
		t = g.exchange(c, t+g.ms(1, 30), user, "GET", home+asset, status, size)
	}
	t = g.exchange(c, t+g.ms(50, 500), user, "POST", home+"api/sessions", 201, 600)
	if g.rng.IntN(8) == 0 {
		t = g.exchange(c, t+g.ms(50, 500), user, "GET", home+"api/contents/missing.ipynb", 404, 120)
	}

	// The kernel's WebSocket.
	ws := g.open(t + g.ms(5, 100))
	kernel := fmt.Sprintf("%08x-k", g.rng.Uint32())
	up := t + g.ms(110, 200)
	g.add(&trace.HTTP{TS: up, Conn: ws, User: user, Upgrade: true,
		Req: trace.Request{End: up, Method: "GET", Target: home + "api/kernels/" + kernel + "/channels?session_id=s1", Proto: "HTTP/1.1",
			Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}}},
		Resp: &trace.Response{Start: up + g.ms(3, 30), End: up + g.ms(31, 40), Status: 101, Reason: "Switching Protocols", Proto: "HTTP/1.1",
			Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}}})
	leave := login + time.Duration(float64(g.end-login)*(0.6+0.4*g.rng.Float64()))
	at := up + time.Second
	for at < leave {
		g.frame(ws, at, trace.ClientToServer, "execute_request", "shell", 300+g.rng.IntN(3000))
		at += g.ms(1, 20)
		g.frame(ws, at, trace.ServerToClient, "status", "iopub", 250)
		for range g.rng.IntN(6) {
			at += g.ms(5, 3000)
			g.frame(ws, at, trace.ServerToClient, "stream", "iopub", 200+g.rng.IntN(20_000))
		}
		at += g.ms(1, 200)
		g.frame(ws, at, trace.ServerToClient, "execute_reply", "shell", 400)
		g.frame(ws, at+g.ms(0, 2), trace.ServerToClient, "status", "iopub", 250)
		if g.rng.IntN(4) == 0 {
			g.add(&trace.WSFrame{TS: at + g.ms(5, 50), Conn: ws, Dir: trace.ClientToServer, Op: trace.OpPing, Fin: true, Masked: true})
			g.add(&trace.WSFrame{TS: at + g.ms(51, 60), Conn: ws, Dir: trace.ServerToClient, Op: trace.OpPong, Fin: true})
		}
		at += g.ms(5_000, 60_000)
	}
	leave = min(max(leave, at-g.ms(1000, 4000)), g.end)
	switch {
	case leave >= g.end:
		// Still working when the capture stopped.
		g.add(&trace.ConnClose{TS: g.end, Conn: ws, How: trace.CloseCaptureEnd})
		g.add(&trace.ConnClose{TS: g.end, Conn: c, How: trace.CloseCaptureEnd})
		return
	case g.rng.IntN(5) == 0:
		// The laptop lid closed: no close frame, a reset (or nothing) much later.
		g.add(&trace.ConnClose{TS: leave, Conn: ws, How: trace.CloseRST, By: trace.SideClient})
	default:
		g.add(&trace.WSFrame{TS: leave, Conn: ws, Dir: trace.ClientToServer, Op: trace.OpClose, Fin: true, Masked: true, Len: 2, CloseCode: 1001})
		g.add(&trace.WSFrame{TS: leave + g.ms(1, 5), Conn: ws, Dir: trace.ServerToClient, Op: trace.OpClose, Fin: true, Len: 2, CloseCode: 1001})
		g.add(&trace.ConnClose{TS: leave + g.ms(6, 10), Conn: ws, How: trace.CloseFIN, By: trace.SideServer})
	}
	g.add(&trace.ConnClose{TS: leave + g.ms(10, 20), Conn: c, How: trace.CloseFIN, By: trace.SideClient})
	if cull := leave + g.ms(30_000, 120_000); cull < g.end {
		g.add(&trace.Route{TS: cull, Op: trace.RouteDelete, Path: home, User: user})
	}
}

func (g *sampler) frame(c trace.ConnID, ts time.Duration, dir trace.Dir, msgType, channel string, size int) {
	if ts >= g.end {
		return
	}
	g.wsConns = append(g.wsConns, c)
	g.add(&trace.WSFrame{TS: ts, Conn: c, Dir: dir, Op: trace.OpText, Fin: true, Masked: dir == trace.ClientToServer,
		Len: int64(size), MsgType: msgType, Channel: channel})
}

// gap: the capture lost a segment of one busy WebSocket once.
func (g *sampler) gap() {
	if len(g.wsConns) == 0 {
		return
	}
	var frames []*trace.WSFrame
	for _, r := range g.recs {
		if f, ok := r.(*trace.WSFrame); ok && f.Conn == g.wsConns[len(g.wsConns)/2] && f.Dir == trace.ServerToClient && f.Op == trace.OpText {
			frames = append(frames, f)
		}
	}
	var ws *trace.WSFrame
	if len(frames) > 0 {
		ws = frames[len(frames)/2] // in the middle of the conversation, not after its close
	}
	if ws != nil {
		g.add(&trace.Gap{TS: ws.TS + time.Millisecond, Conn: ws.Conn, Dir: trace.ServerToClient, Bytes: 1448})
	}
}
