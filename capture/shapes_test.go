package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// shapeConversation is a keep-alive exchange and a WebSocket session, as
// Ethernet/IPv4 packets.
func shapeConversation(t *testing.T) []pkt {
	now := epoch
	_, pipe := pipelined(t, &now)
	k := newTCPConn(t, &now, 11, 40005)
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
	client := wsFrames(t, true, ws.NewTextFrame([]byte(`{"header":{"msg_type":"execute_request"}}`)))
	server := wsFrames(t, false, ws.NewTextFrame([]byte(`{"header":{"msg_type":"status"}}`)), ws.NewFrame(ws.OpBinary, true, bytes.Repeat([]byte{1}, 5000)))
	return cat(pipe, k.handshake(), k.send(true, upgradeReq, 1448), k.send(false, resp, 1448), k.send(true, client, 1448),
		k.send(false, server, 1448), []pkt{k.fin(false), k.fin(true)})
}

// ipLayers splits an Ethernet/IPv4 frame of shapeConversation.
func ipLayers(t *testing.T, data []byte) (*layers.IPv4, *layers.TCP, []byte) {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
	ip, ok1 := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, ok2 := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	require.True(t, ok1 && ok2)
	return ip, tcp, tcp.Payload
}

// shape rewrites each frame for one link type and returns the frames to
// write (one or more per packet).
type shape struct {
	name  string
	link  layers.LinkType
	ng    bool
	frame func(t *testing.T, data []byte) [][]byte
}

func shapes() []shape {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	v6 := func(t *testing.T, data []byte) []byte {
		ip4, tcp, payload := ipLayers(t, data)
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP(fmt.Sprintf("fd00::%d", ip4.SrcIP[3])), DstIP: net.ParseIP(fmt.Sprintf("fd00::%d", ip4.DstIP[3]))}
		return frame(t, ip6, tcp, gopacket.Payload(payload))
	}
	v4 := func(t *testing.T, data []byte) []byte { return data[14:] }
	sll2 := func(ifindex uint32, ip []byte) []byte {
		h := make([]byte, 20)
		proto := uint16(0x0800)
		if ip[0]>>4 == 6 {
			proto = 0x86dd
		}
		binary.BigEndian.PutUint16(h[0:], proto)
		binary.BigEndian.PutUint32(h[4:], ifindex)
		binary.BigEndian.PutUint16(h[8:], 1)
		h[11] = 6
		copy(h[12:], mac)
		return append(h, ip...)
	}
	one := func(f func(*testing.T, []byte) []byte) func(*testing.T, []byte) [][]byte {
		return func(t *testing.T, d []byte) [][]byte { return [][]byte{f(t, d)} }
	}
	return []shape{
		{"pcapng", layers.LinkTypeEthernet, true, one(func(_ *testing.T, d []byte) []byte { return d })},
		{"ethernet with a VLAN tag", layers.LinkTypeEthernet, false, one(func(t *testing.T, d []byte) []byte {
			return append(append(append([]byte(nil), d[:12]...), 0x81, 0x00, 0x00, 42), d[12:]...)
		})},
		{"ethernet IPv6", layers.LinkTypeEthernet, false, one(func(t *testing.T, d []byte) []byte {
			return append(append(append([]byte(nil), d[:12]...), 0x86, 0xdd), v6(t, d)...)
		})},
		{"linux cooked (tcpdump -i any)", layers.LinkTypeLinuxSLL, false, one(func(t *testing.T, d []byte) []byte {
			h := make([]byte, 16)
			binary.BigEndian.PutUint16(h[2:], 1)
			binary.BigEndian.PutUint16(h[4:], 6)
			copy(h[6:], mac)
			binary.BigEndian.PutUint16(h[14:], 0x0800)
			return append(h, v4(t, d)...)
		})},
		// -i any on a node sees a pod's packet twice: on the pod's veth and
		// on the bridge (or the host's interface).
		{"linux cooked v2, every packet on two interfaces", layers.LinkTypeLinuxSLL2, false, func(t *testing.T, d []byte) [][]byte {
			return [][]byte{sll2(5, v4(t, d)), sll2(9, v4(t, d))}
		}},
		{"linux cooked v2 IPv6 in pcapng", layers.LinkTypeLinuxSLL2, true, one(func(t *testing.T, d []byte) []byte { return sll2(3, v6(t, d)) })},
		{"raw IPv4", layers.LinkTypeRaw, false, one(v4)},
		{"raw IPv6", layers.LinkTypeRaw, false, one(v6)},
		{"null (BSD loopback)", layers.LinkTypeNull, false, one(func(t *testing.T, d []byte) []byte {
			return append(binary.LittleEndian.AppendUint32(nil, 2), v4(t, d)...)
		})},
		{"loop (OpenBSD loopback, family in network order)", layers.LinkTypeLoop, false, one(func(t *testing.T, d []byte) []byte {
			return append(binary.BigEndian.AppendUint32(nil, 2), v4(t, d)...)
		})},
		{"IPv4 link type", layers.LinkTypeIPv4, false, one(v4)},
		{"IPv6 link type", layers.LinkTypeIPv6, true, one(v6)},
		{"raw IP, link type 12 (some BSDs)", layers.LinkType(12), false, one(v4)},
	}
}

func writeShape(t *testing.T, s shape, pkts []pkt) []byte {
	var b bytes.Buffer
	var write func(ci gopacket.CaptureInfo, data []byte) error
	flush := func() error { return nil }
	if s.ng {
		w, err := pcapgo.NewNgWriter(&b, s.link)
		require.NoError(t, err)
		write, flush = w.WritePacket, w.Flush
	} else {
		w := pcapgo.NewWriterNanos(&b)
		require.NoError(t, w.WriteFileHeader(262144, s.link))
		write = w.WritePacket
	}
	for _, p := range pkts {
		for i, f := range s.frame(t, p.data) {
			ci := p.ci
			ci.Timestamp = ci.Timestamp.Add(time.Duration(i) * time.Microsecond)
			ci.CaptureLength, ci.Length = len(f), len(f)
			require.NoError(t, write(ci, f))
		}
	}
	require.NoError(t, flush())
	return b.Bytes()
}

// what a shape must not change: the exchanges and frames, in order.
func essence(recs []trace.Record) []string {
	var out []string
	for _, r := range recs {
		switch r := r.(type) {
		case *trace.HTTP:
			status := 0
			var size int64
			if r.Resp != nil {
				status, size = r.Resp.Status, r.Resp.BodySize
			}
			out = append(out, fmt.Sprintf("%s %s → %d %d upgrade=%v", r.Req.Method, r.Req.Target, status, size, r.Upgrade))
		case *trace.WSFrame:
			out = append(out, fmt.Sprintf("frame %s op=%d fin=%v len=%d", r.Dir, r.Op, r.Fin, r.Len))
		case *trace.Gap:
			out = append(out, "gap")
		}
	}
	return out
}

// Every capture file shape tcpdump makes on a proxy's node or pod gives
// the same exchanges and frames as plain Ethernet: pcapng, VLAN tags,
// IPv6, Linux cooked v1 and v2, raw IP (three link types), IPv4 and IPv6
// link types, BSD and OpenBSD loopback, and -i any's
// duplicates (the same packet seen on two interfaces), which must not
// double anything or look like loss.
func TestEveryCaptureShapeGivesTheSameRecords(t *testing.T) {
	pkts := shapeConversation(t)
	runFile := func(t *testing.T, data []byte) ([]trace.Record, Counters) {
		src, err := NewFileSource(bytes.NewReader(data), "shape.pcap")
		require.NoError(t, err)
		w := &memWriter{}
		c, err := Run(context.Background(), src, func(time.Time) (RecordWriter, error) { return w, nil }, Options{Raw: true})
		require.NoError(t, err)
		return w.recs, c
	}
	base, _ := runFile(t, pcapBytes(t, pkts, false))
	want := essence(base)
	require.Len(t, ofType[*trace.HTTP](base), 4, "three pipelined exchanges and the upgrade")
	require.Len(t, ofType[*trace.WSFrame](base), 3)
	for _, s := range shapes() {
		t.Run(s.name, func(t *testing.T) {
			recs, c := runFile(t, writeShape(t, s, pkts))
			assert.Equal(t, want, essence(recs))
			assert.Zero(t, c.Gaps, "no loss")
			assert.Equal(t, uint64(2), c.Streams, "each connection once")
		})
	}
}
