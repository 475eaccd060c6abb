package trace_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

// The hand-written encoder of WebSocket frames writes what encoding/json
// writes, byte for byte: every field, empty or not, any string (escapes,
// HTML characters, other scripts, invalid UTF-8), any number.
func TestAppendJSONIsEncodingJSON(t *testing.T) {
	// Plain names, any Unicode, and strings made of what encoding/json
	// escapes or replaces: quotes, backslashes, control and HTML
	// characters, U+2028, bytes that are not UTF-8.
	awkward := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "Z", " ", "~", "\"", "\\", "\x00", "\n", "\x1f", "\x7f",
		"<", ">", "&", "é", "\u2028", "\u2029", "\xff", "\xc3", "😀"}), 0, 12)
	anyString := rapid.OneOf(rapid.String(), rapid.StringMatching(`[a-z_]{0,12}`),
		rapid.Custom(func(t *rapid.T) string { return strings.Join(awkward.Draw(t, "parts"), "") }),
		rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOf(rapid.Byte()).Draw(t, "raw")) }))
	frame := rapid.Custom(func(t *rapid.T) trace.Record {
		f := &trace.WSFrame{TS: time.Duration(rapid.Int64().Draw(t, "ts")), Conn: trace.ConnID(rapid.Uint64().Draw(t, "conn")),
			Dir: trace.Dir(anyString.Draw(t, "dir")), Op: trace.Opcode(rapid.Uint8().Draw(t, "op")), Fin: rapid.Bool().Draw(t, "fin"),
			RSV: rapid.Uint8().Draw(t, "rsv"), Masked: rapid.Bool().Draw(t, "masked"), Len: rapid.Int64().Draw(t, "len"),
			Form: trace.PayloadForm(anyString.Draw(t, "form")), MsgType: anyString.Draw(t, "msg_type"), Channel: anyString.Draw(t, "channel"),
			CloseCode: rapid.Uint16().Draw(t, "code"), Deflate: trace.DeflateState(anyString.Draw(t, "deflate")), Inflated: rapid.Int64().Draw(t, "inflated")}
		switch rapid.IntRange(0, 2).Draw(t, "payload") {
		case 1:
			f.Payload = []byte{}
		case 2:
			f.Payload = rapid.SliceOfN(rapid.Byte(), 1, 300).Draw(t, "bytes")
		}
		return f
	})
	rapid.Check(t, func(rt *rapid.T) {
		r := rapid.OneOf(frame, tracetest.Record).Draw(rt, "record")
		got, err := trace.AppendJSON([]byte("x"), r)
		require.NoError(rt, err)
		want, err := trace.AppendReflect([]byte("x"), r)
		require.NoError(rt, err)
		require.Equal(rt, string(want), string(got))
	})
}
