package replay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hubreplay/hubreplay/internal/rawio"
	"github.com/hubreplay/hubreplay/internal/wait"
	"github.com/hubreplay/hubreplay/trace"
)

// grace is how long a replay waits, past the recorded moment, for a peer
// to do what the recording says it did (close, send its last frames).
const grace = 2 * time.Second

// client plays one recorded connection: one TCP connection at a time to
// the target, a new one when the target closed the last.
type client struct {
	r     *Runner
	p     *Plan
	c     *Conn
	addr  string
	start time.Time
	spans routeSpans // when the plan's routes are in place

	nc      net.Conn
	br      *bufio.Reader
	stop    func() bool // ends the context watch on nc
	used    bool        // nc has carried a request
	dials   int
	ready   time.Time // when the previous answer ended
	abandon bool      // the recording's client vanished: reset at the close
	buf     bytes.Buffer
}

func (cl *client) at(t time.Duration) time.Time { return cl.r.wall(cl.start, cl.p, t) }

// lateForRoute tells whether a request the proxy had no route for was
// sent after the recording deleted that route, when the recording had it in
// place at the request's own time, and how much after.
func (cl *client) lateForRoute(s *Step, sent time.Time) (time.Duration, bool) {
	if cl.p.Opts.Speed <= 0 || cl.spans.RouteSpans == nil {
		return 0, false
	}
	at := time.Duration(float64(sent.Sub(cl.start)) * cl.p.Opts.Speed) // in replay time
	path, _, _ := strings.Cut(s.Target, "?")
	end, ok := cl.spans.endOf(path, s.At)
	if !ok || at < end {
		return 0, false
	}
	return at - end, true
}
func (cl *client) since(t time.Time) time.Duration {
	return t.Sub(cl.start)
}

// scaled is a recorded duration at the replay's speed.
func (cl *client) scaled(d time.Duration) time.Duration {
	if cl.p.Opts.Speed <= 0 {
		return 0
	}
	return time.Duration(float64(d) / cl.p.Opts.Speed)
}

func (cl *client) run(ctx context.Context) {
	defer cl.drop(false)
	for _, s := range cl.c.Steps {
		due := cl.at(s.At)
		if !wait.Until(ctx, due) {
			return
		}
		res := cl.exchange(ctx, s, due)
		cl.r.write(res)
		if s.WS != nil {
			cl.r.write(cl.session(ctx, s, res))
			return // nothing follows a WebSocket on its connection
		}
		if cl.abandon || ctx.Err() != nil {
			break
		}
	}
	cl.finish(ctx)
}

func (cl *client) dial(ctx context.Context) error {
	// No TCP keep-alive probes (Go's default sends them after 15 s idle):
	// on loopback they keep nothing alive, and turning them on costs
	// four system calls per connection, each waking Go's system monitor.
	d := net.Dialer{Timeout: cl.r.timeout(), KeepAlive: -1}
	nc, err := d.DialContext(ctx, "tcp", cl.addr)
	if err != nil {
		return err
	}
	cl.dials++
	nc = rawio.Wrap(nc)
	cl.nc, cl.used = nc, false
	if cl.br == nil {
		cl.br = bufio.NewReaderSize(nc, 4<<10)
	} else {
		cl.br.Reset(nc)
	}
	// Cancelling the replay unblocks whatever waits on the connection.
	cl.stop = context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	cl.r.stats.open.Add(1)
	return nil
}

// drop closes the connection; with rst, as a client that vanished does.
func (cl *client) drop(rst bool) {
	if cl.nc == nil {
		return
	}
	cl.stop()
	if tc, ok := cl.nc.(rawio.Linger); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = cl.nc.Close()
	cl.nc = nil
	cl.r.stats.open.Add(-1)
}

// exchange sends one request and reads its answer (for a 101, only the
// answer's head: the session follows on cl.br).
func (cl *client) exchange(ctx context.Context, s *Step, due time.Time) *Request {
	rec := s.HTTP
	res := &Request{TS: cl.since(due), Conn: cl.c.ID, Clone: cl.c.Clone, Record: s.Record, Method: rec.Req.Method, Target: s.Target}
	if rec.Resp != nil {
		res.Want, res.WantBytes = rec.Resp.Status, rec.Resp.BodySize
	}
	if cl.ready.After(due) {
		res.Held = cl.ready.Sub(due)
	}
	woke := due
	if cl.ready.After(due) {
		woke = cl.ready
	}
	res.Lag = max(0, time.Since(woke))
	defer func() { cl.ready = time.Now() }()
	if res.Held > cl.r.timeout() {
		// Earlier answers on this connection came so late that this one
		// cannot come within the timeout of its recorded time: it has
		// timed out unsent. A hung proxy thus costs a connection one
		// timeout, not one per request, and the replay still ends near
		// the trace's end.
		res.Sent = cl.since(time.Now())
		res.Error, res.Detail = ErrTimeout, fmt.Sprintf("not sent: held %s behind earlier answers on its connection, more than the timeout", res.Held.Round(time.Millisecond))
		return res
	}
	for attempt := 0; ; attempt++ {
		if cl.nc == nil {
			if err := cl.dial(ctx); err != nil {
				res.Sent = cl.since(time.Now())
				res.Error, res.Detail = classify(err, true), err.Error()
				cl.r.stats.sent.Add(1)
				return res
			}
			res.Reconnect = cl.dials > 1
		}
		reused := cl.used
		cl.used = true
		sent := time.Now()
		if attempt == 0 {
			cl.r.stats.sent.Add(1)
		}
		res.Sent = cl.since(sent)
		key, err := cl.send(s)
		var first time.Time
		if err == nil {
			first, err = cl.firstByte(rec, sent)
		}
		if err != nil {
			if reused && attempt == 0 && !errors.Is(err, errTimeout) && !errors.Is(err, errAbandoned) && ctx.Err() == nil {
				// The target closed an idle keep-alive connection as the
				// request went out: a browser retries on a new one, so
				// does replay.
				cl.drop(false)
				continue
			}
			if errors.Is(err, errAbandoned) {
				res.Detail = "no answer before the recorded client gave up, as recorded"
				return res
			}
			cl.fail(ctx, s, res, err)
			return res
		}
		res.TTFB = first.Sub(sent)
		cl.read(ctx, s, res, sent, key)
		return res
	}
}

func (cl *client) fail(ctx context.Context, s *Step, res *Request, err error) {
	if noServer(s.HTTP) && !errors.Is(err, errTimeout) && ctx.Err() == nil {
		// The recording's proxy had no server to take this WebSocket
		// either: closed unanswered, or answered in a garbled way (CHP
		// versions differ), it is the failed WebSocket its user saw.
		res.Detail = "no WebSocket, as recorded (its server was not there): " + err.Error()
		cl.drop(false)
		return
	}
	res.Error, res.Detail = classify(err, false), err.Error()
	if ctx.Err() != nil {
		res.Error = ErrCancelled
	}
	cl.drop(false)
}

// send writes the request as recorded, tagged with its record number.
func (cl *client) send(s *Step) (key string, err error) {
	rec := s.HTTP.Req
	b := &cl.buf
	b.Reset()
	b.WriteString(rec.Method)
	b.WriteByte(' ')
	b.WriteString(s.Target)
	b.WriteString(" HTTP/1.1\r\n")
	host, declared := false, int64(-1)
	for _, f := range s.Headers {
		name := strings.ToLower(f[0])
		switch name {
		case "content-length":
			declared, _ = strconv.ParseInt(strings.TrimSpace(f[1]), 10, 64)
			continue
		case "transfer-encoding", "expect", "sec-websocket-key", "sec-websocket-extensions",
			strings.ToLower(trace.RecordHeader), strings.ToLower(trace.ServerHeader):
			// The body goes with a length; no 100-continue dance; a
			// fresh key; no permessage-deflate (the fixtures send frames
			// as recorded on the wire, uncompressed); the tag is ours.
			continue
		case "host":
			host = true
		}
		if strings.ContainsAny(f[0], "\r\n: ") || strings.ContainsAny(f[1], "\r\n") {
			continue
		}
		b.WriteString(f[0])
		b.WriteString(": ")
		b.WriteString(f[1])
		b.WriteString("\r\n")
	}
	if !host {
		b.WriteString("Host: " + cl.addr + "\r\n")
	}
	b.WriteString(trace.RecordHeader + ": " + strconv.FormatInt(s.Record, 10) + "\r\n")
	if s.HTTP.Upgrade {
		var k [16]byte
		_, _ = rand.Read(k[:])
		key = base64.StdEncoding.EncodeToString(k[:])
		b.WriteString("Sec-WebSocket-Key: " + key + "\r\n")
	}
	size := rec.BodySize
	length := size
	if rec.Incomplete {
		// The recording's client vanished mid-upload: promise what it
		// promised, send what it sent.
		length = max(size+1, declared)
	}
	if length > 0 || rec.Method == http.MethodPost || rec.Method == http.MethodPut || rec.Method == http.MethodPatch {
		b.WriteString("Content-Length: " + strconv.FormatInt(length, 10) + "\r\n")
	}
	b.WriteString("\r\n")
	_ = cl.nc.SetWriteDeadline(time.Now().Add(cl.r.timeout()))
	if size == 0 || (int64(len(rec.Body)) == size && size < 64<<10) {
		b.Write(rec.Body[:min(int64(len(rec.Body)), size)])
		_, err = cl.nc.Write(b.Bytes())
		return key, err
	}
	if _, err := cl.nc.Write(b.Bytes()); err != nil {
		return key, err
	}
	body := rec.Body
	if int64(len(body)) != size {
		body = nil
	}
	for sent := int64(0); sent < size; {
		n := min(size-sent, int64(len(filler)))
		p := filler[:n]
		if body != nil {
			p = body[sent : sent+n]
		}
		if _, err := cl.nc.Write(p); err != nil {
			return key, err
		}
		sent += n
	}
	return key, nil
}

// filler is what bodies and payloads the trace kept only the size of are
// made of.
var filler = []byte(strings.Repeat("hubreplay ", 64<<10/10+1))[:64<<10]

// firstByte waits for the answer to begin: as long as the recording's
// server took, scaled, plus the timeout. A request the recording has no
// answer for waits until the recorded close instead.
func (cl *client) firstByte(rec *trace.HTTP, sent time.Time) (time.Time, error) {
	var deadline time.Time
	if rec.Resp == nil || rec.Req.Incomplete {
		deadline = cl.at(cl.c.CloseAt)
	} else {
		deadline = sent.Add(cl.scaled(rec.Resp.End-rec.Req.End) + cl.r.timeout())
	}
	_ = cl.nc.SetReadDeadline(deadline)
	_, err := cl.br.Peek(1)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if rec.Resp == nil || rec.Req.Incomplete {
				return time.Time{}, errAbandoned
			}
			return time.Time{}, errTimeout
		}
		return time.Time{}, err
	}
	return time.Now(), nil
}

// noServer tells whether rec is a WebSocket upgrade the recording's
// proxy answered itself, its server not there (trace.HTTP.ProxyAnswered).
func noServer(rec *trace.HTTP) bool { return rec.Upgrade && rec.ProxyAnswered() }

// errAbandoned: the recording's client gave up before an answer, and so
// did replay.
var errAbandoned = errors.New("abandoned as recorded")

// read reads the answer and says how it compares with the recording.
func (cl *client) read(ctx context.Context, s *Step, res *Request, sent time.Time, key string) {
	rec := s.HTTP
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: rec.Req.Method})
	if err != nil {
		cl.fail(ctx, s, res, err)
		return
	}
	res.Status = resp.StatusCode
	res.By = resp.Header.Get(trace.ServerHeader)
	fromTrace := resp.Header.Get(trace.RecordHeader) == strconv.FormatInt(s.Record, 10)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		res.TTLB = time.Since(sent)
		if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
			res.Error, res.Detail = ErrMismatch, "101 with a wrong Sec-WebSocket-Accept"
		}
		return
	}
	vanished := rec.Resp != nil && rec.Resp.Incomplete && cl.clientEnded()
	limit := int64(-1)
	if vanished {
		// The recording's client left mid-download: read as much as it
		// did, then vanish at its recorded moment.
		limit = rec.Resp.BodySize
		cl.abandon = true
	}
	var transfer time.Duration
	if rec.Resp != nil {
		transfer = cl.scaled(rec.Resp.End - rec.Resp.Start)
	}
	n, err := readBody(ctx, resp.Body, limit, rec.Resp, transfer)
	res.Bytes = n
	res.TTLB = time.Since(sent)
	if err != nil {
		cl.fail(ctx, s, res, err)
		return
	}
	if resp.Close {
		cl.drop(false)
	}
	if rec.Resp == nil {
		res.Detail = "the recording has no answer to this request"
		return
	}
	// A user's request (under /user/, or under a user's route in the plan
	// behind a base URL) that the hub answered: the proxy had no route.
	isUser := func() bool {
		path, _, _ := strings.Cut(s.Target, "?")
		return strings.HasPrefix(path, "/user/") || cl.spans.User(path)
	}
	switch {
	case !fromTrace && res.By == "hub" && isUser():
		res.Error, res.Detail = ErrRouteMissing, resp.Header.Get("X-Hubreplay-Error")
		if late, ok := cl.lateForRoute(s, sent); ok {
			res.Error = ErrLateForRoute
			res.Detail = fmt.Sprintf("sent %s (replay time) after its route's recorded end: the replayer ran late", late.Round(time.Millisecond))
		} else if lr, ok := cl.r.Routes.(LateRoutes); ok {
			path, _, _ := strings.Cut(s.Target, "?")
			if lag, late := lr.LateAdd(path, s.At, sent); late {
				res.Error = ErrLateForRoute
				res.Detail = "its route's add came due before it was sent, but the proxy had not confirmed it yet (JupyterHub awaits the add before it sends a user on"
				if lag >= time.Millisecond {
					res.Detail += fmt.Sprintf("; the hub stub woke %s late for it", lag.Round(time.Millisecond))
				}
				res.Detail += "): the replay's order, not the proxy's"
			}
		}
	case resp.StatusCode == rec.Resp.Status && rec.ProxyAnswered(), noServer(rec):
		// The recording's proxy could not reach this server either (the
		// fixtures fail the connection as it was not there): the
		// candidate's own 503 is the answer recorded; for a WebSocket,
		// any answer but a 101.
	case resp.StatusCode >= 500 && !fromTrace:
		res.Error = ErrProxy5xx
	case resp.StatusCode != rec.Resp.Status:
		res.Error = ErrMismatch
		res.Detail = "recorded " + strconv.Itoa(rec.Resp.Status)
	case resp.StatusCode >= 500:
		res.Error = ErrBackend5xx
	}
}

// readBody reads an answer's body (at most limit bytes, if limit ≥ 0).
// A big body the recording's client took long to download is read at that
// pace: a slow reader (a student on campus Wi-Fi) is what makes a proxy
// buffer, and what it does then is part of what is measured.
func readBody(ctx context.Context, body io.Reader, limit int64, recorded *trace.Response, transfer time.Duration) (int64, error) {
	if limit >= 0 {
		body = io.LimitReader(body, limit)
	}
	const chunk = 16 << 10
	if recorded == nil || transfer < 20*time.Millisecond || recorded.BodySize < 4*chunk {
		return io.Copy(io.Discard, body)
	}
	var buf [chunk]byte
	start := time.Now()
	var n int64
	for {
		k, err := body.Read(buf[:])
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		due := start.Add(time.Duration(float64(transfer) * float64(min(n, recorded.BodySize)) / float64(recorded.BodySize)))
		if !wait.Until(ctx, due) {
			return n, ctx.Err()
		}
	}
}

// clientEnded says whether the recording's client closed or reset the
// connection itself.
func (cl *client) clientEnded() bool {
	return cl.c.Close.EndedBy(trace.SideClient) || cl.c.QuietAt > 0
}

// holdUntil is when a client that went silent lets go of its connection:
// VanishHold after it went quiet, or the replay's end.
func (cl *client) holdUntil() time.Time {
	end := cl.p.Length
	if h := cl.p.Opts.VanishHold; h > 0 {
		end = min(end, cl.c.QuietAt+h)
	}
	return cl.at(max(end, cl.c.QuietAt))
}

// acceptKey is the Sec-WebSocket-Accept a server owes a key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// finish ends the connection the way the recording did, when it did.
func (cl *client) finish(ctx context.Context) {
	if cl.nc == nil {
		return
	}
	c := cl.c.Close
	due := cl.at(cl.c.CloseAt)
	switch {
	case cl.c.QuietAt > 0:
		// The client went silent (a laptop asleep): it reads and sends
		// nothing more, and its connection stays open until the hold is
		// over; then it is gone, as a laptop that wakes elsewhere.
		wait.Until(ctx, cl.holdUntil())
		cl.drop(true)
	case c != nil && c.By == trace.SideServer && cl.p.Opts.Speed > 0:
		// The server closed it: wait for that, a little past the moment
		// (at max speed there is no moment: close now).
		_ = cl.nc.SetReadDeadline(due.Add(grace))
		_, _ = io.Copy(io.Discard, cl.br)
		cl.drop(false)
	case c != nil && c.By == trace.SideClient && c.How == trace.CloseRST, cl.abandon:
		wait.Until(ctx, due)
		cl.drop(true)
	default:
		// Closed by the client, or still open when the capture ended (or
		// timed out there): close at that moment.
		wait.Until(ctx, due)
		cl.drop(false)
	}
}
