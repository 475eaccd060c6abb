// Package tracetest makes traces for tests: random records of every type
// for property tests, and a small plausible JupyterHub session for tests,
// benchmarks and the interim demo.
package tracetest

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hubreplay/hubreplay/trace"
	"pgregory.net/rapid"
)

// Every record type the format knows, plus an unknown one: the round-trip
// property must hold for all of them.
var typeNames = []trace.Type{
	trace.TypeConnOpen, trace.TypeConnClose, trace.TypeHTTP, trace.TypeWSFrame,
	trace.TypeRoute, trace.TypeGap, trace.TypeStats, "unknown",
}

var (
	genTS = rapid.Custom(func(t *rapid.T) time.Duration {
		return time.Duration(rapid.Int64Range(0, int64(48*time.Hour)).Draw(t, "ts"))
	})
	genConn  = rapid.Custom(func(t *rapid.T) trace.ConnID { return trace.ConnID(rapid.Uint64().Draw(t, "conn")) })
	genDir   = rapid.SampledFrom([]trace.Dir{trace.ClientToServer, trace.ServerToClient})
	genBytes = rapid.OneOf(rapid.Just([]byte(nil)), rapid.SliceOfN(rapid.Byte(), 1, 64))
	genForm  = rapid.SampledFrom([]trace.PayloadForm{trace.FormNone, trace.FormRaw, trace.FormRedacted, trace.FormSynthetic})
	genToken = rapid.StringMatching(`[a-zA-Z0-9_.-]{0,16}`)
	genText  = rapid.String() // any valid Unicode, to catch escaping mistakes
	genField = rapid.Custom(func(t *rapid.T) trace.Field {
		return trace.Field{rapid.StringMatching(`[A-Za-z-]{1,20}`).Draw(t, "name"), genText.Draw(t, "value")}
	})
	genFields = rapid.OneOf(rapid.Just([]trace.Field(nil)), rapid.SliceOfN(genField, 1, 8))
)

// Header draws a valid header.
var Header = rapid.Custom(func(t *rapid.T) *trace.Header {
	return &trace.Header{
		Format:  trace.FormatName,
		Version: trace.Version,
		Start:   time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "nsec")).UTC(),
		Source:  genText.Draw(t, "source"),
		Anon:    trace.Anonymization{Scheme: genToken.Draw(t, "scheme"), Raw: rapid.Bool().Draw(t, "raw")},
		Tool:    rapid.StringMatching(`hubreplay [a-z0-9.+-]{1,12}`).Draw(t, "tool"), // empty means "fill in"
		Note:    genText.Draw(t, "note"),
	}
})

// Record draws a record of any type but the header.
var Record = rapid.Custom(func(t *rapid.T) trace.Record {
	switch rapid.SampledFrom(typeNames).Draw(t, "type") {
	case trace.TypeConnOpen:
		return &trace.ConnOpen{TS: genTS.Draw(t, "ts"), Conn: genConn.Draw(t, "conn"),
			Client: genText.Draw(t, "client"), Server: genText.Draw(t, "server"), Mid: rapid.Bool().Draw(t, "mid")}
	case trace.TypeConnClose:
		return &trace.ConnClose{TS: genTS.Draw(t, "ts"), Conn: genConn.Draw(t, "conn"),
			How: rapid.SampledFrom([]trace.CloseHow{trace.CloseFIN, trace.CloseRST, trace.CloseTimeout, trace.CloseCaptureEnd}).Draw(t, "how"),
			By:  rapid.SampledFrom([]trace.Side{"", trace.SideClient, trace.SideServer}).Draw(t, "by")}
	case trace.TypeHTTP:
		h := &trace.HTTP{TS: genTS.Draw(t, "ts"), Conn: genConn.Draw(t, "conn"), User: genToken.Draw(t, "user"),
			Upgrade: rapid.Bool().Draw(t, "upgrade"),
			Req: trace.Request{End: genTS.Draw(t, "end"), Method: rapid.StringMatching(`[A-Z]{1,8}`).Draw(t, "method"),
				Target: genText.Draw(t, "target"), Proto: genToken.Draw(t, "proto"), Headers: genFields.Draw(t, "headers"),
				BodySize: rapid.Int64Min(0).Draw(t, "size"), Body: genBytes.Draw(t, "body"), BodyForm: genForm.Draw(t, "form"), Incomplete: rapid.Bool().Draw(t, "rinc")}}
		if rapid.Bool().Draw(t, "has_resp") {
			h.Resp = &trace.Response{Start: genTS.Draw(t, "rstart"), End: genTS.Draw(t, "rend"),
				Status: rapid.IntRange(100, 599).Draw(t, "status"), Reason: genText.Draw(t, "reason"), Proto: genToken.Draw(t, "rproto"),
				Headers: genFields.Draw(t, "rheaders"), BodySize: rapid.Int64Min(0).Draw(t, "rsize"),
				Body: genBytes.Draw(t, "rbody"), BodyForm: genForm.Draw(t, "rform"), Incomplete: rapid.Bool().Draw(t, "sinc")}
		}
		return h
	case trace.TypeWSFrame:
		return &trace.WSFrame{TS: genTS.Draw(t, "ts"), Conn: genConn.Draw(t, "conn"), Dir: genDir.Draw(t, "dir"),
			Op: trace.Opcode(rapid.Uint8Range(0, 15).Draw(t, "op")), Fin: rapid.Bool().Draw(t, "fin"),
			RSV: rapid.Uint8Range(0, 7).Draw(t, "rsv"), Masked: rapid.Bool().Draw(t, "masked"),
			Len: rapid.Int64Min(0).Draw(t, "len"), Payload: genBytes.Draw(t, "payload"), Form: genForm.Draw(t, "form"),
			MsgType: genToken.Draw(t, "msg_type"), Channel: genToken.Draw(t, "channel"), CloseCode: rapid.Uint16().Draw(t, "code"),
			Deflate:  rapid.SampledFrom([]trace.DeflateState{"", trace.DeflateInflated, trace.DeflateOpaque}).Draw(t, "deflate"),
			Inflated: rapid.Int64Min(0).Draw(t, "inflated")}
	case trace.TypeRoute:
		r := &trace.Route{TS: genTS.Draw(t, "ts"), Op: rapid.SampledFrom([]trace.RouteOp{trace.RouteAdd, trace.RouteDelete}).Draw(t, "op"),
			Path: genText.Draw(t, "path"), Target: genText.Draw(t, "target"), User: genToken.Draw(t, "user")}
		if rapid.Bool().Draw(t, "has_data") {
			r.Data = mustJSON(map[string]string{"user": genText.Draw(t, "duser"), "last_activity": genText.Draw(t, "dlast")})
		}
		return r
	case trace.TypeGap:
		return &trace.Gap{TS: genTS.Draw(t, "ts"), Conn: genConn.Draw(t, "conn"), Dir: genDir.Draw(t, "dir"), Bytes: rapid.Int64Min(0).Draw(t, "bytes")}
	case trace.TypeStats:
		s := &trace.Stats{TS: genTS.Draw(t, "ts"), Packets: rapid.Uint64().Draw(t, "packets"), Bytes: rapid.Uint64().Draw(t, "bytes")}
		if rapid.Bool().Draw(t, "has_drops") {
			s.Drops = rapid.MapOfN(rapid.StringMatching(`[a-z_]{1,12}`), rapid.Uint64(), 1, 4).Draw(t, "drops")
		}
		return s
	default:
		// A record type from a newer hubreplay: it must pass through whole.
		name := rapid.StringMatching(`x_[a-z_]{1,12}`).Draw(t, "name")
		ts := genTS.Draw(t, "ts")
		// As a newer writer would write it: the type first.
		raw := fmt.Appendf(nil, `{"type":%q,"ts":%d,"payload":%s}`, name, int64(ts), mustJSON(genText.Draw(t, "payload")))
		return &trace.Unknown{TypeName: name, TS: ts, Raw: json.RawMessage(raw)}
	}
})

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("tracetest: %v", err))
	}
	return b
}
