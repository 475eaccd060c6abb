package capture

import (
	"errors"
	"fmt"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// decoder turns link-layer frames into TCP segments without allocating:
// one gopacket DecodingLayerParser per first layer, sharing layer values.
type decoder struct {
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	sll     layers.LinuxSLL
	sll2    layers.LinuxSLL2
	loop    layers.Loopback
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	parsers map[gopacket.LayerType]*gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

func newDecoder() *decoder {
	d := &decoder{parsers: map[gopacket.LayerType]*gopacket.DecodingLayerParser{}}
	for _, first := range []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeLinuxSLL, layers.LayerTypeLinuxSLL2,
		layers.LayerTypeLoopback, layers.LayerTypeIPv4, layers.LayerTypeIPv6} {
		p := gopacket.NewDecodingLayerParser(first, &d.eth, &d.dot1q, &d.sll, &d.sll2, &d.loop, &d.ip4, &d.ip6, &d.tcp)
		p.IgnoreUnsupported = true // the TCP payload is ours to parse
		d.parsers[first] = p
	}
	return d
}

// errNotTCP marks packets that carry no TCP segment (ARP, UDP, ICMP...).
var errNotTCP = errors.New("not TCP")

// errFragment marks IP fragments, which a proxy's TCP traffic does not use.
var errFragment = errors.New("IP fragment")

// UnsupportedLinkError names a link type the capture cannot decode.
type UnsupportedLinkError struct{ Link layers.LinkType }

func (e *UnsupportedLinkError) Error() string {
	return fmt.Sprintf("link type %s (%d) is not supported; capture with tcpdump on an Ethernet, loopback or 'any' interface", e.Link, int(e.Link))
}

func (d *decoder) first(link layers.LinkType, data []byte) (gopacket.LayerType, error) {
	switch link {
	case layers.LinkTypeEthernet:
		return layers.LayerTypeEthernet, nil
	case layers.LinkTypeLinuxSLL:
		return layers.LayerTypeLinuxSLL, nil
	case layers.LinkTypeLinuxSLL2:
		return layers.LayerTypeLinuxSLL2, nil
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return layers.LayerTypeLoopback, nil
	case layers.LinkTypeIPv4:
		return layers.LayerTypeIPv4, nil
	case layers.LinkTypeIPv6:
		return layers.LayerTypeIPv6, nil
	case layers.LinkTypeRaw, 12: // 12: raw IP on some BSDs
		if len(data) > 0 && data[0]>>4 == 6 {
			return layers.LayerTypeIPv6, nil
		}
		return layers.LayerTypeIPv4, nil
	}
	return 0, &UnsupportedLinkError{Link: link}
}

// decode returns the network flow and the TCP segment of a frame. The TCP
// layer is reused by the next call.
func (d *decoder) decode(link layers.LinkType, data []byte) (gopacket.Flow, *layers.TCP, error) {
	first, err := d.first(link, data)
	if err != nil {
		return gopacket.Flow{}, nil, err
	}
	d.decoded = d.decoded[:0]
	// Errors after a layer decoded (a truncated TCP header, say) show as
	// a missing TCP layer below.
	_ = d.parsers[first].DecodeLayers(data, &d.decoded)
	var flow gopacket.Flow
	var haveIP, haveTCP bool
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				return flow, nil, errFragment
			}
			flow, haveIP = d.ip4.NetworkFlow(), true
		case layers.LayerTypeIPv6:
			flow, haveIP = d.ip6.NetworkFlow(), true
		case layers.LayerTypeTCP:
			haveTCP = true
		}
	}
	if !haveIP || !haveTCP {
		return flow, nil, errNotTCP
	}
	return flow, &d.tcp, nil
}
