package wsframe

import (
	"testing"
	"time"
)

// FuzzFrames feeds arbitrary bytes in two pieces: no panic, payloads within
// the limit and never longer than the frame, times in order.
func FuzzFrames(f *testing.F) {
	for _, s := range []string{
		"\x81\x05hello",
		"\x01\x03hel\x89\x00\x80\x02lo",
		"\x81\x85\x01\x02\x03\x04iguhn",
		"\x82\x7e\x01\x00" + string(make([]byte, 256)),
		"\x88\x05\x03\xe9bye",
		"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00abc",
		"\xc1\x03abc",
	} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		var got []*Frame
		p := New(func(fr *Frame) { got = append(got, fr) })
		p.MaxPayload = 64
		k := min(int(cut), len(data))
		if p.Feed(data[:k], func(off int) time.Duration { return time.Duration(off) }) == nil {
			_ = p.Feed(data[k:], func(off int) time.Duration { return time.Duration(k + off) })
		}
		p.End(time.Duration(len(data)))
		for _, fr := range got {
			if len(fr.Payload) > 64 || int64(len(fr.Payload)) > fr.Length || fr.End < fr.Start {
				t.Fatalf("inconsistent frame %+v", fr.Header)
			}
			if !fr.Incomplete && fr.Length > int64(len(data)) {
				t.Fatalf("complete frame of %d bytes in %d bytes of input", fr.Length, len(data))
			}
		}
	})
}
