package capture

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/reassembly"

	"github.com/hubreplay/hubreplay/capture/httpstream"
	"github.com/hubreplay/hubreplay/capture/wsframe"
	"github.com/hubreplay/hubreplay/trace"
)

// conn follows one TCP connection: it feeds each direction's bytes to an
// HTTP parser, switches both to WebSocket framing after a 101, matches
// responses to requests in order, and writes the connection's records.
// It implements reassembly.Stream.
type conn struct {
	c             *capturer
	id            trace.ConnID // 0 until opened
	key           tuple        // client → server
	gen           uint32       // how often the 4-tuple was reused before
	isn           uint32       // the client's SYN, when seen
	sawSYN        bool
	mid           bool // began before the capture
	client        string
	server        string
	api           bool // the proxy's REST API: only route events are kept
	firstIsClient bool // the first packet seen went client → server
	half          [2]*half
	exch          []*exchange

	done                 bool
	rst                  bool
	rstTS, finTS, lastTS time.Duration
	// The client's last packet of any kind (an acknowledgement too), and
	// the server's data packets since: a client gone silent (a laptop
	// asleep) sends nothing while the server goes on sending.
	clientLast, serverLast time.Duration
	serverSince            int
	fin                    [2]bool
	closedBy               trace.Side
	switching, refusingUpg bool
	extensions             string // Sec-WebSocket-Extensions of the 101
}

const (
	c2s = 0
	s2c = 1
)

// half is one direction of a connection.
type half struct {
	dir     trace.Dir
	http    *httpstream.Parser
	ws      *wsframe.Parser
	inflate *inflater
	pending []pendingBytes // client bytes held while an upgrade is answered
	held    int
}

type pendingBytes struct {
	b  []byte
	ts time.Duration
}

// maxPending bounds the client bytes held while an upgrade is pending.
const maxPending = 1 << 20

type exchange struct {
	req, resp         *httpstream.Message
	reqDone, respDone bool
}

func newConn(c *capturer, api, firstIsClient, mid bool) *conn {
	k := &conn{c: c, api: api, firstIsClient: firstIsClient, mid: mid}
	k.half[c2s] = &half{dir: trace.ClientToServer}
	k.half[s2c] = &half{dir: trace.ServerToClient}
	k.half[c2s].http = httpstream.New(false, reqHandler{k})
	k.half[s2c].http = httpstream.New(true, respHandler{k})
	for _, h := range k.half {
		h.http.MaxBody = c.o.MaxBody
		if mid {
			// Started mid-connection: look for a start line before parsing.
			h.http.Gap(0, 0)
		}
	}
	return k
}

// open gives the connection its id and writes its conn_open. A connection
// that began before the capture opens only when it carries data: the last
// ACKs of one that just closed are not a new connection.
func (k *conn) open(ts time.Duration) {
	c := k.c
	c.nextID++
	k.id = c.nextID
	c.counters.Streams++
	c.counters.Open++
	if !k.api {
		c.emit(&trace.ConnOpen{TS: ts, Conn: k.id, Client: k.client, Server: k.server, Mid: k.mid})
	}
}

// index maps the assembler's direction (relative to the first packet) to ours.
func (k *conn) index(dir reassembly.TCPFlowDirection) int {
	if (dir == reassembly.TCPDirClientToServer) == k.firstIsClient {
		return c2s
	}
	return s2c
}

var sideOf = [2]trace.Side{trace.SideClient, trace.SideServer}

func (k *conn) Accept(tcp *layers.TCP, ci gopacket.CaptureInfo, dir reassembly.TCPFlowDirection, _ reassembly.Sequence, start *bool, _ reassembly.AssemblerContext) bool {
	*start = true // accept streams that began before the capture
	ts := k.c.ts(ci.Timestamp)
	k.lastTS = max(k.lastTS, ts)
	i := k.index(dir)
	if i == c2s {
		k.clientLast, k.serverSince = ts, 0
	} else if len(tcp.Payload) > 0 {
		k.serverSince++
		k.serverLast = ts
	}
	if tcp.RST && !k.rst {
		k.rst, k.rstTS = true, ts
		if k.closedBy == "" {
			k.closedBy = sideOf[i]
		}
	}
	if tcp.FIN && !k.fin[i] {
		k.fin[i], k.finTS = true, ts
		if k.closedBy == "" {
			k.closedBy = sideOf[i]
		}
	}
	return !k.done
}

func (k *conn) ReassembledSG(sg reassembly.ScatterGather, _ reassembly.AssemblerContext) {
	if k.done {
		return
	}
	dir, _, end, skip := sg.Info()
	i := k.index(dir)
	h := k.half[i]
	n, _ := sg.Lengths()
	at := func(off int) time.Duration { return k.c.ts(sg.CaptureInfo(off).Timestamp) }
	if k.id == 0 {
		if n == 0 {
			return
		}
		k.open(at(0))
	}
	if skip != 0 {
		lost := int64(max(skip, 0))
		ts := k.lastTS
		if n > 0 {
			ts = at(0)
		}
		k.c.counters.Gaps++
		k.c.counters.GapBytes += lost
		if !k.api {
			k.c.emit(&trace.Gap{TS: ts, Conn: k.id, Dir: h.dir, Bytes: lost})
		}
		k.gap(h, lost, ts)
	}
	if n > 0 {
		k.feed(i, sg.Fetch(n), at)
	}
	if end {
		ts := k.lastTS
		if k.rst {
			k.finish(trace.CloseRST, k.rstTS)
			return
		}
		// A FIN ends this direction: a close-delimited body is complete.
		if h.ws != nil {
			h.ws.End(ts)
			k.flushInflate(h)
		} else {
			h.http.End(ts)
		}
	}
}

func (k *conn) ReassemblyComplete(_ reassembly.AssemblerContext) bool {
	// The assembler lets go of the stream: its tuple is free again.
	if k.c.live[k.key] == k {
		delete(k.c.live, k.key)
	}
	switch {
	case k.rst:
		k.finish(trace.CloseRST, k.rstTS)
	case k.fin[c2s] && k.fin[s2c]:
		k.finish(trace.CloseFIN, k.finTS)
	case k.c.ending:
		k.finish(trace.CloseCaptureEnd, k.c.lastTS)
	default:
		k.finish(trace.CloseTimeout, k.lastTS)
	}
	return true
}

func (k *conn) gap(h *half, n int64, ts time.Duration) {
	if h.ws != nil {
		h.ws.Gap(n, ts)
		if h.inflate != nil {
			h.inflate.lose()
		}
		return
	}
	h.http.Gap(n, ts)
}

// feed hands bytes to a direction's parser, following protocol switches.
func (k *conn) feed(i int, data []byte, at func(int) time.Duration) {
	h := k.half[i]
	for len(data) > 0 {
		switch {
		case h.ws != nil:
			if err := h.ws.Feed(data, wsframe.Clock(at)); err != nil {
				k.parseError(err)
			}
			return
		case h.http.State() == httpstream.StatePaused:
			if h.held+len(data) > maxPending {
				k.c.counters.UpgradePending++
				return
			}
			h.pending = append(h.pending, pendingBytes{append([]byte(nil), data...), at(0)})
			h.held += len(data)
			return
		}
		n, err := h.http.Feed(data, httpstream.Clock(at))
		if err != nil {
			k.parseError(err)
		}
		data = data[n:]
		prev := at
		at = func(off int) time.Duration { return prev(off + n) }
		if h.http.State() == httpstream.StateSwitched {
			k.startWS(h)
		}
		k.afterUpgradeAnswer()
	}
	k.afterUpgradeAnswer()
}

// afterUpgradeAnswer moves the client side on once the server has
// answered its upgrade request: to WebSocket framing after a 101, back to
// HTTP after a refusal. Held client bytes are fed in either case.
func (k *conn) afterUpgradeAnswer() {
	cl := k.half[c2s]
	switch {
	case k.switching:
		k.switching = false
		if cl.ws == nil {
			k.startWS(cl)
		}
	case k.refusingUpg:
		k.refusingUpg = false
		cl.http.Resume()
	default:
		return
	}
	pend := cl.pending
	cl.pending, cl.held = nil, 0
	for _, p := range pend {
		ts := p.ts
		k.feed(c2s, p.b, func(int) time.Duration { return ts })
	}
}

func (k *conn) startWS(h *half) {
	h.ws = wsframe.New(func(f *wsframe.Frame) { k.frame(h, f) })
	h.ws.MaxPayload = k.c.o.MaxPayload
	if ext := parseDeflate(k.extensions, h.dir); ext != nil {
		h.inflate = ext
	}
}

func (k *conn) parseError(err error) {
	k.c.counters.ParseErrors++
	k.c.o.Log.Debug("parse error", "conn", k.id, "err", err)
}

// reqHandler and respHandler receive each direction's HTTP messages.
type reqHandler struct{ k *conn }
type respHandler struct{ k *conn }

// maxOutstanding bounds the requests a connection may have waiting for
// responses; past it the oldest is written without one.
const maxOutstanding = 256

func (r reqHandler) Head(m *httpstream.Message) {
	k := r.k
	if len(k.exch) >= maxOutstanding {
		e := k.exch[0]
		k.exch = k.exch[1:]
		e.resp = nil
		k.exchange(e)
	}
	k.exch = append(k.exch, &exchange{req: m})
	k.half[s2c].http.ExpectResponse(m.Method)
}

// Done marks a request finished. One lost before its head was complete
// has no exchange: without a method and target there is nothing to replay.
func (r reqHandler) Done(m *httpstream.Message) {
	for _, e := range r.k.exch {
		if e.req == m {
			e.reqDone = true
		}
	}
	r.k.flushExchanges(false)
}

func interim(m *httpstream.Message) bool { return m.Status < 200 && m.Status != 101 }

func (r respHandler) Head(m *httpstream.Message) {
	k := r.k
	if interim(m) {
		return
	}
	for _, e := range k.exch {
		if e.resp == nil {
			e.resp = m
			return
		}
	}
	k.c.counters.Orphans++ // a response to a request the capture did not see
}

func (r respHandler) Done(m *httpstream.Message) {
	k := r.k
	if interim(m) {
		return
	}
	for _, e := range k.exch {
		if e.resp != m {
			continue
		}
		e.respDone = true
		if e.req.WantsUpgrade() {
			if m.Status == 101 {
				k.switching = true
				k.extensions, _ = m.Header("Sec-WebSocket-Extensions")
			} else {
				k.refusingUpg = true
			}
		}
	}
	k.flushExchanges(false)
}

// flushExchanges writes finished exchanges in request order; with all,
// it writes every one left, finished or not.
func (k *conn) flushExchanges(all bool) {
	for len(k.exch) > 0 {
		e := k.exch[0]
		if !all && !(e.reqDone && e.respDone) {
			return
		}
		k.exch = k.exch[1:]
		k.exchange(e)
	}
}

func (k *conn) exchange(e *exchange) {
	req, resp := e.req, e.resp
	if k.api {
		k.route(req, resp)
		return
	}
	k.c.counters.Exchanges++
	rec := &trace.HTTP{TS: req.Start, Conn: k.id, User: trace.UserOf(req.Target), Upgrade: req.WantsUpgrade(),
		Req: trace.Request{End: req.End, Method: req.Method, Target: req.Target, Proto: req.Proto, Headers: req.Headers,
			BodySize: req.BodySize, Incomplete: req.Incomplete}}
	if len(req.Body) > 0 {
		rec.Req.Body, rec.Req.BodyForm = req.Body, trace.FormRaw
	}
	if resp != nil {
		rec.Resp = &trace.Response{Start: resp.Start, End: resp.End, Status: resp.Status, Reason: resp.Reason, Proto: resp.Proto,
			Headers: resp.Headers, BodySize: resp.BodySize, Incomplete: resp.Incomplete}
		if len(resp.Body) > 0 {
			rec.Resp.Body, rec.Resp.BodyForm = resp.Body, trace.FormRaw
		}
	}
	k.c.emit(rec)
}

// route turns a successful call to CHP's REST API into a route event.
func (k *conn) route(req, resp *httpstream.Message) {
	path, _, _ := strings.Cut(req.Target, "?")
	spec, ok := strings.CutPrefix(path, "/api/routes")
	if !ok || resp == nil || resp.Status/100 != 2 || req.Incomplete {
		return
	}
	if spec == "" {
		spec = "/"
	}
	r := &trace.Route{TS: req.Start, Path: spec}
	switch req.Method {
	case "POST":
		r.Op = trace.RouteAdd
		var body map[string]json.RawMessage
		if json.Unmarshal(req.Body, &body) == nil {
			_ = json.Unmarshal(body["target"], &r.Target)
			_ = json.Unmarshal(body["user"], &r.User)
			delete(body, "target")
			if len(body) > 0 {
				r.Data, _ = json.Marshal(body)
			}
		}
	case "DELETE":
		r.Op = trace.RouteDelete
	default:
		return // GET: the hub checking routes; nothing changes
	}
	k.c.counters.Routes++
	k.c.emit(r)
}

func (k *conn) frame(h *half, f *wsframe.Frame) {
	if k.api {
		return // the proxy's API does not speak WebSocket; nothing to replay
	}
	k.c.counters.Frames++
	rec := &trace.WSFrame{TS: f.Start, Conn: k.id, Dir: h.dir, Op: trace.Opcode(f.OpCode), Fin: f.Fin, RSV: f.Rsv,
		Masked: f.Masked, Len: f.Length, CloseCode: f.CloseCode()}
	if len(f.Payload) > 0 {
		rec.Payload, rec.Form = f.Payload, trace.FormRaw
	}
	if f.Lost > 0 || f.Incomplete {
		// Part of the payload is missing: its structure cannot be read.
		rec.Payload, rec.Form = nil, trace.FormNone
	}
	if h.inflate != nil {
		for _, r := range h.inflate.frame(rec, f) {
			k.c.emit(r)
		}
		return
	}
	k.c.emit(rec)
}

func (k *conn) flushInflate(h *half) {
	if h.inflate != nil {
		for _, r := range h.inflate.flush() {
			k.c.emit(r)
		}
	}
}

// finish ends the connection: messages in progress are written as
// incomplete, then the conn_close.
func (k *conn) finish(how trace.CloseHow, ts time.Duration) {
	if k.done {
		return
	}
	k.done = true
	if k.id == 0 {
		return // never carried data: never opened
	}
	for _, h := range k.half {
		if h.ws != nil {
			h.ws.End(ts)
			k.flushInflate(h)
		} else {
			h.http.End(ts)
		}
	}
	k.flushExchanges(true)
	k.c.counters.Open--
	if k.api {
		return
	}
	k.c.emit(&trace.ConnClose{TS: ts, Conn: k.id, How: how, By: k.closedBy, Quiet: k.quiet()})
}

// quietAfter is how long the server must have gone on sending, unanswered,
// for its client to count as gone silent: longer than any acknowledgement
// takes, and than the first retransmissions' timeouts.
const quietAfter = time.Second

// quiet is when the client went silent, if it did: its last packet was
// followed by at least two of the server's data packets over quietAfter,
// and the client never closed the connection itself.
func (k *conn) quiet() time.Duration {
	if k.serverSince < 2 || k.serverLast-k.clientLast < quietAfter || k.closedBy == trace.SideClient || k.clientLast <= 0 {
		return 0
	}
	return k.clientLast
}
