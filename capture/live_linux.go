package capture

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
)

// LiveSource reads packets from an interface, or from all of them, through
// a memory-mapped AF_PACKET ring (TPACKET_V3, pure Go, no libpcap),
// filtered in the kernel by port.
type LiveSource struct {
	iface string
	link  layers.LinkType
	tp    *afpacket.TPacket
	since time.Time // packets before it came before the filter

	once       sync.Once
	queue      chan livePacket
	queued     atomic.Int64 // bytes in the queue
	limit      int64
	queueDrops atomic.Uint64
	stop       atomic.Bool
	last       []byte // the packet ReadPacket returned last
}

// Snaplen is the most of a packet kept: loopback and GRO'd packets reach
// 64 KiB and more, and a cut packet is a gap in the stream.
const Snaplen = 262144

// DefaultBuffer is the kernel ring's default size: 64 MiB holds about half
// a second of a 10x lecture-peak replay on loopback, long enough for the
// reader to catch up after a pause.
const DefaultBuffer = 64 << 20

// AnyInterface captures on every interface, as tcpdump -i any does.
const AnyInterface = "any"

// OpenLive starts capturing on iface ("any" for all interfaces), keeping
// only TCP traffic on ports, through a kernel ring of buffer bytes
// (DefaultBuffer when 0).
func OpenLive(iface string, ports []uint16, buffer int) (*LiveSource, error) {
	if iface == "" {
		return nil, fmt.Errorf("live capture needs an interface (e.g. eth0, lo, or any)")
	}
	if buffer == 0 {
		buffer = DefaultBuffer
	}
	// A block holds several packets of up to Snaplen; the ring has at
	// least 8 of them.
	block := Snaplen * 8
	blocks := max(buffer/block, 8)
	opts := []any{afpacket.TPacketVersion3, afpacket.OptFrameSize(Snaplen), afpacket.OptBlockSize(block),
		afpacket.OptNumBlocks(blocks), afpacket.OptPollTimeout(200 * time.Millisecond)}
	var link filterLink
	linkType := layers.LinkTypeEthernet
	if iface == AnyInterface {
		// Every interface: the link headers differ (Ethernet, none for a
		// tunnel, ...), so the kernel strips them, as libpcap does for
		// "any", and the packets start at the IP header.
		linkType = layers.LinkTypeRaw
		link.Cooked = true
		opts = append(opts, afpacket.OptInterface(""), afpacket.SocketDgram)
		ifcs, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("capture on any: list interfaces: %w", err)
		}
		for _, ifc := range ifcs {
			if ifc.Flags&net.FlagLoopback != 0 {
				link.LoopbackIndexes = append(link.LoopbackIndexes, uint32(ifc.Index))
			}
		}
	} else {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return nil, fmt.Errorf("capture on %s: %w", iface, err)
		}
		link.Loopback = ifc.Flags&net.FlagLoopback != 0
		opts = append(opts, afpacket.OptInterface(iface))
	}
	filter, err := portFilter(ports, Snaplen, link)
	if err != nil {
		return nil, err
	}
	tp, err := afpacket.NewTPacket(opts...)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("capture on %s: %w (live capture needs root or CAP_NET_RAW: sudo setcap cap_net_raw+ep $(which hubreplay))", iface, err)
		}
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	// The ring fills from the moment it is set up, before the filter is
	// attached: packets of other ports then, and on lo or any both copies
	// of each loopback packet. The capture starts once the filter is on.
	since := time.Now()
	if err := tp.SetBPF(filter); err != nil {
		tp.Close()
		return nil, fmt.Errorf("capture on %s: set port filter: %w", iface, err)
	}
	return &LiveSource{iface: iface, link: linkType, tp: tp, since: since, queue: make(chan livePacket, 1<<16), limit: int64(buffer)}, nil
}

// livePacket is a packet copied out of the ring.
type livePacket struct {
	data []byte
	ci   gopacket.CaptureInfo
	err  error
}

// drain runs in a goroutine of its own: it empties the kernel ring as fast
// as it fills, copying each packet into a queue bounded by the same number
// of bytes, so that a moment in which the capture's parsing falls behind
// (a busy machine) costs memory rather than packets. A packet that finds
// the queue full is dropped and counted, like one the kernel drops.
func (s *LiveSource) drain() {
	defer close(s.queue)
	for !s.stop.Load() {
		data, ci, err := s.tp.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) || errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			s.queue <- livePacket{err: err}
			return
		}
		if ci.Timestamp.Before(s.since) {
			continue
		}
		if s.queued.Load()+int64(len(data)) > s.limit {
			s.queueDrops.Add(1)
			continue
		}
		s.queued.Add(int64(len(data)))
		s.queue <- livePacket{data: append([]byte(nil), data...), ci: ci}
	}
}

func (s *LiveSource) ReadPacket() ([]byte, gopacket.CaptureInfo, layers.LinkType, error) {
	s.once.Do(func() { go s.drain() })
	if s.last != nil {
		s.queued.Add(-int64(len(s.last)))
		s.last = nil
	}
	var p livePacket
	var ok bool
	select {
	case p, ok = <-s.queue: // the usual case, without a timer
	default:
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case p, ok = <-s.queue:
			t.Stop()
		case <-t.C:
			return nil, gopacket.CaptureInfo{}, s.link, errTimeout
		}
	}
	if !ok {
		return nil, gopacket.CaptureInfo{}, s.link, fmt.Errorf("capture on %s: closed", s.iface)
	}
	if p.err != nil {
		return nil, p.ci, s.link, fmt.Errorf("capture on %s: %w", s.iface, p.err)
	}
	s.last = p.data // its bytes count as queued until the next read
	return p.data, p.ci, s.link, nil
}

func (s *LiveSource) Name() string { return "iface:" + s.iface }

// Drops returns the packets lost because there was no room for them: in
// the kernel's ring, or in the queue behind it.
func (s *LiveSource) Drops() uint64 {
	_, v3, err := s.tp.SocketStats()
	if err != nil {
		return s.queueDrops.Load()
	}
	return uint64(v3.Drops()) + s.queueDrops.Load()
}

func (s *LiveSource) Close() error {
	s.stop.Store(true)
	s.once.Do(func() { close(s.queue) }) // never started: nothing drains
	for range s.queue {                  // the drainer ends within a poll timeout
	}
	s.tp.Close()
	return nil
}
