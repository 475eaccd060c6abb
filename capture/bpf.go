package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// filterLink says what the filtered packets start with and which copies
// to drop.
type filterLink struct {
	// Cooked: packets start at the IP header (an AF_PACKET SOCK_DGRAM
	// socket, as for "any"); the EtherType comes from the kernel
	// (skb->protocol). Otherwise they start with an Ethernet header.
	Cooked bool
	// Loopback: the socket is bound to a loopback interface, which shows
	// every packet twice, leaving and arriving; the leaving copy is dropped.
	Loopback bool
	// LoopbackIndexes: on "any", the loopback interfaces whose leaving
	// copies are dropped (libpcap drops the same copies).
	LoopbackIndexes []uint32
}

// portFilter compiles a classic BPF program that keeps TCP segments (IPv4,
// unfragmented, or IPv6 without extension headers) to or from any of ports
// — what `tcp port A or tcp port B` means to tcpdump, so the kernel hands
// over only the proxy's traffic. It is written by hand because compiling
// filter expressions needs libpcap.
func portFilter(ports []uint16, snaplen uint32, link filterLink) ([]bpf.RawInstruction, error) {
	if len(ports) == 0 {
		return nil, fmt.Errorf("no ports to filter on")
	}
	var p prog
	switch {
	case link.Loopback:
		p.add(bpf.LoadExtension{Num: bpf.ExtType})
		p.jumpIf(bpf.JumpEqual, packetOutgoing, "drop", "")
	case len(link.LoopbackIndexes) > 0:
		p.add(bpf.LoadExtension{Num: bpf.ExtType})
		p.jumpIf(bpf.JumpNotEqual, packetOutgoing, "proto", "")
		p.add(bpf.LoadExtension{Num: bpf.ExtInterfaceIndex})
		for _, i := range link.LoopbackIndexes {
			p.jumpIf(bpf.JumpEqual, i, "drop", "")
		}
	}
	p.label("proto")
	off := uint32(14) // the IP header's offset
	if link.Cooked {
		off = 0
		p.add(bpf.LoadExtension{Num: bpf.ExtProto})
	} else {
		p.add(bpf.LoadAbsolute{Off: 12, Size: 2}) // EtherType
	}
	p.jumpIf(bpf.JumpEqual, 0x0800, "ipv4", "")
	p.jumpIf(bpf.JumpEqual, 0x86dd, "ipv6", "drop")

	p.label("ipv4")
	p.add(bpf.LoadAbsolute{Off: off + 9, Size: 1}) // protocol
	p.jumpIf(bpf.JumpNotEqual, 6, "drop", "")
	p.add(bpf.LoadAbsolute{Off: off + 6, Size: 2}) // flags and fragment offset
	p.jumpIf(bpf.JumpBitsSet, 0x1fff, "drop", "")
	p.add(bpf.LoadMemShift{Off: off}) // X = IPv4 header length
	p.add(bpf.LoadIndirect{Off: off, Size: 2})
	p.ports(ports, "accept", "v4dst")
	p.label("v4dst")
	p.add(bpf.LoadIndirect{Off: off + 2, Size: 2})
	p.ports(ports, "accept", "drop")

	p.label("ipv6")
	p.add(bpf.LoadAbsolute{Off: off + 6, Size: 1}) // next header
	p.jumpIf(bpf.JumpNotEqual, 6, "drop", "")
	p.add(bpf.LoadAbsolute{Off: off + 40, Size: 2})
	p.ports(ports, "accept", "v6dst")
	p.label("v6dst")
	p.add(bpf.LoadAbsolute{Off: off + 42, Size: 2})
	p.ports(ports, "accept", "drop")

	p.label("accept")
	p.add(bpf.RetConstant{Val: snaplen})
	p.label("drop")
	p.add(bpf.RetConstant{Val: 0})
	ins, err := p.resolve()
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(ins)
}

// packetOutgoing is PACKET_OUTGOING, the packet type of a sent packet.
const packetOutgoing = 4

// prog is a tiny assembler with labels; jumps are resolved at the end.
type prog struct {
	ins    []bpf.Instruction
	labels map[string]int
	fix    []fixup
}

type fixup struct {
	at      int
	yes, no string
}

func (p *prog) add(i bpf.Instruction) { p.ins = append(p.ins, i) }

func (p *prog) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.ins)
}

// jumpIf jumps to yes or no ("" falls through).
func (p *prog) jumpIf(cond bpf.JumpTest, val uint32, yes, no string) {
	p.fix = append(p.fix, fixup{at: len(p.ins), yes: yes, no: no})
	p.add(bpf.JumpIf{Cond: cond, Val: val})
}

// ports tests the loaded port against each of ports.
func (p *prog) ports(ports []uint16, match, miss string) {
	for i, port := range ports {
		no := ""
		if i == len(ports)-1 {
			no = miss
		}
		p.jumpIf(bpf.JumpEqual, uint32(port), match, no)
	}
}

func (p *prog) resolve() ([]bpf.Instruction, error) {
	skip := func(from int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := p.labels[label]
		if !ok || to <= from || to-from-1 > 255 {
			return 0, fmt.Errorf("bpf: bad jump to %q", label)
		}
		return uint8(to - from - 1), nil
	}
	for _, f := range p.fix {
		j := p.ins[f.at].(bpf.JumpIf)
		var err error
		if j.SkipTrue, err = skip(f.at, f.yes); err != nil {
			return nil, err
		}
		if j.SkipFalse, err = skip(f.at, f.no); err != nil {
			return nil, err
		}
		p.ins[f.at] = j
	}
	return p.ins, nil
}
