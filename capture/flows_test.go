package capture

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// mixedTraffic is users' connections interleaved packet by packet: HTTP
// exchanges (some answers in many segments), kernel WebSockets, reloads
// that close a connection (FIN or RST) and open the next one from the
// same client port, segments lost and reordered, the hub's route calls on
// the API port, quiet spells that let the capture give up on a lost
// segment at a flush, and connections still open at the end.
func mixedTraffic(t testing.TB, seed uint64, users, events int) []pkt {
	rng := rand.New(rand.NewPCG(seed, seed))
	now := epoch
	type user struct {
		http, ws *tcpConn
		port     uint16
	}
	var out []pkt
	ws101 := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	open := func(u int, port uint16, kind string) *tcpConn {
		k := newTCPConn(t, &now, byte(u%250+2), port)
		out = append(out, k.handshake()...)
		if kind == "ws" {
			out = append(out, k.send(true, fmt.Sprintf("GET /user/u%d/api/kernels/k%d/channels HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", u, u), 1448)...)
			out = append(out, k.send(false, ws101, 1448)...)
		}
		return k
	}
	frame := func(masked bool, payload string) string {
		f := ws.NewTextFrame([]byte(payload))
		if masked {
			f = ws.MaskFrameWith(f, [4]byte{1, 2, 3, 4})
		}
		var sb strings.Builder
		_ = ws.WriteFrame(&sb, f)
		return sb.String()
	}
	us := make([]*user, users)
	for i := range us {
		port := uint16(30000 + 2*i)
		us[i] = &user{http: open(i, port, "http"), ws: open(i, port+1, "ws"), port: port}
	}
	hub := newTCPConn(t, &now, 1, 45000)
	hub.sport = 8001
	out = append(out, hub.handshake()...)
	for range events {
		i := rng.IntN(len(us))
		u := us[i]
		var ps []pkt
		switch r := rng.IntN(100); {
		case r < 40:
			size := []int{0, 90, 2500, 9000, 40000}[rng.IntN(5)]
			ps = append(u.http.send(true, fmt.Sprintf("GET /user/u%d/api/contents/nb%d.ipynb HTTP/1.1\r\nHost: hub\r\n\r\n", i, rng.IntN(9)), 1448),
				u.http.send(false, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"+strings.Repeat("x", size), 1448)...)
			if len(ps) > 4 && rng.IntN(8) == 0 {
				lost := 2 + rng.IntN(len(ps)-3)
				ps = append(ps[:lost], ps[lost+1:]...) // a gap, given up on at a flush
			} else if len(ps) > 3 && rng.IntN(4) == 0 {
				ps[1], ps[2] = ps[2], ps[1] // reordered on the way
			}
		case r < 85:
			ps = append(u.ws.send(true, frame(true, fmt.Sprintf(`{"msg_type":"execute_request","n":%d}`, rng.IntN(1e6))), 1448),
				u.ws.send(false, frame(false, strings.Repeat("o", rng.IntN(3000)))+frame(false, `{"msg_type":"status"}`), 1448)...)
		case r < 92:
			body := fmt.Sprintf(`{"user":"u%d","target":"http://10.42.0.%d:8888"}`, i, i%250)
			ps = append(hub.send(true, fmt.Sprintf("POST /api/routes/user/u%d HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body), 1448),
				hub.send(false, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 1448)...)
			if rng.IntN(2) == 0 {
				ps = append(ps, hub.send(true, fmt.Sprintf("DELETE /api/routes/user/u%d HTTP/1.1\r\n\r\n", i), 1448)...)
				ps = append(ps, hub.send(false, "HTTP/1.1 204 No Content\r\n\r\n", 1448)...)
			}
		case r < 98: // a reload: the same ports again
			ps = []pkt{u.http.fin(true), u.http.fin(false), u.ws.rst(true)}
			out = append(out, ps...)
			u.http, u.ws = open(i, u.port, "http"), open(i, u.port+1, "ws")
			continue
		default:
			now = now.Add(4 * time.Second) // quiet: past FlushAfter
			continue
		}
		out = append(out, ps...)
	}
	return out
}

// sameTrace says whether two captures of the same packets wrote the same
// trace: the same records on each connection in the same order, the
// connections numbered alike, and the records of no connection (route
// events, stats) in the same order. Only the order between connections'
// records closed out by one flush may differ: gopacket's flush visits
// connections in a map's order, one worker or many.
func sameTrace(t *testing.T, want, got []trace.Record) {
	t.Helper()
	split := func(recs []trace.Record) (map[trace.ConnID][]string, []string) {
		conns := map[trace.ConnID][]string{}
		var rest []string
		for _, r := range recs {
			line, err := trace.AppendJSON(nil, r)
			require.NoError(t, err)
			if id, ok := trace.Conn(r); ok {
				conns[id] = append(conns[id], string(line))
			} else {
				rest = append(rest, string(line))
			}
		}
		return conns, rest
	}
	wantConns, wantRest := split(want)
	gotConns, gotRest := split(got)
	assert.Len(t, got, len(want), "records")
	assert.Equal(t, wantRest, gotRest, "route events and stats")
	assert.Len(t, gotConns, len(wantConns), "connections")
	for id, recs := range wantConns {
		if !assert.Equal(t, recs, gotConns[id], "connection %d", id) {
			return
		}
	}
}

// Spread over workers by flow, a capture writes the trace one worker
// writes: the same records on each connection, in the same order, the
// connections numbered in the order they opened.
func TestWorkersWriteTheTraceOneWorkerWrites(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			pkts := mixedTraffic(t, seed, 40, 3000)
			o := Options{APIPorts: []uint16{8001}}
			o.Workers = 1
			one, c1 := runPackets(t, pkts, o)
			require.NotZero(t, c1.Gaps, "the traffic loses segments")
			require.NotZero(t, c1.Routes)
			require.NotZero(t, c1.Frames)
			how := map[trace.CloseHow]int{}
			for _, c := range ofType[*trace.ConnClose](one.recs) {
				how[c.How]++
			}
			require.NotZero(t, how[trace.CloseCaptureEnd], "connections open at the end")
			require.NotZero(t, how[trace.CloseFIN], "reloads close connections whose ports open again")
			require.NotZero(t, how[trace.CloseRST])
			for _, n := range []int{2, 3, 7} {
				o.Workers = n
				many, c := runPackets(t, pkts, o)
				t.Run(fmt.Sprint(n, " workers"), func(t *testing.T) {
					sameTrace(t, one.recs, many.recs)
					c.Records, c1.Records = 0, 0 // counted as the writer returns: the same once both end
					assert.Equal(t, c1, c)
				})
			}
		})
	}
}
