package capture

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// Every link type tcpdump writes for a proxy's node or pod: the same TCP
// segment must come out of each.
func TestDecodeLinkTypes(t *testing.T) {
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 8000, Seq: 7, ACK: true, PSH: true, Window: 100}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	payload := gopacket.Payload("GET / HTTP/1.1\r\n\r\n")
	v4 := frame(t, ip4, tcp, payload)
	v6 := frame(t, ip6, tcp, payload)
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	sll := func(proto uint16, ip []byte) []byte {
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:], 4) // sent by us
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:], mac)
		binary.BigEndian.PutUint16(h[14:], proto)
		return append(h, ip...)
	}
	sll2 := func(proto uint16, ip []byte) []byte {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], proto)
		binary.BigEndian.PutUint32(h[4:], 3) // interface index
		binary.BigEndian.PutUint16(h[8:], 1)
		h[10], h[11] = 0, 6
		copy(h[12:], mac)
		return append(h, ip...)
	}
	null := func(family uint32, ip []byte) []byte {
		h := make([]byte, 4)
		binary.LittleEndian.PutUint32(h, family) // host byte order of the capturing machine
		return append(h, ip...)
	}
	cases := []struct {
		name string
		link layers.LinkType
		data []byte
	}{
		{"ethernet", layers.LinkTypeEthernet, frame(t, &layers.Ethernet{SrcMAC: mac, DstMAC: mac, EthernetType: layers.EthernetTypeIPv4}, ip4, tcp, payload)},
		{"ethernet ipv6", layers.LinkTypeEthernet, frame(t, &layers.Ethernet{SrcMAC: mac, DstMAC: mac, EthernetType: layers.EthernetTypeIPv6}, ip6, tcp, payload)},
		{"ethernet with a VLAN tag", layers.LinkTypeEthernet, frame(t, &layers.Ethernet{SrcMAC: mac, DstMAC: mac, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 42, Type: layers.EthernetTypeIPv4}, ip4, tcp, payload)},
		{"linux cooked (any)", layers.LinkTypeLinuxSLL, sll(0x0800, v4)},
		{"linux cooked v2 (any)", layers.LinkTypeLinuxSLL2, sll2(0x86dd, v6)},
		{"null (BSD loopback)", layers.LinkTypeNull, null(2, v4)},
		{"raw ipv4", layers.LinkTypeRaw, v4},
		{"raw ipv6", layers.LinkTypeRaw, v6},
		{"ipv4", layers.LinkTypeIPv4, v4},
		{"ipv6", layers.LinkTypeIPv6, v6},
	}
	d := newDecoder()
	for _, c := range cases {
		flow, got, err := d.decode(c.link, c.data)
		require.NoError(t, err, c.name)
		assert.Equal(t, layers.TCPPort(8000), got.DstPort, c.name)
		assert.Equal(t, []byte(payload), got.Payload, c.name)
		assert.NotEmpty(t, flow.Src().String(), c.name)
	}
	_, _, err := d.decode(layers.LinkTypeIEEE802_11, v4)
	var ul *UnsupportedLinkError
	require.ErrorAs(t, err, &ul)
	assert.Contains(t, err.Error(), "not supported")
	_, _, err = d.decode(layers.LinkTypeRaw, frame(t, &layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolUDP, SrcIP: ip4.SrcIP, DstIP: ip4.DstIP}, &layers.UDP{SrcPort: 1, DstPort: 2}))
	assert.ErrorIs(t, err, errNotTCP)
}

// A packet cut short by the capture length (tcpdump -s 200) is counted,
// and the bytes it lacks become a gap, not garbage in the stream.
func TestSnaplenTruncatedPackets(t *testing.T) {
	now := epoch
	k := newTCPConn(t, &now, 30, 40030)
	start := cat(k.handshake(), k.send(true, reqA, 1448))
	body := k.send(false, respA+bodyA, 1000)
	body[1].data = body[1].data[:200] // the capture kept 200 bytes of a 1054-byte frame
	body[1].ci.CaptureLength = 200
	pkts := cat(start, body, k.send(true, reqB, 1448), k.send(false, respC, 1448), []pkt{k.fin(true), k.fin(false)})
	w, c := runPackets(t, pkts, Options{FlushAfter: time.Nanosecond})
	assert.Equal(t, uint64(1), c.Drops["snaplen"])
	gaps := ofType[*trace.Gap](w.recs)
	require.NotEmpty(t, gaps)
	ex := ofType[*trace.HTTP](w.recs)
	require.Len(t, ex, 2)
	assert.Equal(t, int64(3000), ex[0].Resp.BodySize)
	assert.Equal(t, 201, ex[1].Resp.Status)
	stats := ofType[*trace.Stats](w.recs)
	assert.Equal(t, uint64(1), stats[len(stats)-1].Drops["snaplen"])
}
