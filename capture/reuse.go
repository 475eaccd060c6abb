package capture

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/hubreplay/hubreplay/trace"
)

// Port reuse. An ingress or NAT in front of the proxy opens new
// connections from a source port it used before. The reassembler keys
// streams by 4-tuple and knows nothing of that: a new SYN on the tuple of a
// connection that has ended would be read as more of the old stream (a
// false gap, a connection marked as begun before the capture). So a
// client's SYN on a tuple whose connection has seen a FIN or RST, or that
// is not a retransmission of the SYN that opened it, ends that connection
// and starts a new one. The assembler still holds the old stream until it
// times out; the new one gets a generation of its own: its packets reach
// the assembler under a stand-in flow that keys them apart.

// tuple is a connection's 4-tuple, client → server.
type tuple struct{ net, tp gopacket.Flow }

// genEndpoint is the endpoint type of the stand-in flows.
var genEndpoint = gopacket.RegisterEndpointType(0x4872, gopacket.EndpointTypeMetadata{Name: "hubreplay-generation",
	Formatter: func(b []byte) string { return hex.EncodeToString(b) }})

// reuse returns the flow the assembler should see for a packet, starting
// a new generation when a client's SYN reuses the tuple of a finished
// connection.
func (c *capturer) reuse(flow gopacket.Flow, tcp *layers.TCP, now time.Duration) gopacket.Flow {
	c.realFlow = flow
	key := tuple{flow, tcp.TransportFlow()}
	if tcp.SYN && !tcp.ACK {
		if k := c.live[key]; k != nil && k.reusedBy(tcp) {
			k.ended(now)
			delete(c.live, key)
			c.gens[key] = k.gen + 1
		}
	}
	if len(c.gens) == 0 {
		return flow
	}
	gen, ok := c.gens[key]
	if !ok {
		gen = c.gens[tuple{flow.Reverse(), key.tp.Reverse()}]
	}
	if gen == 0 {
		return flow
	}
	return gopacket.NewFlow(genEndpoint, standIn(flow.Src().Raw(), gen), standIn(flow.Dst().Raw(), gen))
}

// standIn is an address of its own for each (address, generation).
func standIn(addr []byte, gen uint32) []byte {
	h := sha256.New()
	h.Write(addr)
	_ = binary.Write(h, binary.BigEndian, gen)
	return h.Sum(nil)[:16]
}

// reusedBy tells whether a client's SYN starts a new connection on k's
// tuple rather than repeating the one that opened k.
func (k *conn) reusedBy(syn *layers.TCP) bool {
	return k.done || k.rst || k.fin[c2s] || k.fin[s2c] || !k.sawSYN || syn.Seq != k.isn
}

// ended closes k out, if it is not already, now that its tuple carries a
// new connection.
func (k *conn) ended(now time.Duration) {
	switch {
	case k.rst:
		k.finish(trace.CloseRST, k.rstTS)
	case k.fin[c2s] || k.fin[s2c]:
		k.finish(trace.CloseFIN, k.finTS)
	default:
		k.finish(trace.CloseTimeout, min(k.lastTS, now))
	}
}
