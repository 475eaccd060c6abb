package capture

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// An ingress or NAT in front of the proxy opens a new connection from a
// source port it used a moment ago: a new SYN, with a new initial
// sequence number, on the 4-tuple of a connection that just ended. Each
// must be a connection of its own, with no gap and nothing marked as
// begun before the capture.
func TestPortReuseStartsANewConnection(t *testing.T) {
	for _, end := range []string{"fin", "rst"} {
		t.Run(end, func(t *testing.T) {
			now := epoch
			first := newTCPConn(t, &now, 20, 40100)
			pkts := cat(first.handshake(), first.send(true, reqA, 1448), first.send(false, respA+bodyA, 1448))
			if end == "fin" {
				pkts = cat(pkts, []pkt{first.fin(true), first.fin(false), first.packet(true, nil, nil)}) // the last ACK
			} else {
				pkts = cat(pkts, []pkt{first.rst(true)})
			}
			second := newTCPConn(t, &now, 20, 40100)
			second.cseq, second.sseq = 3_000_000_000, 7_000_000
			hs := second.handshake()
			pkts = cat(pkts, hs[:1], hs, // the new SYN, retransmitted once
				second.send(true, reqB, 1448), second.send(false, respC, 1448), []pkt{second.fin(true), second.fin(false)})

			// As tcpdump writes it: a pcap file, read back by capture.
			var b bytes.Buffer
			pw := pcapgo.NewWriterNanos(&b)
			require.NoError(t, pw.WriteFileHeader(65535, 1))
			for _, p := range pkts {
				require.NoError(t, pw.WritePacket(p.ci, p.data))
			}
			path := filepath.Join(t.TempDir(), "reuse.pcap")
			require.NoError(t, os.WriteFile(path, b.Bytes(), 0o600))
			src, err := OpenFile(path)
			require.NoError(t, err)
			defer src.Close()
			w := &memWriter{}
			c, err := Run(context.Background(), src, func(time.Time) (RecordWriter, error) { return w, nil }, Options{Raw: true})
			require.NoError(t, err)

			opens := ofType[*trace.ConnOpen](w.recs)
			require.Len(t, opens, 2, "two connections on one 4-tuple")
			for _, o := range opens {
				assert.False(t, o.Mid, "connection %d opened with its SYN", o.Conn)
				assert.Equal(t, "10.0.0.20:40100", o.Client)
			}
			assert.Empty(t, ofType[*trace.Gap](w.recs), "no gap")
			assert.Zero(t, c.Gaps)
			ex := ofType[*trace.HTTP](w.recs)
			require.Len(t, ex, 2)
			assert.Equal(t, opens[0].Conn, ex[0].Conn)
			assert.Equal(t, "/user/alice/api/contents?content=1", ex[0].Req.Target)
			assert.Equal(t, opens[1].Conn, ex[1].Conn)
			assert.Equal(t, "/user/alice/api/kernelspecs", ex[1].Req.Target)
			require.NotNil(t, ex[1].Resp)
			assert.Equal(t, 201, ex[1].Resp.Status)
			closes := ofType[*trace.ConnClose](w.recs)
			require.Len(t, closes, 2)
			assert.Equal(t, trace.CloseHow(end), closes[0].How)
			assert.Equal(t, trace.CloseFIN, closes[1].How)
			assertOrderRule(t, w.recs)
		})
	}
}
