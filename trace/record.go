// Package trace owns hubreplay's on-disk trace format: the record types, a
// crash-safe writer, a streaming reader that reports damage by byte offset,
// and the summary and slicing built on them. FORMAT.md beside this file is
// the contract; this package is its reference implementation.
package trace

import (
	"encoding/json"
	"strings"
	"time"
)

// FormatName and Version identify the format in every trace's header record.
const (
	FormatName = "hubreplay-trace"
	// Version is the major format version this package writes and reads.
	// Adding optional fields or record types does not change it; changing
	// the meaning of an existing field does.
	Version = 1
)

// Type names a record type; it is the "type" field of every JSON line.
type Type string

const (
	TypeHeader    Type = "header"
	TypeConnOpen  Type = "conn_open"
	TypeConnClose Type = "conn_close"
	TypeHTTP      Type = "http"
	TypeWSFrame   Type = "ws"
	TypeRoute     Type = "route"
	TypeGap       Type = "gap"
	TypeStats     Type = "stats"
)

// Record is one line of a trace. Time is capture-relative: nanoseconds
// since Header.Start, when the recorded thing began.
type Record interface {
	Type() Type
	Time() time.Duration
}

// ConnID identifies a TCP connection within one trace.
type ConnID uint64

// Dir is the direction bytes travelled on a connection.
type Dir string

const (
	ClientToServer Dir = "c2s"
	ServerToClient Dir = "s2c"
)

// Side is one end of a connection.
type Side string

const (
	SideClient Side = "client"
	SideServer Side = "server"
)

// CloseHow says how a connection ended, as far as the capture saw.
type CloseHow string

const (
	CloseFIN        CloseHow = "fin"
	CloseRST        CloseHow = "rst"
	CloseTimeout    CloseHow = "timeout"     // idle longer than the capture's stream timeout
	CloseCaptureEnd CloseHow = "capture_end" // still open when the capture (or slice) ended
)

// RouteOp is what a route event did to the proxy's routing table.
type RouteOp string

const (
	RouteAdd    RouteOp = "add"
	RouteDelete RouteOp = "delete"
)

// PayloadForm says what a WebSocket frame's or body's kept bytes are.
type PayloadForm string

const (
	FormNone      PayloadForm = ""          // nothing kept; only the size
	FormRaw       PayloadForm = "raw"       // the bytes as seen on the wire (unmasked); needs --raw at capture
	FormRedacted  PayloadForm = "redacted"  // same size and Jupyter message structure, content replaced
	FormSynthetic PayloadForm = "synthetic" // made up by a generator
)

// Anonymization describes how a trace was anonymized. It never holds the key.
type Anonymization struct {
	// Scheme identifies the pseudonymization and redaction rules, e.g. "hmac-sha256/v1".
	Scheme string `json:"scheme"`
	// Raw is true when the capture kept secrets on an operator's explicit request.
	Raw bool `json:"raw,omitempty"`
}

// Header is the first record of every trace.
type Header struct {
	Format  string        `json:"format"`
	Version int           `json:"version"`
	Start   time.Time     `json:"start"`  // wall-clock time of ts 0, UTC
	Source  string        `json:"source"` // e.g. "pcap", "iface:eth0", "generate:lecture-peak" (never a capture file's name)
	Anon    Anonymization `json:"anon"`
	Tool    string        `json:"tool"` // the hubreplay version that wrote the trace
	Note    string        `json:"note,omitempty"`
}

// ConnOpen records a TCP connection the capture saw start (or, with Mid,
// one that was already open when the trace begins).
type ConnOpen struct {
	TS     time.Duration `json:"ts"`
	Conn   ConnID        `json:"conn"`
	Client string        `json:"client,omitempty"` // anonymized address
	Server string        `json:"server,omitempty"`
	// Mid marks a connection whose start is not in the trace: the capture
	// began mid-connection, or the trace was sliced out of a longer one.
	Mid bool `json:"mid,omitempty"`
}

// ConnClose records the end of a connection.
type ConnClose struct {
	TS   time.Duration `json:"ts"`
	Conn ConnID        `json:"conn"`
	How  CloseHow      `json:"how"`
	By   Side          `json:"by,omitempty"` // who closed or reset first, when known
	// Quiet is when the client went silent, when it did before the end:
	// it sent nothing more, not even an acknowledgement, while the server
	// went on sending (and retransmitting) until the connection ended. A
	// laptop asleep, or gone from the network without a reset.
	Quiet time.Duration `json:"quiet,omitempty"`
}

// EndedBy tells whether side ended the connection itself, with a reset
// or a close, as far as the capture saw.
func (c *ConnClose) EndedBy(side Side) bool {
	return c != nil && c.By == side && (c.How == CloseRST || c.How == CloseFIN)
}

// Vanished tells how the recorded client vanished, if it did: "reset"
// (it reset the connection), "silent" (it stopped answering, Quiet) or
// "" (it closed in good order, or the server ended the connection). A
// close mid-answer (a half-close) is the exchange's to tell.
func (c *ConnClose) Vanished() string {
	switch {
	case c == nil:
		return ""
	case c.Quiet > 0:
		return "silent"
	case c.By == SideClient && c.How == CloseRST:
		return "reset"
	}
	return ""
}

// Field is one header line, kept in wire order with duplicates.
type Field [2]string

// Request is the client half of an HTTP exchange. It starts at the
// exchange's TS (first byte) and ends at End (last byte).
type Request struct {
	End      time.Duration `json:"end"`
	Method   string        `json:"method"`
	Target   string        `json:"target"`
	Proto    string        `json:"proto,omitempty"`
	Headers  []Field       `json:"headers,omitempty"`
	BodySize int64         `json:"body_size"`
	Body     []byte        `json:"body,omitempty"`
	BodyForm PayloadForm   `json:"body_form,omitempty"`
	// Incomplete: the message was cut off (the connection closed or was
	// reset, or the capture lost its end); BodySize counts what was seen.
	Incomplete bool `json:"incomplete,omitempty"`
}

// Response is the server half of an HTTP exchange, from its first to its last byte.
type Response struct {
	Start    time.Duration `json:"start"`
	End      time.Duration `json:"end"`
	Status   int           `json:"status"`
	Reason   string        `json:"reason,omitempty"`
	Proto    string        `json:"proto,omitempty"`
	Headers  []Field       `json:"headers,omitempty"`
	BodySize int64         `json:"body_size"`
	Body     []byte        `json:"body,omitempty"`
	BodyForm PayloadForm   `json:"body_form,omitempty"`
	// Incomplete: as for Request.
	Incomplete bool `json:"incomplete,omitempty"`
}

// HTTP records one request and, if one was seen, its response.
type HTTP struct {
	TS   time.Duration `json:"ts"` // first byte of the request
	Conn ConnID        `json:"conn"`
	User string        `json:"user,omitempty"` // pseudonym, when the target names a user
	// Upgrade is true when the request asked for a protocol switch
	// (WebSocket); frames follow on the same connection after a 101.
	Upgrade bool      `json:"upgrade,omitempty"`
	Req     Request   `json:"req"`
	Resp    *Response `json:"resp,omitempty"` // nil: no response seen
}

// Opcode is a WebSocket frame opcode (RFC 6455 §5.2).
type Opcode uint8

const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

func (o Opcode) String() string {
	switch o {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "op" + string("0123456789abcdef"[o&0xF])
}

// WSFrame records one WebSocket frame.
type WSFrame struct {
	TS     time.Duration `json:"ts"`
	Conn   ConnID        `json:"conn"`
	Dir    Dir           `json:"dir"`
	Op     Opcode        `json:"op"`
	Fin    bool          `json:"fin"`
	RSV    uint8         `json:"rsv,omitempty"` // RSV1..3 as bits 2..0; RSV1 set means permessage-deflate
	Masked bool          `json:"masked,omitempty"`
	Len    int64         `json:"len"` // payload length on the wire
	// Payload holds the kept bytes in the form Form says; empty when only
	// the size was kept.
	Payload   []byte      `json:"payload,omitempty"`
	Form      PayloadForm `json:"form,omitempty"`
	MsgType   string      `json:"msg_type,omitempty"` // Jupyter message type, when known
	Channel   string      `json:"channel,omitempty"`  // Jupyter channel (shell, iopub, ...), when known
	CloseCode uint16      `json:"close_code,omitempty"`
	// Deflate says what became of a permessage-deflate frame (RSV1 set).
	Deflate DeflateState `json:"deflate,omitempty"`
	// Inflated is the decompressed size of an inflated message.
	Inflated int64 `json:"inflated,omitempty"`
}

// DeflateState says whether a compressed WebSocket message could be read.
type DeflateState string

const (
	// DeflateInflated: the message was decompressed; Payload, MsgType and
	// Channel describe the decompressed bytes, Inflated is their size.
	DeflateInflated DeflateState = "inflated"
	// DeflateOpaque: the message could not be decompressed (the capture
	// missed earlier messages whose compression context it depends on,
	// or lost bytes); only its wire length is known.
	DeflateOpaque DeflateState = "opaque"
)

// Route records a change to the proxy's routing table, as made through
// its REST API.
type Route struct {
	TS     time.Duration   `json:"ts"`
	Op     RouteOp         `json:"op"`
	Path   string          `json:"path"`
	Target string          `json:"target,omitempty"`
	User   string          `json:"user,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Gap records bytes the capture lost on one direction of a connection.
type Gap struct {
	TS    time.Duration `json:"ts"`
	Conn  ConnID        `json:"conn"`
	Dir   Dir           `json:"dir"`
	Bytes int64         `json:"bytes"`
}

// Stats records the capture's own counters, cumulative since it started.
type Stats struct {
	TS      time.Duration     `json:"ts"`
	Packets uint64            `json:"packets"`
	Bytes   uint64            `json:"bytes"`
	Drops   map[string]uint64 `json:"drops,omitempty"` // by cause: "kernel", "snaplen", "reassembly_limit", ...
}

// Unknown is a record of a type this version does not know. Readers keep
// it whole so that tools pass it through instead of dropping it.
type Unknown struct {
	TypeName string
	TS       time.Duration
	Raw      json.RawMessage
}

func (*Header) Type() Type    { return TypeHeader }
func (*ConnOpen) Type() Type  { return TypeConnOpen }
func (*ConnClose) Type() Type { return TypeConnClose }
func (*HTTP) Type() Type      { return TypeHTTP }
func (*WSFrame) Type() Type   { return TypeWSFrame }
func (*Route) Type() Type     { return TypeRoute }
func (*Gap) Type() Type       { return TypeGap }
func (*Stats) Type() Type     { return TypeStats }
func (u *Unknown) Type() Type { return Type(u.TypeName) }

func (*Header) Time() time.Duration      { return 0 }
func (r *ConnOpen) Time() time.Duration  { return r.TS }
func (r *ConnClose) Time() time.Duration { return r.TS }
func (r *HTTP) Time() time.Duration      { return r.TS }
func (r *WSFrame) Time() time.Duration   { return r.TS }
func (r *Route) Time() time.Duration     { return r.TS }
func (r *Gap) Time() time.Duration       { return r.TS }
func (r *Stats) Time() time.Duration     { return r.TS }
func (u *Unknown) Time() time.Duration   { return u.TS }

// End is when the exchange's last byte was seen.
func (h *HTTP) End() time.Duration {
	end := max(h.TS, h.Req.End)
	if h.Resp != nil {
		end = max(end, h.Resp.End)
	}
	return end
}

// HeaderValue is the first value of a header, by case-insensitive name.
func HeaderValue(h []Field, name string) (string, bool) {
	for _, f := range h {
		if strings.EqualFold(f[0], name) {
			return f[1], true
		}
	}
	return "", false
}

// ProxyAnswered tells whether the response was the proxy's own 503: it
// could not reach the target of the route it had (a server stopped or
// dead that the hub has not yet noticed), and answered with its error
// target's page (CHP passes on only that page's Content-Type and
// Content-Encoding) or its bare "Service Unavailable". JupyterHub and its
// single-user servers send X-JupyterHub-Version with every answer, so a
// 503 without it, among headers the capture kept, came from neither.
func (h *HTTP) ProxyAnswered() bool {
	if h.Resp == nil || h.Resp.Status != 503 || len(h.Resp.Headers) == 0 {
		return false
	}
	_, hub := HeaderValue(h.Resp.Headers, "X-JupyterHub-Version")
	return !hub
}

// Conn returns the connection a record belongs to, if it belongs to one.
func Conn(r Record) (ConnID, bool) {
	switch r := r.(type) {
	case *ConnOpen:
		return r.Conn, true
	case *ConnClose:
		return r.Conn, true
	case *HTTP:
		return r.Conn, true
	case *WSFrame:
		return r.Conn, true
	case *Gap:
		return r.Conn, true
	}
	return 0, false
}

// SetConn gives a record that belongs to a connection (Conn says which
// do) another connection's number, and tells whether it belongs to one.
func SetConn(r Record, id ConnID) bool {
	switch r := r.(type) {
	case *ConnOpen:
		r.Conn = id
	case *ConnClose:
		r.Conn = id
	case *HTTP:
		r.Conn = id
	case *WSFrame:
		r.Conn = id
	case *Gap:
		r.Conn = id
	default:
		return false
	}
	return true
}
