package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gopacket/gopacket/layers"
	"github.com/klauspost/compress/flate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

const (
	reqA  = "GET /user/alice/api/contents?content=1 HTTP/1.1\r\nHost: hub\r\n\r\n"
	reqB  = "GET /user/alice/api/kernelspecs HTTP/1.1\r\nHost: hub\r\n\r\n"
	reqC  = "POST /user/alice/api/sessions HTTP/1.1\r\nHost: hub\r\nContent-Length: 12\r\n\r\n{\"a\":\"b\",12}"
	respA = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3000\r\n\r\n"
	respB = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	respC = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}"
)

var (
	bodyA = strings.Repeat("a", 3000)
	bodyB = "400\r\n" + strings.Repeat("b", 1024) + "\r\n10\r\n" + strings.Repeat("c", 16) + "\r\n0\r\n\r\n"
)

// a keep-alive connection with three pipelined requests.
func pipelined(t testing.TB, now *time.Time) (*tcpConn, []pkt) {
	k := newTCPConn(t, now, 7, 40001)
	return k, cat(k.handshake(),
		k.send(true, reqA+reqB+reqC, 1448),
		k.send(false, respA+bodyA, 1448),
		k.send(false, respB+bodyB, 500),
		k.send(false, respC, 1448),
		[]pkt{k.fin(true), k.fin(false)})
}

func checkPipelined(t *testing.T, recs []trace.Record) {
	t.Helper()
	opens := ofType[*trace.ConnOpen](recs)
	require.Len(t, opens, 1)
	assert.False(t, opens[0].Mid)
	assert.Equal(t, "10.0.0.7:40001", opens[0].Client)
	assert.Equal(t, "10.0.0.1:8000", opens[0].Server)
	ex := ofType[*trace.HTTP](recs)
	require.Len(t, ex, 3)
	want := []struct {
		target string
		status int
		size   int64
	}{{"/user/alice/api/contents?content=1", 200, 3000}, {"/user/alice/api/kernelspecs", 200, 1040}, {"/user/alice/api/sessions", 201, 2}}
	for i, w := range want {
		assert.Equal(t, w.target, ex[i].Req.Target)
		require.NotNil(t, ex[i].Resp)
		assert.Equal(t, w.status, ex[i].Resp.Status)
		assert.Equal(t, w.size, ex[i].Resp.BodySize)
		assert.False(t, ex[i].Resp.Incomplete)
		assert.Equal(t, "alice", ex[i].User)
		assert.LessOrEqual(t, ex[i].TS, ex[i].Req.End)
		assert.LessOrEqual(t, ex[i].Req.End, ex[i].Resp.Start)
		assert.LessOrEqual(t, ex[i].Resp.Start, ex[i].Resp.End)
	}
	assert.Equal(t, int64(12), ex[2].Req.BodySize)
	closes := ofType[*trace.ConnClose](recs)
	require.Len(t, closes, 1)
	assert.Equal(t, trace.CloseFIN, closes[0].How)
	assert.Equal(t, trace.SideClient, closes[0].By)
	assertOrderRule(t, recs)
}

// assertOrderRule checks FORMAT.md's order rule.
func assertOrderRule(t assert.TestingT, recs []trace.Record) {
	assert.NoError(t, tracetest.OrderRule(recs))
}

func TestPipelinedKeepAlive(t *testing.T) {
	now := epoch
	_, pkts := pipelined(t, &now)
	w, c := runPackets(t, pkts, Options{})
	checkPipelined(t, w.recs)
	assert.Zero(t, c.Gaps)
	assert.Zero(t, c.ParseErrors)
	assert.Equal(t, uint64(len(pkts)), c.Packets)
}

func TestReorderingAndRetransmissionChangeNothing(t *testing.T) {
	now := epoch
	_, pkts := pipelined(t, &now)
	// Swap two response segments, and send one request segment twice.
	mixed := append([]pkt(nil), pkts...)
	mixed[5], mixed[6] = mixed[6], mixed[5]
	mixed = append(mixed[:4], append([]pkt{mixed[3]}, mixed[4:]...)...)
	w, c := runPackets(t, mixed, Options{})
	checkPipelined(t, w.recs)
	assert.Zero(t, c.Gaps)
}

func TestLostSegmentBecomesAGap(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 8, 40002)
	start := cat(k.handshake(), k.send(true, reqA, 1448))
	body := k.send(false, respA+bodyA, 1000) // 4 segments: the 2nd is lost
	pkts := cat(start, body[:1], body[2:],
		k.send(true, reqB, 1448), k.send(false, respC, 1448), []pkt{k.fin(true), k.fin(false)})
	w, c := runPackets(t, pkts, Options{FlushAfter: time.Nanosecond})
	gaps := ofType[*trace.Gap](w.recs)
	require.Len(t, gaps, 1)
	assert.Equal(t, int64(1000), gaps[0].Bytes)
	assert.Equal(t, trace.ServerToClient, gaps[0].Dir)
	assert.Equal(t, uint64(1), c.Gaps)
	ex := ofType[*trace.HTTP](w.recs)
	require.Len(t, ex, 2)
	assert.Equal(t, int64(3000), ex[0].Resp.BodySize, "lost body bytes are counted, the message goes on")
	assert.False(t, ex[0].Resp.Incomplete)
	assert.Equal(t, 201, ex[1].Resp.Status, "the next exchange parses")
	assertOrderRule(t, w.recs)
}

func TestCaptureStartingMidConnection(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 9, 40003)
	k.handshake()                                // happened before the capture
	k.send(true, reqA, 1448)                     // so did the request
	resp := k.send(false, respA+bodyA, 1000)[2:] // the capture sees the tail of the response
	pkts := cat(resp, k.send(true, reqB, 1448), k.send(false, respC, 1448), []pkt{k.rst(true)})
	w, _ := runPackets(t, pkts, Options{})
	opens := ofType[*trace.ConnOpen](w.recs)
	require.Len(t, opens, 1)
	assert.True(t, opens[0].Mid)
	assert.Equal(t, "10.0.0.9:40003", opens[0].Client, "the server side is found by its port")
	ex := ofType[*trace.HTTP](w.recs)
	require.Len(t, ex, 1, "the half-seen response is skipped; the next exchange is whole")
	assert.Equal(t, "/user/alice/api/kernelspecs", ex[0].Req.Target)
	assert.Equal(t, 201, ex[0].Resp.Status)
	closes := ofType[*trace.ConnClose](w.recs)
	require.Len(t, closes, 1)
	assert.Equal(t, trace.CloseRST, closes[0].How)
	assertOrderRule(t, w.recs)
}

func TestResetInsideAResponse(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 10, 40004)
	start := cat(k.handshake(), k.send(true, reqA, 1448))
	body := k.send(false, respA+bodyA, 1000)
	pkts := cat(start, body[:2], []pkt{k.rst(true)})
	w, _ := runPackets(t, pkts, Options{})
	ex := ofType[*trace.HTTP](w.recs)
	require.Len(t, ex, 1)
	require.NotNil(t, ex[0].Resp)
	assert.True(t, ex[0].Resp.Incomplete)
	assert.Equal(t, int64(2000-len(respA)), ex[0].Resp.BodySize)
	closes := ofType[*trace.ConnClose](w.recs)
	require.Len(t, closes, 1)
	assert.Equal(t, trace.CloseRST, closes[0].How)
	assert.Equal(t, trace.SideClient, closes[0].By)
	assertOrderRule(t, w.recs)
}

func wsFrames(t *testing.T, masked bool, frames ...ws.Frame) string {
	var b bytes.Buffer
	for _, f := range frames {
		if masked {
			f = ws.MaskFrameWith(f, [4]byte{1, 2, 3, 4})
		}
		require.NoError(t, ws.WriteFrame(&b, f))
	}
	return b.String()
}

const upgradeReq = "GET /user/alice/api/kernels/5c8e76c7-9f0e-4d43-8b1e-2a5b6c7d8e9f/channels?session_id=x HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

func TestWebSocketAfterUpgrade(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 11, 40005)
	// The client's first frame is sent right behind the request, before
	// the 101: it must wait for the answer, then be read as a frame.
	early := wsFrames(t, true, ws.NewTextFrame([]byte(`{"header":{"msg_type":"kernel_info_request"}}`)))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	server := wsFrames(t, false, ws.NewTextFrame([]byte(`{"header":{"msg_type":"status"}}`)),
		ws.NewFrame(ws.OpBinary, false, bytes.Repeat([]byte{1}, 3000)), ws.NewFrame(ws.OpContinuation, true, []byte{2}))
	client := wsFrames(t, true, ws.NewPingFrame([]byte("p")), ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "")))
	pkts := cat(k.handshake(), k.send(true, upgradeReq+early, 1448), k.send(false, resp+server, 1448),
		k.send(true, client, 1448), k.send(false, wsFrames(t, false, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, ""))), 1448),
		[]pkt{k.fin(false), k.fin(true)})
	w, c := runPackets(t, pkts, Options{})
	ex := ofType[*trace.HTTP](w.recs)
	require.Len(t, ex, 1)
	assert.True(t, ex[0].Upgrade)
	assert.Equal(t, 101, ex[0].Resp.Status)
	frames := ofType[*trace.WSFrame](w.recs)
	var got []string
	for _, f := range frames {
		got = append(got, string(f.Dir)+":"+f.Op.String())
	}
	assert.Equal(t, []string{"c2s:text", "s2c:text", "s2c:binary", "s2c:continuation", "c2s:ping", "c2s:close", "s2c:close"}, got)
	assert.Equal(t, `{"header":{"msg_type":"kernel_info_request"}}`, string(frames[0].Payload), "unmasked")
	assert.True(t, frames[0].Masked)
	assert.Equal(t, int64(3000), frames[2].Len)
	assert.Equal(t, uint16(1001), frames[5].CloseCode)
	assert.Equal(t, uint64(7), c.Frames)
	assert.Zero(t, c.ParseErrors)
	assertOrderRule(t, w.recs)
}

// deflateFrames compresses messages as one permessage-deflate context
// (context takeover), one frame each.
func deflateFrames(t *testing.T, msgs ...string) []ws.Frame {
	var wire bytes.Buffer
	fw, err := flate.NewWriter(&wire, flate.BestCompression)
	require.NoError(t, err)
	var frames []ws.Frame
	for _, m := range msgs {
		wire.Reset()
		_, _ = fw.Write([]byte(m))
		require.NoError(t, fw.Flush())
		f := ws.NewTextFrame(bytes.TrimSuffix(append([]byte(nil), wire.Bytes()...), []byte{0, 0, 0xff, 0xff}))
		f.Header.Rsv = ws.Rsv(true, false, false)
		frames = append(frames, f)
	}
	return frames
}

const deflate101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"

func TestPermessageDeflateIsInflated(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 12, 40006)
	msgs := []string{`{"header":{"msg_type":"status"},"content":{"execution_state":"busy"}}`, `{"header":{"msg_type":"status"},"content":{"execution_state":"idle"}}`}
	pkts := cat(k.handshake(), k.send(true, upgradeReq, 1448), k.send(false, deflate101+wsFrames(t, false, deflateFrames(t, msgs...)...), 1448),
		[]pkt{k.fin(false), k.fin(true)})
	w, _ := runPackets(t, pkts, Options{})
	got := ofType[*trace.WSFrame](w.recs)
	require.Len(t, got, 2)
	for i, f := range got {
		assert.Equal(t, trace.DeflateInflated, f.Deflate)
		assert.Equal(t, msgs[i], string(f.Payload))
		assert.Equal(t, int64(len(msgs[i])), f.Inflated)
		assert.Equal(t, uint8(4), f.RSV)
	}
	assert.Less(t, got[1].Len, got[0].Len, "the second message used the first as its dictionary")
}

func TestPermessageDeflateAfterLossIsOpaque(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 13, 40008)
	rng := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 6000)
	for i := range noise {
		noise[i] = byte('a' + rng.IntN(26))
	}
	msgs := []string{`{"x":"` + string(noise) + `"}`, `{"header":{"msg_type":"status"}}`}
	start := cat(k.handshake(), k.send(true, upgradeReq, 1448))
	server := k.send(false, deflate101+wsFrames(t, false, deflateFrames(t, msgs...)...), 1000)
	require.Greater(t, len(server), 3)
	// The second segment, inside the first message's payload, is lost.
	pkts := cat(start, server[:1], server[2:], []pkt{k.fin(false), k.fin(true)})
	w, c := runPackets(t, pkts, Options{FlushAfter: time.Nanosecond})
	assert.Equal(t, uint64(1), c.Gaps)
	got := ofType[*trace.WSFrame](w.recs)
	require.Len(t, got, 2)
	for _, f := range got {
		assert.Equal(t, trace.DeflateOpaque, f.Deflate, "with context takeover, a loss makes every later message unreadable")
		assert.Nil(t, f.Payload)
	}
}

func TestRouteEventsFromTheProxyAPI(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 20, 40010)
	k.sport = 8001
	add := `{"user":"alice","server_name":"","target":"http://10.42.7.248:8888","last_activity":"2026-11-03T15:50:00Z"}`
	pkts := cat(k.handshake(),
		k.send(true, "POST /api/routes/user/alice HTTP/1.1\r\nAuthorization: token s3cr3t-proxy-token\r\nContent-Length: "+strconv.Itoa(len(add))+"\r\n\r\n"+add, 1448),
		k.send(false, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 1448),
		k.send(true, "GET /api/routes HTTP/1.1\r\nAuthorization: token s3cr3t-proxy-token\r\n\r\n", 1448),
		k.send(false, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", 1448),
		k.send(true, "DELETE /api/routes/user/bob HTTP/1.1\r\nAuthorization: token s3cr3t-proxy-token\r\n\r\n", 1448),
		k.send(false, "HTTP/1.1 204 No Content\r\n\r\n", 1448),
		k.send(true, "DELETE /api/routes/user/nobody HTTP/1.1\r\n\r\n", 1448),
		k.send(false, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 1448),
		[]pkt{k.fin(true), k.fin(false)})
	w, c := runPackets(t, pkts, Options{APIPorts: []uint16{8001}})
	routes := ofType[*trace.Route](w.recs)
	require.Len(t, routes, 2, "GET and refused calls change nothing")
	assert.Equal(t, trace.RouteAdd, routes[0].Op)
	assert.Equal(t, "/user/alice", routes[0].Path)
	assert.Equal(t, "http://10.42.7.248:8888", routes[0].Target)
	assert.Equal(t, "alice", routes[0].User)
	var data map[string]any
	require.NoError(t, json.Unmarshal(routes[0].Data, &data))
	assert.NotContains(t, data, "target")
	assert.Equal(t, "2026-11-03T15:50:00Z", data["last_activity"])
	assert.Equal(t, trace.RouteDelete, routes[1].Op)
	assert.Equal(t, "/user/bob", routes[1].Path)
	assert.Empty(t, ofType[*trace.HTTP](w.recs), "API calls are not traffic to replay")
	assert.Empty(t, ofType[*trace.ConnOpen](w.recs))
	assert.Equal(t, uint64(2), c.Routes)
	for _, r := range w.recs {
		line, err := trace.AppendJSON(nil, r)
		require.NoError(t, err)
		assert.NotContains(t, string(line), "s3cr3t", "the API token is never kept, even raw")
	}
}

// A connection that loses a segment and keeps sending cannot make the
// capture hold its data without bound: past MaxPagesPerConn buffered pages
// the missing bytes are given up as a gap and parsing goes on.
func TestBufferedPagesAreBounded(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 31, 40031)
	start := cat(k.handshake(), k.send(true, reqA, 1448))
	big := respA[:len(respA)-len("3000\r\n\r\n")] + "200000\r\n\r\n" + strings.Repeat("z", 200000)
	body := k.send(false, big, 1000)
	pkts := cat(start, body[:1], body[2:], k.send(true, reqB, 1448), k.send(false, respC, 1448))
	w, c := runPackets(t, pkts, Options{Raw: true, FlushAfter: time.Hour, MaxPagesPerConn: 16, MaxPagesTotal: 64})
	assert.Equal(t, uint64(1), c.Gaps)
	gaps := ofType[*trace.Gap](w.recs)
	require.Len(t, gaps, 1)
	assert.Equal(t, int64(1000), gaps[0].Bytes)
	ex := ofType[*trace.HTTP](w.recs)
	require.Len(t, ex, 2, "parsing went on after the gap")
	// Given up at the packet time it was, while the connection was busy,
	// not when the capture ended: before the next exchange began.
	assert.Less(t, gaps[0].TS, ex[1].TS, "the gap was given up while the connection was busy, not at the end")
	assert.Equal(t, int64(200000), ex[0].Resp.BodySize)
	assert.Equal(t, 201, ex[1].Resp.Status)
}

type writerFunc func(trace.Record) error

func (f writerFunc) Write(r trace.Record) error { return f(r) }

// When the trace cannot be written (a full disk), the capture stops at
// once with the writer's error instead of reading on, and what was
// written stays written.
func TestWriteFailureStopsTheCapture(t *testing.T) {
	now := epoch
	// Enough records that the ones queued for the writer when it failed
	// (sink.go: a few batches) are a small part of them.
	var pkts []pkt
	for range 1000 {
		_, p := pipelined(t, &now)
		pkts = append(pkts, p...)
	}
	src := &sliceSource{pkts: pkts, link: layers.LinkTypeEthernet}
	var written int
	full := errors.New("no space left on device")
	_, err := Run(context.Background(), src, func(time.Time) (RecordWriter, error) {
		return writerFunc(func(trace.Record) error {
			if written == 20 {
				return full
			}
			written++
			return nil
		}), nil
	}, Options{Raw: true})
	require.ErrorIs(t, err, full)
	assert.Contains(t, err.Error(), "write trace")
	assert.Equal(t, 20, written)
	assert.Greater(t, len(src.pkts), len(pkts)/2, "the capture stopped reading when writing failed")
}

// A client that goes silent mid-answer (a laptop asleep: no data, no
// acknowledgement) while the server goes on sending and retransmitting,
// until the server resets the connection, is told apart from one that
// reset the connection itself and from one that was merely slow to read:
// its conn_close says since when it was quiet.
func TestClientGoneSilent(t *testing.T) {
	exchange := func(acks bool) (*trace.ConnClose, time.Duration) {
		now := epoch
		k := newTCPConn(t, &now, 11, 40011)
		pkts := cat(k.handshake(), k.send(true, reqA, 1448))
		reqAt := now
		body := k.send(false, respA+bodyA, 600)
		pkts = append(pkts, body[0], k.packet(true, nil, nil)) // acknowledged
		ackAt := now
		for _, p := range body[1:] {
			now = now.Add(700 * time.Millisecond) // the server's retransmission timer, backing off
			p.ci.Timestamp = now
			pkts = append(pkts, p)
			if acks {
				pkts = append(pkts, k.packet(true, nil, nil))
			}
		}
		pkts = append(pkts, k.rst(false))
		w, _ := runPackets(t, pkts, Options{})
		closes := ofType[*trace.ConnClose](w.recs)
		require.Len(t, closes, 1)
		ex := ofType[*trace.HTTP](w.recs)
		require.Len(t, ex, 1)
		assertOrderRule(t, w.recs)
		// When it went quiet, from the request's first byte.
		return closes[0], ex[0].TS + ackAt.Sub(reqAt)
	}
	silent, quietAt := exchange(false)
	assert.Equal(t, trace.CloseRST, silent.How)
	assert.Equal(t, trace.SideServer, silent.By, "the server gave up on it")
	assert.Equal(t, "silent", silent.Vanished())
	assert.Equal(t, quietAt, silent.Quiet, "its acknowledgement of the first segment: its last packet")
	assert.Less(t, silent.Quiet, silent.TS)

	reading, _ := exchange(true)
	assert.Zero(t, reading.Quiet, "a client that acknowledges is there")
	assert.Empty(t, reading.Vanished(), "the server reset a client that was there")
}
