package capture

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/bpf"

	"github.com/hubreplay/hubreplay/internal/testenv"
	"github.com/hubreplay/hubreplay/trace"
)

func frame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	for _, l := range ls {
		tl, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		})
		if !ok {
			continue
		}
		for _, n := range ls {
			if nl, ok := n.(gopacket.NetworkLayer); ok {
				require.NoError(t, tl.SetNetworkLayerForChecksum(nl))
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return buf.Bytes()
}

func TestPortFilter(t *testing.T) {
	eth4 := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	eth6 := &layers.Ethernet{SrcMAC: eth4.SrcMAC, DstMAC: eth4.DstMAC, EthernetType: layers.EthernetTypeIPv6}
	ip4 := func() *layers.IPv4 {
		return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	withOptions := ip4()
	withOptions.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // header of 24 bytes
	fragment := ip4()
	fragment.FragOffset = 100
	udp := ip4()
	udp.Protocol = layers.IPProtocolUDP
	tcp := func(src, dst int) *layers.TCP {
		return &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), ACK: true, Window: 1000}
	}
	cases := []struct {
		name string
		pkt  []byte
		keep bool
	}{
		{"ipv4 to the proxy", frame(t, eth4, ip4(), tcp(40000, 8000), gopacket.Payload("GET /")), true},
		{"ipv4 from the API", frame(t, eth4, ip4(), tcp(8001, 40000)), true},
		{"ipv4 with options", frame(t, eth4, withOptions, tcp(40000, 8000)), true},
		{"ipv6 to the proxy", frame(t, eth6, ip6, tcp(40000, 8000)), true},
		{"ipv6 from the proxy", frame(t, eth6, ip6, tcp(8000, 40000)), true},
		{"another port", frame(t, eth4, ip4(), tcp(40000, 22)), false},
		{"ipv6 another port", frame(t, eth6, ip6, tcp(40000, 443)), false},
		{"a fragment", frame(t, eth4, fragment, tcp(40000, 8000)), false},
		{"udp", frame(t, eth4, udp, &layers.UDP{SrcPort: 8000, DstPort: 8000}), false},
		{"arp", frame(t, &layers.Ethernet{SrcMAC: eth4.SrcMAC, DstMAC: eth4.DstMAC, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
				SourceHwAddress: eth4.SrcMAC, SourceProtAddress: []byte{10, 0, 0, 1}, DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 0, 0, 2}}), false},
	}
	raw, err := portFilter([]uint16{8000, 8001}, Snaplen, filterLink{})
	require.NoError(t, err)
	ins, ok := bpf.Disassemble(raw)
	require.True(t, ok)
	vm, err := bpf.NewVM(ins)
	require.NoError(t, err)
	for _, c := range cases {
		n, err := vm.Run(c.pkt)
		require.NoError(t, err, c.name)
		assert.Equal(t, c.keep, n > 0, c.name)
		if c.keep {
			assert.Equal(t, Snaplen, n, "%s: the whole packet is kept", c.name)
		}
	}
	_, err = portFilter(nil, Snaplen, filterLink{})
	assert.Error(t, err)
}

// liveRun captures from src in the background until the returned stop is
// called, as Ctrl-C would stop it (ctx), and returns what it captured.
func liveRun(t *testing.T, src Source, port int) (stop func() (time.Time, []trace.Record, Counters)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &memWriter{}
	var start time.Time
	var counters Counters
	done := make(chan error, 1)
	go func() {
		var err error
		counters, err = Run(ctx, src, func(s time.Time) (RecordWriter, error) { start = s; return w, nil }, Options{Ports: []uint16{uint16(port)}, Raw: true})
		done <- err
	}()
	return func() (time.Time, []trace.Record, Counters) {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("capture did not stop within 10 s of its context ending")
		}
		return start, w.recs, counters
	}
}

func openLive(t *testing.T, iface string, port int) *LiveSource {
	t.Helper()
	src, err := OpenLive(iface, []uint16{uint16(port)}, 0)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("live capture needs root or CAP_NET_RAW: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	return src
}

// TestLiveCaptureOnLoopback records the JupyterHub-like workload with the
// pure-Go AF_PACKET source, on lo and on every interface at once, and
// checks both traces as the file tests do.
func TestLiveCaptureOnLoopback(t *testing.T) {
	addr, port := testenv.Serve(t)
	lo, anyIf := openLive(t, "lo", port), openLive(t, AnyInterface, port)
	stopLo, stopAny := liveRun(t, lo, port), liveRun(t, anyIf, port)
	time.Sleep(100 * time.Millisecond) // the rings are up once OpenLive returns; give Run a moment to start reading
	work := testenv.Drive(t, addr, true)
	time.Sleep(300 * time.Millisecond)
	startLo, recsLo, countersLo := stopLo()
	startAny, recsAny, countersAny := stopAny()

	for _, c := range []struct {
		name     string
		src      *LiveSource
		start    time.Time
		recs     []trace.Record
		counters Counters
	}{{"iface:lo", lo, startLo, recsLo, countersLo}, {"iface:any", anyIf, startAny, recsAny, countersAny}} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.name, c.src.Name())
			assert.Zero(t, c.counters.Drops["kernel"])
			assert.Zero(t, c.counters.Gaps)
			checkWorkload(t, work, c.start, c.recs)
			stats := ofType[*trace.Stats](c.recs)
			require.NotEmpty(t, stats, "the last record is the capture's counters")
			assert.Equal(t, c.counters.Packets, stats[len(stats)-1].Packets)
		})
	}
	// lo shows each packet twice, leaving and arriving; both captures keep
	// one copy (libpcap keeps the same one). Doubled, any would see twice
	// lo's packets; the two sockets open and stop a moment apart, and their
	// counts differ by a few packets of the dozens of connections.
	assert.InEpsilon(t, countersLo.Packets, countersAny.Packets, 0.1, "on any, the loopback's packets are not doubled: lo %d, any %d", countersLo.Packets, countersAny.Packets)
}

func TestLiveCaptureNeedsAnInterface(t *testing.T) {
	_, err := OpenLive("", []uint16{8000}, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "any")
	_, err = OpenLive("no-such-interface0", []uint16{8000}, 0)
	assert.ErrorContains(t, err, "no-such-interface0")
}

// A packet that finds no room (here: a queue of one byte behind the
// kernel's ring) is dropped and counted, never lost in silence.
func TestLiveCaptureCountsWhatItHadNoRoomFor(t *testing.T) {
	addr, port := testenv.Serve(t)
	src, err := OpenLive("lo", []uint16{uint16(port)}, 1)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("live capture needs root or CAP_NET_RAW: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	stop := liveRun(t, src, port)
	time.Sleep(100 * time.Millisecond)
	testenv.Drive(t, addr, true)
	time.Sleep(300 * time.Millisecond)
	_, _, counters := stop()
	assert.Zero(t, counters.Packets, "no packet fits in one byte")
	assert.Positive(t, counters.Drops["kernel"], "and every one is counted")
}
