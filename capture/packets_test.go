package capture

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/hubreplay/hubreplay/trace"
)

// Synthetic packets, serialized with gopacket, for the cases a loopback
// capture does not produce on demand: loss, reordering, retransmission,
// a capture that starts mid-connection, resets.

type pkt struct {
	ci   gopacket.CaptureInfo
	data []byte
}

var epoch = time.Date(2026, 11, 3, 15, 50, 0, 0, time.UTC)

// tcpConn writes the packets of one connection; time advances 1 ms a packet.
type tcpConn struct {
	t            testing.TB
	client       net.IP
	cport, sport uint16
	cseq, sseq   uint32
	now          *time.Time
}

func newTCPConn(t testing.TB, now *time.Time, clientLast byte, cport uint16) *tcpConn {
	return &tcpConn{t: t, client: net.IPv4(10, 0, 0, clientLast), cport: cport, sport: 8000, cseq: 1000, sseq: 5000, now: now}
}

func (k *tcpConn) packet(fromClient bool, flags func(*layers.TCP), payload []byte) pkt {
	k.t.Helper()
	*k.now = k.now.Add(time.Millisecond)
	server := net.IPv4(10, 0, 0, 1)
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: k.client, DstIP: server}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(k.cport), DstPort: layers.TCPPort(k.sport), Seq: k.cseq, Ack: k.sseq, ACK: true, Window: 65535}
	if !fromClient {
		ip.SrcIP, ip.DstIP = server, k.client
		tcp.SrcPort, tcp.DstPort, tcp.Seq, tcp.Ack = tcp.DstPort, tcp.SrcPort, k.sseq, k.cseq
	}
	if flags != nil {
		flags(tcp)
	}
	require.NoError(k.t, tcp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	require.NoError(k.t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload(payload)))
	data := append([]byte(nil), buf.Bytes()...)
	n := uint32(len(payload))
	if tcp.SYN || tcp.FIN {
		n++
	}
	if fromClient {
		k.cseq += n
	} else {
		k.sseq += n
	}
	return pkt{ci: gopacket.CaptureInfo{Timestamp: *k.now, CaptureLength: len(data), Length: len(data)}, data: data}
}

func (k *tcpConn) handshake() []pkt {
	return []pkt{
		k.packet(true, func(t *layers.TCP) { t.SYN, t.ACK = true, false }, nil),
		k.packet(false, func(t *layers.TCP) { t.SYN = true }, nil),
		k.packet(true, nil, nil),
	}
}

// send splits payload into segments of at most mss bytes.
func (k *tcpConn) send(fromClient bool, payload string, mss int) []pkt {
	var out []pkt
	for len(payload) > 0 {
		n := min(mss, len(payload))
		out = append(out, k.packet(fromClient, func(t *layers.TCP) { t.PSH = true }, []byte(payload[:n])))
		payload = payload[n:]
	}
	return out
}

func (k *tcpConn) fin(fromClient bool) pkt {
	return k.packet(fromClient, func(t *layers.TCP) { t.FIN = true }, nil)
}

func (k *tcpConn) rst(fromClient bool) pkt {
	return k.packet(fromClient, func(t *layers.TCP) { t.RST, t.ACK = true, false }, nil)
}

// sliceSource replays packets from memory.
type sliceSource struct {
	pkts []pkt
	link layers.LinkType
}

func (s *sliceSource) ReadPacket() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	if len(s.pkts) == 0 {
		return nil, gopacket.CaptureInfo{}, s.link, io.EOF
	}
	p := s.pkts[0]
	s.pkts = s.pkts[1:]
	return p.data, p.ci, s.link, nil
}
func (s *sliceSource) Name() string  { return "test" }
func (s *sliceSource) Drops() uint64 { return 0 }
func (s *sliceSource) Close() error  { return nil }

// memWriter collects records.
type memWriter struct{ recs []trace.Record }

func (m *memWriter) Write(r trace.Record) error {
	m.recs = append(m.recs, r)
	return nil
}

func runPackets(t testing.TB, pkts []pkt, o Options) (*memWriter, Counters) {
	t.Helper()
	w := &memWriter{}
	o.Raw = true
	c, err := Run(context.Background(), &sliceSource{pkts: pkts, link: layers.LinkTypeEthernet},
		func(time.Time) (RecordWriter, error) { return w, nil }, o)
	require.NoError(t, err)
	return w, c
}

func ofType[T trace.Record](recs []trace.Record) []T {
	var out []T
	for _, r := range recs {
		if x, ok := r.(T); ok {
			out = append(out, x)
		}
	}
	return out
}

func cat(parts ...[]pkt) []pkt {
	var out []pkt
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
