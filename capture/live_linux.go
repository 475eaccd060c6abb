package capture

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
)

// LiveSource reads packets from an interface through a memory-mapped
// AF_PACKET ring (pure Go, no libpcap), filtered in the kernel by port.
type LiveSource struct {
	iface string
	tp    *afpacket.TPacket
}

// Snaplen is the most of a packet kept: loopback and GRO'd packets reach
// 64 KiB and more, and a cut packet is a gap in the stream.
const Snaplen = 262144

// OpenLive starts capturing on iface, keeping only TCP traffic on ports.
func OpenLive(iface string, ports []uint16) (*LiveSource, error) {
	if iface == "any" || iface == "" {
		return nil, fmt.Errorf("live capture needs one named interface (e.g. eth0, lo), not %q; to capture all interfaces, record with tcpdump -i any -w FILE and use --pcap FILE", iface)
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	filter, err := portFilter(ports, Snaplen, ifc.Flags&net.FlagLoopback != 0)
	if err != nil {
		return nil, err
	}
	tp, err := afpacket.NewTPacket(afpacket.OptInterface(iface), afpacket.TPacketVersion3,
		afpacket.OptFrameSize(Snaplen), afpacket.OptBlockSize(Snaplen*8), afpacket.OptNumBlocks(32),
		afpacket.OptPollTimeout(200*time.Millisecond))
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("capture on %s: %w (live capture needs root or CAP_NET_RAW: sudo setcap cap_net_raw+ep $(which hubreplay))", iface, err)
		}
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	if err := tp.SetBPF(filter); err != nil {
		tp.Close()
		return nil, fmt.Errorf("capture on %s: set port filter: %w", iface, err)
	}
	return &LiveSource{iface: iface, tp: tp}, nil
}

func (s *LiveSource) ReadPacket() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	data, ci, err := s.tp.ZeroCopyReadPacketData()
	if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, syscall.EINTR) {
		return nil, ci, layers.LinkTypeEthernet, errTimeout
	}
	if err != nil {
		return nil, ci, layers.LinkTypeEthernet, fmt.Errorf("capture on %s: %w", s.iface, err)
	}
	return data, ci, layers.LinkTypeEthernet, nil
}

func (s *LiveSource) Name() string { return "iface:" + s.iface }

// Drops returns the packets the kernel dropped because the ring was full.
func (s *LiveSource) Drops() uint64 {
	_, v3, err := s.tp.SocketStats()
	if err != nil {
		return 0
	}
	return uint64(v3.Drops())
}

func (s *LiveSource) Close() error {
	s.tp.Close()
	return nil
}
