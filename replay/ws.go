package replay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/trace"
)

// Close kinds of a WebSocket session (Session.Close, Session.WantClose).
const (
	CloseClient      = "client_close" // the client sent a close frame and closed
	CloseClientReset = "client_reset" // the client vanished with a reset
	CloseClientQuiet = "client_quiet" // the client went silent (a laptop asleep), then vanished
	CloseServer      = "server_close" // the server sent a close frame
	CloseServerReset = "server_reset" // the server reset the connection
	CloseServerEOF   = "server_eof"   // the server closed the connection without a close frame
	CloseEnd         = "end"          // open until the recording (or replay) ended
)

// Session error classes beyond the request ones.
const ErrMissingFrames = "missing_frames" // the server's frames did not all arrive

// wantClose is how the recorded session ended: by a close frame (the
// first side to send one closed it), else by the TCP connection's end.
func wantClose(c *trace.ConnClose, sc *Script) string {
	first := func(fs []*trace.WSFrame) time.Duration {
		for _, f := range fs {
			if f.Op == trace.OpClose {
				return f.TS
			}
		}
		return -1
	}
	client, server := first(sc.Client), first(sc.Server)
	switch {
	case client >= 0 && (server < 0 || client <= server):
		return CloseClient
	case server >= 0:
		return CloseServer
	}
	switch c.Vanished() {
	case "silent":
		return CloseClientQuiet
	case "reset":
		return CloseClientReset
	}
	switch {
	case c == nil || c.How == trace.CloseTimeout || c.How == trace.CloseCaptureEnd:
		return CloseEnd
	case c.By == trace.SideClient:
		return CloseClient
	case c.How == trace.CloseRST:
		return CloseServerReset
	default:
		return CloseServerEOF // a FIN with no close frame before it: a server cut off
	}
}

// wsReader reads the server's frames and matches them with the script.
type wsReader struct {
	cl     *client
	script *Script
	done   chan struct{}

	mu        sync.Mutex
	sent      []time.Time // when each client frame went out
	received  int
	matched   int
	rtt       []int64
	closeCode int
	sawClose  bool
	// serverFirst: the server's close frame came before the client sent
	// its own (the client's then answered it); clientClosed says it had.
	serverFirst, clientClosed bool
	err                       error
	arrived                   chan struct{}
	// hush, closed, tells the reader to read no more: the client went
	// silent; release, closed, that the connection is gone.
	hush, release chan struct{}
}

func (rd *wsReader) run() {
	defer close(rd.done)
	// Client frames waiting for server frame i, by i.
	waiting := map[int][]int{}
	for k, i := range rd.script.Reply {
		waiting[i] = append(waiting[i], k)
	}
	var small [125]byte
	for {
		select {
		case <-rd.hush:
			<-rd.release
			rd.finish(net.ErrClosed)
			return
		default:
		}
		h, err := ws.ReadHeader(rd.cl.br)
		if err != nil {
			rd.finish(err)
			return
		}
		var payload []byte
		if h.OpCode == ws.OpClose && h.Length <= int64(len(small)) {
			payload = small[:h.Length]
			_, err = io.ReadFull(rd.cl.br, payload)
		} else {
			_, err = rd.cl.br.Discard(int(h.Length)) // skipped in the buffer: no copy, no allocation
		}
		if err != nil {
			rd.finish(err)
			return
		}
		now := time.Now()
		rd.cl.r.stats.framesRecvd.Add(1)
		rd.mu.Lock()
		i := rd.received
		rd.received++
		if i < len(rd.script.Server) {
			want := rd.script.Server[i]
			if ws.OpCode(want.Op) == h.OpCode && want.Fin == h.Fin && want.Len == h.Length {
				rd.matched++
			}
		}
		for _, k := range waiting[i] {
			if !rd.sent[k].IsZero() {
				rd.rtt = append(rd.rtt, max(1, now.Sub(rd.sent[k]).Microseconds()))
			}
		}
		if h.OpCode == ws.OpClose {
			rd.sawClose = true
			rd.serverFirst = !rd.clientClosed
			if len(payload) >= 2 {
				rd.closeCode = int(binary.BigEndian.Uint16(payload))
			}
		}
		rd.mu.Unlock()
		select {
		case rd.arrived <- struct{}{}:
		default:
		}
	}
}

func (rd *wsReader) finish(err error) {
	rd.mu.Lock()
	rd.err = err
	rd.mu.Unlock()
}

func (rd *wsReader) all() bool {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.received >= len(rd.script.Server)
}

// waitAll waits until every expected server frame came, the server ended
// the connection, or the deadline.
func (rd *wsReader) waitAll(ctx context.Context, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for !rd.all() {
		select {
		case <-rd.done:
			return
		case <-rd.arrived:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// waitEnd waits until the server ends the connection, or the deadline.
func (rd *wsReader) waitEnd(ctx context.Context, deadline time.Time) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-rd.done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// session plays a WebSocket session after its upgrade: the client's frames
// at their recorded offsets, the server's read and matched, and the end as
// recorded.
func (cl *client) session(ctx context.Context, s *Step, up *Request) *Session {
	sc := s.WS
	out := &Session{TS: up.TS, Conn: cl.c.ID, Clone: cl.c.Clone, Record: s.Record, Target: s.Target,
		Want: len(sc.Client), WantReceived: len(sc.Server), WantClose: wantClose(cl.c.Close, sc)}
	if up.Status != 101 || up.Error != "" || cl.nc == nil {
		out.Error = up.Error
		if out.Error == "" {
			out.Error = ErrMismatch
		}
		out.Detail = "the upgrade failed: " + strconv.Itoa(up.Status) + " " + up.Detail
		out.Close = ""
		return out
	}
	out.Connected = true
	upgraded := time.Now()
	cl.r.stats.openWS.Add(1)
	defer cl.r.stats.openWS.Add(-1)
	_ = cl.nc.SetDeadline(time.Time{})

	rd := &wsReader{cl: cl, script: sc, done: make(chan struct{}), arrived: make(chan struct{}, 1), sent: make([]time.Time, len(sc.Client)),
		hush: make(chan struct{}), release: make(chan struct{})}
	go rd.run()

	var writeErr error
	var sentClose bool
	recordedUp := s.HTTP.Resp.End
	var mask [4]byte
	for k, f := range sc.Client {
		// At its recorded time, or as long after the upgrade as it was in
		// the recording if the upgrade itself came late.
		due := cl.at(f.TS + cl.c.Shift)
		if late := upgraded.Add(cl.scaled(f.TS - recordedUp)); late.After(due) {
			due = late
		}
		if !wait.Until(ctx, due) {
			break
		}
		if f.Op == trace.OpClose && out.WantClose == CloseServer {
			// The recorded client answered the server's close frame: so
			// does this one, once that frame came.
			rd.waitAll(ctx, due.Add(grace))
		}
		payload := clientPayload(f)
		h := ws.Header{Fin: f.Fin, OpCode: ws.OpCode(f.Op), Length: int64(len(payload)), Masked: f.Masked}
		if f.Masked {
			_, _ = rand.Read(mask[:])
			h.Mask = mask
		}
		_ = cl.nc.SetWriteDeadline(time.Now().Add(cl.r.timeout()))
		now := time.Now()
		out.MaxLag = max(out.MaxLag, now.Sub(due))
		rd.mu.Lock()
		rd.sent[k] = now
		rd.clientClosed = rd.clientClosed || f.Op == trace.OpClose // before it goes: the answer may come at once
		rd.mu.Unlock()
		if writeErr = writeFrame(cl.nc, &cl.buf, h, payload); writeErr != nil {
			break
		}
		cl.r.stats.framesSent.Add(1)
		out.Sent++
		if f.Op == trace.OpClose {
			sentClose = true
		}
	}

	// The end, as recorded.
	closeAt := cl.at(cl.c.CloseAt)
	quiet := cl.c.QuietAt > 0
	if quiet {
		// A laptop asleep: from its moment on, the client reads and sends
		// nothing (the proxy's writes fill the socket's buffers), and holds
		// the connection until the hold is over.
		// What the server sent before that moment was on its way: it is
		// read first (a grace for its trip through the proxy), the rest
		// never is.
		rd.waitEnd(ctx, cl.at(cl.c.QuietAt))
		rd.waitAll(ctx, cl.at(cl.c.QuietAt).Add(grace))
		close(rd.hush)
		wait.Until(ctx, cl.holdUntil())
	} else if cl.c.Close != nil && cl.c.Close.By == trace.SideServer || sentClose {
		// The peer is to close (or to answer our close frame): wait for it.
		rd.waitAll(ctx, closeAt.Add(grace))
		rd.waitEnd(ctx, closeAt.Add(grace))
	} else {
		rd.waitEnd(ctx, closeAt)
		rd.waitAll(ctx, time.Now().Add(grace))
	}
	readerEnded := false
	select {
	case <-rd.done:
		readerEnded = true
	default:
	}
	clientReset := cl.c.Close.Vanished() == "reset"
	cl.drop(clientReset && !readerEnded || quiet)
	close(rd.release)
	<-rd.done

	rd.mu.Lock()
	defer rd.mu.Unlock()
	out.Received, out.Matched, out.RTT = rd.received, rd.matched, rd.rtt
	out.Length = time.Since(upgraded)
	switch {
	case rd.sawClose && sentClose && !rd.serverFirst:
		out.Close = CloseClient
	case rd.sawClose:
		out.Close = CloseServer
	case readerEnded && errors.Is(rd.err, io.EOF):
		out.Close = CloseServerEOF
	case readerEnded && classify(rd.err, false) == ErrReset:
		out.Close = CloseServerReset
	case quiet:
		out.Close = CloseClientQuiet
	case clientReset:
		out.Close = CloseClientReset
	case sentClose:
		out.Close = CloseClient
	default:
		out.Close = CloseEnd
	}
	switch {
	case ctx.Err() != nil:
		out.Error = ErrCancelled
	case writeErr != nil:
		out.Error, out.Detail = classify(writeErr, false), writeErr.Error()
	case readerEnded && !rd.sawClose && (cl.c.Close == nil || cl.c.Close.By != trace.SideServer):
		// The proxy ended a session the recording kept open.
		out.Error, out.Detail = classify(rd.err, false), "the connection ended early: "+errString(rd.err)
	case rd.received < len(sc.Server):
		out.Error, out.Detail = ErrMissingFrames, strconv.Itoa(len(sc.Server)-rd.received)+" server frames did not arrive"
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// clientPayload is a client frame's payload: the recorded bytes when the
// trace kept them (and they were not compressed), else as many bytes.
func clientPayload(f *trace.WSFrame) []byte {
	if int64(len(f.Payload)) == f.Len && f.Deflate == "" {
		return f.Payload
	}
	n := f.Len
	if f.Op >= trace.OpClose {
		n = min(n, 125)
	}
	if f.Op == trace.OpClose && f.CloseCode != 0 {
		b := ws.NewCloseFrameBody(ws.StatusCode(f.CloseCode), "")
		return append(b, filler[:max(0, n-int64(len(b)))]...)
	}
	if n <= int64(len(filler)) {
		return filler[:n]
	}
	out := make([]byte, n)
	for i := int64(0); i < n; i += int64(len(filler)) {
		copy(out[i:], filler)
	}
	return out
}

// writeFrame writes a header and payload with one write, masking the
// payload (h.Masked) in b, never in place: the payload may be the trace's.
func writeFrame(c net.Conn, b *bytes.Buffer, h ws.Header, payload []byte) error {
	b.Reset()
	if err := ws.WriteHeader(b, h); err != nil {
		return err
	}
	start := b.Len()
	_, _ = b.Write(payload)
	if h.Masked {
		ws.Cipher(b.Bytes()[start:], h.Mask, 0)
	}
	_, err := c.Write(b.Bytes())
	return err
}
