package replay

import (
	"hash/fnv"
	"net"
	"runtime"
	"strconv"
)

// Each user dials from an address of its own, as real users do: on Linux
// all of 127.0.0.0/8 is the machine's, so against a proxy on loopback a
// user's connections come from 127.a.b.c, chosen from its name.
//
// Without it every connection of a fast replay comes from 127.0.0.1 to
// the one proxy port. A candidate that closes its clients' connections
// after every answer (CHP 4.5.x) then leaves a TIME_WAIT socket per
// request on that one pair of addresses; at 10× a 300-student peak piles
// up tens of thousands within the minute they last, more than the
// machine's 28,000 ephemeral ports, and every new connection costs the
// replayer a search for a free one: processor time a recording at 1×,
// from hundreds of addresses, never spent.

// spreadSources tells whether connections to addr can come from any
// loopback address.
func spreadSources(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return runtime.GOOS == "linux" && ip != nil && ip.To4() != nil && ip.IsLoopback()
}

// sourceFor is the loopback address a connection of the user (or, with
// none, of the recorded connection) dials from.
func sourceFor(c *Conn) *net.TCPAddr {
	h := fnv.New32a()
	if c.User != "" {
		h.Write([]byte(c.User))
	} else {
		h.Write([]byte("conn " + strconv.FormatUint(c.ID, 10)))
	}
	v := h.Sum32()
	// 127.a.b.c with a and c in 1–254: never 127.0.0.1 itself, nor an
	// address that ends in 0 or 255.
	return &net.TCPAddr{IP: net.IPv4(127, byte(1+v%254), byte(v>>8), byte(1+(v>>16)%254))}
}
