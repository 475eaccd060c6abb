package httpstream

import (
	"testing"
	"time"
)

// FuzzStream feeds arbitrary bytes, cut at an arbitrary point, to request
// and response parsers: they must not panic, must account for every byte,
// and what they report must be self-consistent.
func FuzzStream(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /hub/login HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00",
		"GET /c HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x80abcd",
		"HTTP/1.0 200 OK\r\n\r\nbody until close",
		"junk\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
	} {
		f.Add([]byte(s), uint16(len(s)/2), false)
		f.Add([]byte(s), uint16(7), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, response bool) {
		c := &collect{}
		p := New(response, c)
		p.MaxBody = 16
		p.MaxHeaderBytes = 512
		at := func(off int) time.Duration { return time.Duration(off) }
		k := min(int(cut), len(data))
		n1, _ := p.Feed(data[:k], at)
		total := n1
		if n1 == k {
			n2, _ := p.Feed(data[k:], func(off int) time.Duration { return time.Duration(k + off) })
			total += n2
		}
		if total > len(data) {
			t.Fatalf("consumed %d of %d bytes", total, len(data))
		}
		if total < len(data) && p.State() != StatePaused && p.State() != StateSwitched {
			t.Fatalf("stopped at %d of %d bytes in state %d", total, len(data), p.State())
		}
		p.End(time.Duration(len(data)))
		for _, m := range c.done {
			if m.BodySize < int64(len(m.Body)) || len(m.Body) > 16 || m.End < m.Start || m.Start < 0 || m.End > time.Duration(len(data)) {
				t.Fatalf("inconsistent message %+v", m)
			}
			if m.Response != response {
				t.Fatalf("a %v parser reported %+v", response, m)
			}
		}
	})
}
