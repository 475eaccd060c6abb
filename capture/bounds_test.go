package capture

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// halfOpenCeiling is the documented bound (README, BENCHMARKS.md) on the
// capture's heap with 100,000 connections open at once, each with a
// request head it has not finished sending.
const halfOpenCeiling = 256 << 20

// heapAtEnd is a packet source that, after its last packet, measures the
// live heap: every connection is still open then.
type heapAtEnd struct {
	sliceSource
	heap uint64
}

func (h *heapAtEnd) ReadPacket() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	if len(h.pkts) == 0 && h.heap == 0 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		h.heap = m.HeapAlloc
	}
	return h.sliceSource.ReadPacket()
}

// halfOpen is n connections, each a handshake and the first part of a
// request head that never ends, all within 10 s of packet time.
func halfOpen(t testing.TB, n int) []pkt {
	now := epoch
	pkts := make([]pkt, 0, 4*n)
	for i := range n {
		k := newTCPConn(t, &now, byte(i%250+2), uint16(1024+i%60000))
		k.client = net.IPv4(10, byte(i/60000), byte(i/250%240), byte(i%250+2))
		pkts = append(pkts, k.handshake()...)
		pkts = append(pkts, k.send(true, fmt.Sprintf("GET /user/u%d/api/kernels HTTP/1.1\r\nHost: hub\r\nCookie: jupyterhub-user-u%d=2|1:0|10:1764000000|abc\r\n", i, i), 1448)...)
		now = now.Add(10 * time.Second / time.Duration(4*n))
	}
	return pkts
}

// 100,000 connections held open half-way: the capture's heap stays under
// its documented ceiling, and at the end each is closed as cut off by the
// capture's end.
func TestHalfOpenConnectionsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 connections: not in -short")
	}
	const n = 100_000
	pkts := halfOpen(t, n)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	src := &heapAtEnd{sliceSource: sliceSource{pkts: pkts, link: layers.LinkTypeEthernet}}
	pkts = nil
	w := &memWriter{}
	c, err := Run(t.Context(), src, func(time.Time) (RecordWriter, error) { return w, nil }, Options{Raw: true})
	require.NoError(t, err)
	used := int64(src.heap) - int64(before.HeapAlloc)
	t.Logf("%d half-open connections: %d MiB of heap (%d B each)", n, used>>20, used/n)
	assert.Less(t, used, int64(halfOpenCeiling), "heap with %d half-open connections", n)
	assert.Equal(t, uint64(n), c.Streams)
	assert.Len(t, ofType[*trace.ConnOpen](w.recs), n)
}
