package anonymize

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
	"github.com/hubreplay/hubreplay/trace/tracetest"
)

// Anonymizing with the kernel messages parsed ahead (Prepare, on capture's
// other goroutine) gives what anonymizing them whole gives, record for
// record and byte for byte, over a session's traffic and over frames of
// every shape: kernel messages with secrets in every field, terminal
// messages, v1 binary frames, JSON that is not a kernel message, bytes
// that are not JSON, payloads kept only in part.
func TestPrepareIsRecordByteForByte(t *testing.T) {
	_, recs := tracetest.Sample(tracetest.SampleOptions{Seed: 5, Users: 6, Duration: 3 * time.Minute})
	rng := rand.New(rand.NewPCG(1, 2))
	payloads := []string{
		`{"header":{"msg_id":"T","msg_type":"execute_request","session":"T","username":"T","version":"5.3","date":"2026-11-03T15:50:00Z"},"parent_header":{"msg_id":"T","msg_type":"T"},"metadata":{"T":"T"},"content":{"code":"T","silent":false,"status":"ok","execution_state":"busy","name":"stdout","execution_count":3},"buffers":[],"channel":"shell"}`,
		`{"header":{"msg_id":"T","msg_type":"stream","session":"T","username":"T"},"parent_header":{},"content":{"name":"stdout","text":"T"},"channel":"iopub"}`,
		`{"header":{"msg_id":"T","msg_type":"T"},"channel":"T"}`,
		`{"header":null}`, `{"not":"a kernel message","T":1}`, `["stdin","T"]`, `["stdout","T\r\n"]`, `{"header":{"msg_id":`, `T`, ``,
	}
	for i, s := range payloads {
		p := []byte(strings.ReplaceAll(s, "T", apiToken+userName))
		for _, op := range []trace.Opcode{trace.OpText, trace.OpBinary} {
			recs = append(recs,
				&trace.WSFrame{Conn: trace.ConnID(i), Op: op, Len: int64(len(p)), Payload: p, Form: trace.FormRaw},
				&trace.WSFrame{Conn: trace.ConnID(i), Op: op, Len: int64(len(p)) + 10, Payload: p, Form: trace.FormRaw}, // kept in part
				&trace.WSFrame{Conn: trace.ConnID(i), Op: op, Len: int64(len(p)) + 10, Inflated: int64(len(p)), Payload: p, Form: trace.FormRaw, Deflate: trace.DeflateInflated})
		}
	}
	// A v1 binary frame: its offset table, then channel, header, parent
	// header, metadata and content.
	parts := [][]byte{[]byte("shell"), []byte(`{"msg_id":"` + sessionID + `","msg_type":"execute_request","session":"` + sessionID + `"}`), []byte(`{}`), []byte(`{}`), []byte(`{"code":"` + code + `"}`)}
	v1 := binary.LittleEndian.AppendUint64(nil, uint64(len(parts)))
	off := 8 * (len(parts) + 1)
	for _, p := range parts {
		v1 = binary.LittleEndian.AppendUint64(v1, uint64(off))
		off += len(p)
	}
	for _, p := range parts {
		v1 = append(v1, p...)
	}
	recs = append(recs, &trace.WSFrame{Op: trace.OpBinary, Len: int64(len(v1)), Payload: v1, Form: trace.FormRaw})
	for range 200 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		recs = append(recs, &trace.WSFrame{Op: trace.Opcode(1 + rng.IntN(2)), Len: int64(len(b)), Payload: b, Form: trace.FormRaw})
	}

	copyOf := func(r trace.Record) trace.Record {
		line, err := trace.AppendJSON(nil, r)
		require.NoError(t, err)
		c, err := trace.ParseJSON(line[:len(line)-1])
		require.NoError(t, err)
		return c
	}
	whole, ahead := newAnon(t), newAnon(t)
	mine := make([]trace.Record, len(recs))
	prepared := make([]any, len(recs))
	for i, r := range recs {
		mine[i] = copyOf(r)
		prepared[i] = ahead.Prepare(mine[i]) // all ahead, as the capture's stage may run ahead of the anonymizer
	}
	frames := 0
	for i, r := range recs {
		want := copyOf(r)
		whole.Record(want)
		ahead.RecordPrepared(mine[i], prepared[i])
		a, err := trace.AppendJSON(nil, want)
		require.NoError(t, err)
		b, err := trace.AppendJSON(nil, mine[i])
		require.NoError(t, err)
		require.Equal(t, string(a), string(b), "record %d", i)
		if prepared[i] != nil {
			frames++
		}
	}
	require.Greater(t, frames, 50, "text frames were prepared ahead")
}
