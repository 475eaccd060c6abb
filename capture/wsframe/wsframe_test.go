package wsframe

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func wire(t testing.TB, frames ...ws.Frame) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, f := range frames {
		require.NoError(t, ws.WriteFrame(&b, f))
	}
	return b.Bytes()
}

func parseAll(data []byte, cuts ...int) ([]*Frame, error) {
	var got []*Frame
	p := New(func(f *Frame) { got = append(got, f) })
	pos := 0
	for _, end := range append(cuts, len(data)) {
		if end < pos || end > len(data) {
			continue
		}
		base := pos
		if err := p.Feed(data[pos:end], func(off int) time.Duration { return time.Duration(base+off) * time.Microsecond }); err != nil {
			return got, err
		}
		pos = end
	}
	return got, nil
}

func TestMaskedFragmentedAndControlFrames(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	msg := []byte(`{"header":{"msg_type":"execute_request"}}`)
	data := wire(t,
		ws.MaskFrameWith(ws.NewFrame(ws.OpText, false, msg[:10]), mask),
		ws.MaskFrameWith(ws.NewPingFrame([]byte("p")), mask),
		ws.MaskFrameWith(ws.NewFrame(ws.OpContinuation, true, msg[10:]), mask),
		ws.NewBinaryFrame(bytes.Repeat([]byte{7}, 70000)), // 64-bit length
		ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye")),
	)
	got, err := parseAll(data)
	require.NoError(t, err)
	require.Len(t, got, 5)
	assert.Equal(t, ws.OpText, got[0].OpCode)
	assert.False(t, got[0].Fin)
	assert.True(t, got[0].Masked)
	assert.Equal(t, msg[:10], got[0].Payload, "payload is unmasked")
	assert.Equal(t, ws.OpPing, got[1].OpCode)
	assert.Equal(t, msg[10:], got[2].Payload, "the mask offset restarts in each frame")
	assert.True(t, got[2].Fin)
	assert.Equal(t, int64(70000), got[3].Length)
	assert.Len(t, got[3].Payload, 70000)
	assert.Equal(t, uint16(1001), got[4].CloseCode())
	assert.Equal(t, time.Duration(0), got[0].Start)
	assert.Equal(t, time.Duration(len(data)-1)*time.Microsecond, got[4].End)
}

func TestPayloadLimitAndGaps(t *testing.T) {
	data := wire(t, ws.NewBinaryFrame(bytes.Repeat([]byte{1}, 5000)), ws.NewTextFrame([]byte("after")))
	var got []*Frame
	p := New(func(f *Frame) { got = append(got, f) })
	p.MaxPayload = 100
	clock := func(off int) time.Duration { return time.Duration(off) }
	require.NoError(t, p.Feed(data[:1000], clock))
	p.Gap(2000, 1)                                 // inside the payload: skipped
	require.NoError(t, p.Feed(data[3000:], clock)) // the rest of it, and the next frame
	require.Len(t, got, 2)
	assert.Equal(t, int64(5000), got[0].Length)
	assert.Equal(t, int64(2000), got[0].Lost)
	assert.Len(t, got[0].Payload, 100)
	assert.True(t, got[0].Truncated())
	assert.Equal(t, "after", string(got[1].Payload))

	// A gap that swallows a header: the parser stops, it cannot resync.
	p.Gap(10, 2)
	assert.True(t, p.Lost())
	require.NoError(t, p.Feed([]byte{0x81, 0x01, 'x'}, clock))
	assert.Len(t, got, 2)
}

func TestBadHeaders(t *testing.T) {
	for name, data := range map[string][]byte{
		"reserved opcode":       {0x83, 0x00},
		"long ping":             {0x89, 126, 0x00, 200},
		"fragmented close":      {0x08, 0x00},
		"64-bit length MSB set": {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseAll(append(data, make([]byte, 300)...))
			var he *HeaderError
			require.ErrorAs(t, err, &he)
			assert.Contains(t, err.Error(), "malformed WebSocket frame header at byte 0")
		})
	}
}

func TestEndMidFrame(t *testing.T) {
	data := wire(t, ws.NewTextFrame([]byte("hello world")))
	var got []*Frame
	p := New(func(f *Frame) { got = append(got, f) })
	require.NoError(t, p.Feed(data[:5], func(off int) time.Duration { return 0 }))
	p.End(9)
	require.Len(t, got, 1)
	assert.True(t, got[0].Incomplete)
	assert.Equal(t, "hel", string(got[0].Payload))
}

// However the bytes are cut, the same frames come out.
func TestSplitProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var frames []ws.Frame
		for range rapid.IntRange(1, 6).Draw(t, "frames") {
			p := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "payload")
			f := ws.NewFrame(rapid.SampledFrom([]ws.OpCode{ws.OpText, ws.OpBinary, ws.OpContinuation}).Draw(t, "op"), rapid.Bool().Draw(t, "fin"), p)
			if rapid.Bool().Draw(t, "masked") {
				f = ws.MaskFrameWith(f, [4]byte{9, 8, 7, 6})
			}
			frames = append(frames, f)
		}
		var b bytes.Buffer
		for _, f := range frames {
			if err := ws.WriteFrame(&b, f); err != nil {
				t.Fatal(err)
			}
		}
		data := b.Bytes()
		cuts := rapid.SliceOfN(rapid.IntRange(0, len(data)), 0, 12).Draw(t, "cuts")
		for i := 1; i < len(cuts); i++ {
			cuts[i] = max(cuts[i], cuts[i-1])
		}
		got, err := parseAll(data, cuts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(frames) {
			t.Fatalf("got %d frames, want %d", len(got), len(frames))
		}
		for i, f := range frames {
			want := append([]byte(nil), f.Payload...)
			if f.Header.Masked {
				ws.Cipher(want, f.Header.Mask, 0)
			}
			if got[i].OpCode != f.Header.OpCode || got[i].Fin != f.Header.Fin || !bytes.Equal(got[i].Payload, want) {
				t.Fatalf("frame %d: got %+v", i, got[i])
			}
		}
	})
}
