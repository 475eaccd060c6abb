package anonymize

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"regexp"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/hubreplay/hubreplay/trace"
)

// Jupyter's kernel protocol over WebSocket comes in two framings: JSON text
// frames with a "channel" key (the legacy protocol), and binary frames of
// the v1.kernel.websocket.jupyter.org protocol (an offset table, then
// channel, header, parent_header, metadata, content and buffers). Both are
// redacted to the same skeleton: message ids and sessions as pseudonyms,
// msg_type and channel kept, content reduced to a few enumerated fields,
// padded back to the original size.

type jupyterHeader struct {
	MsgID    string `json:"msg_id,omitempty"`
	MsgType  string `json:"msg_type,omitempty"`
	Session  string `json:"session,omitempty"`
	Username string `json:"username,omitempty"`
	Version  string `json:"version,omitempty"`
	Date     string `json:"date,omitempty"`
}

// jupyterContent holds the content fields that are protocol states, not
// user data; every other content field is dropped unread.
type jupyterContent struct {
	ExecutionState string   `json:"execution_state,omitempty"`
	Status         string   `json:"status,omitempty"`
	Name           string   `json:"name,omitempty"`
	ExecutionCount *float64 `json:"execution_count,omitempty"`
	Restart        *bool    `json:"restart,omitempty"`
	Wait           *bool    `json:"wait,omitempty"`
	Silent         *bool    `json:"silent,omitempty"`
	StoreHistory   *bool    `json:"store_history,omitempty"`
	AllowStdin     *bool    `json:"allow_stdin,omitempty"`
	StopOnError    *bool    `json:"stop_on_error,omitempty"`
}

var (
	versionRE = regexp.MustCompile(`^[0-9.]{1,12}$`)
	channelRE = regexp.MustCompile(`^(shell|iopub|stdin|control|hb)$`)
)

// header redacts a message header: ids and sessions become pseudonyms,
// the user a user pseudonym, msg_type, version and date stay if they look
// like what they are.
func (a *Anonymizer) header(h jupyterHeader) (jupyterHeader, string) {
	typ := ""
	if msgTypes[h.MsgType] {
		typ = h.MsgType
	}
	out := jupyterHeader{MsgType: typ}
	if h.MsgID != "" {
		out.MsgID = a.pseudo("m-", "msg", h.MsgID, 20)
	}
	if h.Session != "" {
		out.Session = a.pseudo("s-", "session", h.Session, 16)
	}
	out.Username = a.User(h.Username)
	if versionRE.MatchString(h.Version) {
		out.Version = h.Version
	}
	if timeRE.MatchString(h.Date) {
		out.Date = h.Date
	}
	return out, typ
}

func redactContent(c jupyterContent) jupyterContent {
	for _, f := range []struct {
		v   *string
		set map[string]bool
	}{{&c.ExecutionState, executionStates}, {&c.Status, replyStatuses}, {&c.Name, streamNames}} {
		if !f.set[*f.v] {
			*f.v = ""
		}
	}
	return c
}

// jupyterParts is one message, redacted, before padding.
type jupyterParts struct {
	channel        string
	header, parent jupyterHeader
	content        jupyterContent
	msgType        string
}

func (a *Anonymizer) parts(channel string, header, parent jupyterHeader, content jupyterContent) (jupyterParts, bool) {
	h, typ := a.header(header)
	if typ == "" {
		return jupyterParts{}, false
	}
	p, _ := a.header(parent)
	if !channelRE.MatchString(channel) {
		channel = ""
	}
	return jupyterParts{channel: channel, header: h, parent: p, content: redactContent(content), msgType: typ}, true
}

// v1Leniency keeps what encoding/json accepted: names in any case,
// duplicate names (the last wins), invalid UTF-8 (replaced). Only these,
// not all of v1's options (jsonv1.DefaultOptionsV1, which trace.ParseJSON
// needs for its durations): those cost 60% more per kernel message.
var v1Leniency = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true),
	jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// unmarshal parses a kernel or terminal message. encoding/json/v2 (its
// mirror until Go 1.27) parses in one pass, where encoding/json first
// scans the whole payload to validate it: that scan was a sixth of
// capture's CPU, most of it over code and outputs that are then skipped.
// Its output is never written anywhere: what is written is built from
// the fields read, so a parser that read more or less only changes how
// much of a message's skeleton is kept (unparsable keeps only the length).
func unmarshal(b []byte, v any) error { return jsonv2.Unmarshal(b, v, v1Leniency) }

// firstByte is the first non-space byte of b, to tell JSON objects from
// arrays before paying for a full parse.
func firstByte(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

// padJSON appends a "_pad" member to a JSON object so that it is size
// bytes long, when it is shorter than that.
func padJSON(obj []byte, size int) []byte {
	const member = `,"_pad":""` // 10 bytes
	if len(obj) < 2 || len(obj)+len(member) > size {
		return obj
	}
	n := size - len(obj) - len(member)
	if len(obj) == 2 { // "{}": no comma
		n++
		out := append([]byte(`{"_pad":"`), bytes.Repeat([]byte{'x'}, n)...)
		return append(out, `"}`...)
	}
	out := append([]byte{}, obj[:len(obj)-1]...)
	out = append(out, `,"_pad":"`...)
	out = append(out, bytes.Repeat([]byte{'x'}, n)...)
	return append(out, `"}`...)
}

// legacyJSON redacts a JSON text frame of the legacy kernel protocol.
// m is the payload parsed (parseLegacy), nil when it is not a kernel
// message.
func (a *Anonymizer) legacyJSON(m *legacyParsed, size int) ([]byte, string, string, bool) {
	if m == nil {
		return nil, "", "", false
	}
	p, ok := a.parts(m.Channel, *m.Header, m.ParentHeader, m.Content)
	if !ok {
		return nil, "", "", false
	}
	out, err := json.Marshal(legacyMessage{Header: p.header, ParentHeader: p.parent, Metadata: struct{}{},
		Content: p.content, Buffers: []any{}, Channel: p.channel})
	if err != nil {
		return nil, "", "", false
	}
	return padJSON(out, size), p.msgType, p.channel, true
}

// legacyParsed is what is read of a legacy kernel message.
type legacyParsed struct {
	Header       *jupyterHeader `json:"header"`
	ParentHeader jupyterHeader  `json:"parent_header"`
	Content      jupyterContent `json:"content"`
	Channel      string         `json:"channel"`
}

// parseLegacy parses a text frame's payload as a legacy kernel message, in
// one parse: the fields not named in legacyParsed (code, outputs,
// metadata) are skipped, never decoded. Nil when it is not one. It needs
// nothing of an Anonymizer's (Prepare).
func parseLegacy(payload []byte) *legacyParsed {
	var m legacyParsed
	if firstByte(payload) != '{' || unmarshal(payload, &m) != nil || m.Header == nil {
		return nil
	}
	return &m
}

type legacyMessage struct {
	Header       jupyterHeader  `json:"header"`
	ParentHeader jupyterHeader  `json:"parent_header"`
	Metadata     struct{}       `json:"metadata"`
	Content      jupyterContent `json:"content"`
	Buffers      []any          `json:"buffers"`
	Channel      string         `json:"channel"`
}

// v1Binary redacts a binary frame of the v1.kernel.websocket.jupyter.org
// protocol, keeping its layout.
func (a *Anonymizer) v1Binary(payload []byte, size int) ([]byte, string, string, bool) {
	if len(payload) < 8 {
		return nil, "", "", false
	}
	n := binary.LittleEndian.Uint64(payload)
	if n < 5 || n > 64 || uint64(len(payload)) < 8*(n+1) {
		return nil, "", "", false
	}
	offs := make([]int, n+1)
	for i := range n {
		o := binary.LittleEndian.Uint64(payload[8*(i+1):])
		if o > uint64(len(payload)) || (i > 0 && o < uint64(offs[i-1])) {
			return nil, "", "", false
		}
		offs[i] = int(o)
	}
	offs[n] = len(payload)
	part := func(i int) []byte { return payload[offs[i]:offs[i+1]] }
	var h, parent jupyterHeader
	var content jupyterContent
	if unmarshal(part(1), &h) != nil {
		return nil, "", "", false
	}
	_ = unmarshal(part(2), &parent)
	_ = unmarshal(part(4), &content)
	p, ok := a.parts(string(part(0)), h, parent, content)
	if !ok {
		return nil, "", "", false
	}
	hb, _ := json.Marshal(p.header)
	ph, _ := json.Marshal(p.parent)
	c, _ := json.Marshal(p.content)
	msg := [][]byte{[]byte(p.channel), hb, ph, []byte("{}"), c}
	table := 8 * (1 + len(msg) + 1)
	fixed := table
	for _, m := range msg[:4] {
		fixed += len(m)
	}
	msg[4] = padJSON(c, size-fixed)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(msg)+1))
	off := table
	for _, m := range msg {
		out = binary.LittleEndian.AppendUint64(out, uint64(off))
		off += len(m)
	}
	out = binary.LittleEndian.AppendUint64(out, uint64(off)) // where buffers would start: none
	for _, m := range msg {
		out = append(out, m...)
	}
	return out, p.msgType, p.channel, true
}

// terminadoTypes are the message types of the terminals WebSocket.
var terminadoTypes = map[string]bool{"stdin": true, "stdout": true, "setup": true, "set_size": true, "disconnect": true}

// terminado redacts a terminal message: ["stdin", "keystrokes"] keeps its
// type and sizes, never the keystrokes or the output.
func terminado(payload []byte, size int) ([]byte, string, bool) {
	var m []any
	if firstByte(payload) != '[' || unmarshal(payload, &m) != nil || len(m) == 0 {
		return nil, "", false
	}
	typ, _ := m[0].(string)
	if !terminadoTypes[typ] {
		return nil, "", false
	}
	out := []any{typ}
	for _, v := range m[1:] {
		switch v := v.(type) {
		case float64:
			out = append(out, v)
		case string:
			out = append(out, string(bytes.Repeat([]byte{'x'}, len(v))))
		default:
			out = append(out, map[string]any{})
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, "", false
	}
	// Escapes and spacing make the sizes differ; the last string absorbs it.
	for i := len(out) - 1; i > 0 && len(b) != size; i-- {
		if s, ok := out[i].(string); ok && len(s)+size-len(b) >= 0 {
			out[i] = strings.Repeat("x", len(s)+size-len(b))
			if b, err = json.Marshal(out); err != nil {
				return nil, "", false
			}
			break
		}
	}
	return b, typ, true
}

// whole tells whether a frame's payload is all there (and how long it
// is): only part of one kept cannot have its structure trusted.
func whole(f *trace.WSFrame) (int, bool) {
	size := int(f.Len)
	if f.Inflated > 0 {
		size = int(f.Inflated)
	}
	return size, len(f.Payload) > 0 && len(f.Payload) >= size
}

// Prepared is the part of anonymizing a record that needs nothing of the
// Anonymizer's: parsing a kernel message's JSON, the most of anonymizing
// a capture. Prepare makes it; RecordPrepared uses it.
type Prepared struct {
	legacy *legacyParsed
}

// Prepare does ahead what anonymizing r needs and touches nothing of a's
// (its key, its rules or what it learned): it may run on another
// goroutine than the Anonymizer, concurrently with it, as long as r is
// not changed until RecordPrepared takes it. Nil when there is nothing to
// do ahead.
func (a *Anonymizer) Prepare(r trace.Record) any {
	f, ok := r.(*trace.WSFrame)
	if !ok || f.Op != trace.OpText {
		return nil
	}
	if _, ok := whole(f); !ok {
		return nil
	}
	return &Prepared{legacy: parseLegacy(f.Payload)}
}

// RecordPrepared is Record, with what Prepare did for r ahead (or nil).
// The result is Record's, byte for byte.
func (a *Anonymizer) RecordPrepared(r trace.Record, p any) {
	pre, _ := p.(*Prepared)
	if f, ok := r.(*trace.WSFrame); ok && pre != nil {
		a.frame(f, pre)
		return
	}
	a.Record(r)
}

// frame redacts a WebSocket frame's payload, with its parse done ahead
// (pre) or not (nil). What cannot be recognised as a Jupyter or terminal
// message keeps only its length.
func (a *Anonymizer) frame(f *trace.WSFrame, pre *Prepared) {
	size, all := whole(f)
	payload := f.Payload
	f.Payload, f.Form = nil, trace.FormNone
	if !all {
		return
	}
	var (
		out          []byte
		typ, channel string
		ok           bool
	)
	switch f.Op {
	case trace.OpText:
		var m *legacyParsed
		if pre != nil {
			m = pre.legacy
		} else {
			m = parseLegacy(payload)
		}
		out, typ, channel, ok = a.legacyJSON(m, size)
		if !ok {
			out, typ, ok = terminado(payload, size)
		}
	case trace.OpBinary:
		out, typ, channel, ok = a.v1Binary(payload, size)
	}
	if !ok {
		return
	}
	f.Payload, f.Form, f.MsgType, f.Channel = out, trace.FormRedacted, typ, channel
}
