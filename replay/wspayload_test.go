package replay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/replay"
	"github.com/hubreplay/hubreplay/trace"
)

// A browser masks what it sends; the server unmasks it and reads what the
// recording's client sent: the kept bytes, or as many bytes as were sent.
// Replayed twice from one plan, the second run sends the same bytes (the
// masking never touches the plan's payloads).
func TestClientFramesReachTheServerAsRecorded(t *testing.T) {
	h := trace.Header{Format: trace.FormatName, Version: trace.Version, Start: time.Date(2026, 12, 4, 11, 0, 0, 0, time.UTC), Source: "test"}
	text := []byte(`{"header":{"msg_type":"kernel_info_request"},"channel":"shell"}`)
	binary := []byte{0, 1, 2, 3, 0xfe, 0xff, 'x', 'y'}
	frame := func(ts time.Duration, op trace.Opcode, payload []byte, n int64) *trace.WSFrame {
		f := &trace.WSFrame{TS: ts, Conn: 1, Dir: trace.ClientToServer, Op: op, Fin: true, Masked: true, Len: n, Payload: payload}
		if payload != nil {
			f.Form = trace.FormRaw
		}
		return f
	}
	recs := []trace.Record{
		&trace.ConnOpen{TS: 0, Conn: 1},
		&trace.HTTP{TS: 0, Conn: 1, Upgrade: true,
			Req: trace.Request{End: 0, Method: "GET", Target: "/hub/api/events", Proto: "HTTP/1.1",
				Headers: []trace.Field{{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}}},
			Resp: &trace.Response{Start: ms, End: ms, Status: 101, Headers: []trace.Field{{"Upgrade", "websocket"}}}},
		frame(10*ms, trace.OpText, text, int64(len(text))),
		frame(20*ms, trace.OpBinary, binary, int64(len(binary))),
		frame(30*ms, trace.OpText, nil, 300), // only the length was kept
		&trace.ConnClose{TS: 100 * ms, Conn: 1, How: trace.CloseFIN, By: trace.SideClient},
	}
	p := plan(t, writeTrace(t, h, recs), replay.Options{Speed: 1})

	var mu sync.Mutex
	var got [][]byte
	var unmasked int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			f, err := ws.ReadFrame(conn)
			if err != nil {
				return
			}
			mu.Lock()
			if !f.Header.Masked {
				unmasked++
			}
			ws.Cipher(f.Payload, f.Header.Mask, 0)
			got = append(got, f.Payload)
			mu.Unlock()
		}
	}))
	defer srv.Close()

	for run := range 2 {
		mu.Lock()
		got, unmasked = nil, 0
		mu.Unlock()
		sum, err := (&replay.Runner{Target: srv.URL, Timeout: 5 * time.Second}).Run(context.Background(), p)
		require.NoError(t, err)
		require.Equal(t, 3, sum.FramesSent, "run %d", run)
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 }, 5*time.Second, 10*time.Millisecond)
		mu.Lock()
		assert.Zero(t, unmasked, "run %d: every client frame masked", run)
		assert.Equal(t, text, got[0], "run %d", run)
		assert.Equal(t, binary, got[1], "run %d", run)
		assert.Len(t, got[2], 300, "run %d: as many bytes as the recording's client sent", run)
		mu.Unlock()
	}
}
