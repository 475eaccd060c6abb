package trace

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// AppendJSON appends r as one JSON line (with its trailing newline) to dst.
// The "type" key always comes first, so that `grep '^{"type":"http"'`
// works on decompressed traces and decoding needs no second pass.
func AppendJSON(dst []byte, r Record) ([]byte, error) {
	if f, ok := r.(*WSFrame); ok {
		return appendWSFrame(dst, f), nil
	}
	return appendReflect(dst, r)
}

// appendReflect is AppendJSON by encoding/json: every record type but the
// most frequent one goes this way.
func appendReflect(dst []byte, r Record) ([]byte, error) {
	if u, ok := r.(*Unknown); ok {
		var buf bytes.Buffer
		if err := json.Compact(&buf, u.Raw); err != nil {
			return dst, fmt.Errorf("encode %s record: %w", u.TypeName, err)
		}
		return append(append(dst, buf.Bytes()...), '\n'), nil
	}
	body, err := json.Marshal(r)
	if err != nil {
		return dst, fmt.Errorf("encode %s record: %w", r.Type(), err)
	}
	if len(body) < 2 || body[0] != '{' {
		return dst, fmt.Errorf("encode %s record: not a JSON object", r.Type())
	}
	dst = append(dst, `{"type":`...)
	dst = appendJSONString(dst, string(r.Type()))
	if len(body) > 2 { // not "{}"
		dst = append(dst, ',')
	}
	dst = append(dst, body[1:]...)
	return append(dst, '\n'), nil
}

// appendJSONString appends s quoted as encoding/json quotes it: plain
// printable ASCII as it is, anything else (escapes, HTML characters,
// other scripts, invalid UTF-8) by encoding/json itself.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendWSFrame is AppendJSON for a WebSocket frame, written out by hand:
// frames are most of a capture's records, and encoding/json's reflection
// was a fifth of capture's time. It gives encoding/json's bytes exactly
// (TestAppendJSONIsEncodingJSON).
func appendWSFrame(dst []byte, f *WSFrame) []byte {
	dst = append(dst, `{"type":"ws","ts":`...)
	dst = strconv.AppendInt(dst, int64(f.TS), 10)
	dst = append(dst, `,"conn":`...)
	dst = strconv.AppendUint(dst, uint64(f.Conn), 10)
	dst = append(dst, `,"dir":`...)
	dst = appendJSONString(dst, string(f.Dir))
	dst = append(dst, `,"op":`...)
	dst = strconv.AppendUint(dst, uint64(f.Op), 10)
	dst = append(dst, `,"fin":`...)
	dst = strconv.AppendBool(dst, f.Fin)
	if f.RSV != 0 {
		dst = append(dst, `,"rsv":`...)
		dst = strconv.AppendUint(dst, uint64(f.RSV), 10)
	}
	if f.Masked {
		dst = append(dst, `,"masked":true`...)
	}
	dst = append(dst, `,"len":`...)
	dst = strconv.AppendInt(dst, f.Len, 10)
	if len(f.Payload) > 0 {
		dst = append(dst, `,"payload":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, f.Payload)
		dst = append(dst, '"')
	}
	for _, kv := range [...]struct{ key, v string }{
		{`,"form":`, string(f.Form)}, {`,"msg_type":`, f.MsgType}, {`,"channel":`, f.Channel},
	} {
		if kv.v != "" {
			dst = append(dst, kv.key...)
			dst = appendJSONString(dst, kv.v)
		}
	}
	if f.CloseCode != 0 {
		dst = append(dst, `,"close_code":`...)
		dst = strconv.AppendUint(dst, uint64(f.CloseCode), 10)
	}
	if f.Deflate != "" {
		dst = append(dst, `,"deflate":`...)
		dst = appendJSONString(dst, string(f.Deflate))
	}
	if f.Inflated != 0 {
		dst = append(dst, `,"inflated":`...)
		dst = strconv.AppendInt(dst, f.Inflated, 10)
	}
	return append(dst, "}\n"...)
}

// registered are record types other packages own, written in the same
// framing (replay's results, compare's samples): ParseJSON decodes them
// once, into their own types.
var (
	registryMu sync.RWMutex
	registered = map[Type]func() Record{}
)

// Register makes ParseJSON decode records of typ with a value from new.
// The package that owns a record type registers it, in an init function;
// a type registered twice, or one of the trace's own, is a programming
// error.
func Register(typ Type, new func() Record) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registered[typ]; ok || builtin(typ) {
		panic("trace: record type " + string(typ) + " registered twice")
	}
	registered[typ] = new
}

func builtin(t Type) bool {
	switch t {
	case TypeHeader, TypeConnOpen, TypeConnClose, TypeHTTP, TypeWSFrame, TypeRoute, TypeGap, TypeStats:
		return true
	}
	return false
}

// ErrNoType is returned for a JSON line without a "type" field.
var ErrNoType = errors.New(`record has no "type" field`)

// v1Semantics decodes as encoding/json does (durations as nanoseconds,
// names in any case, the methods of its interfaces), in encoding/json/v2's
// one pass instead of a validating scan and then a decode: reading a
// trace is most of what planning a replay costs.
var v1Semantics = jsonv1.DefaultOptionsV1()

// ParseJSON decodes one JSON line (without its newline) into a record.
// Records of types neither the trace's nor registered come back as
// *Unknown.
func ParseJSON(line []byte) (Record, error) {
	typ, ok := fastType(line)
	if !ok {
		var probe struct {
			Type *string `json:"type"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, err
		}
		if probe.Type == nil {
			return nil, ErrNoType
		}
		typ = *probe.Type
	}
	var r Record
	switch Type(typ) {
	case TypeHeader:
		r = new(Header)
	case TypeConnOpen:
		r = new(ConnOpen)
	case TypeConnClose:
		r = new(ConnClose)
	case TypeHTTP:
		r = new(HTTP)
	case TypeWSFrame:
		r = new(WSFrame)
	case TypeRoute:
		r = new(Route)
	case TypeGap:
		r = new(Gap)
	case TypeStats:
		r = new(Stats)
	default:
		registryMu.RLock()
		mk := registered[Type(typ)]
		registryMu.RUnlock()
		if mk != nil {
			r = mk()
			break
		}
		var probe struct {
			TS time.Duration `json:"ts"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, err
		}
		return &Unknown{TypeName: typ, TS: probe.TS, Raw: append(json.RawMessage(nil), line...)}, nil
	}
	if err := jsonv2.Unmarshal(line, r, v1Semantics); err != nil {
		return nil, fmt.Errorf("%s record: %w", typ, err)
	}
	return r, nil
}

// fastType reads the type from a line that starts the way AppendJSON
// writes it: {"type":"name",  — names never need escaping.
func fastType(line []byte) (string, bool) {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return "", false
	}
	rest := line[len(prefix):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
		return "", false
	}
	return string(rest[:end]), true
}
