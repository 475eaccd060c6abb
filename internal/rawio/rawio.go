// Package rawio gives the harness's TCP sockets reads and writes that do
// not wake Go's system monitor.
//
// Every read or write through package net enters the runtime's syscall
// state. In a process that goes idle between events (a replay paced by the
// trace), the first such call after each idle moment wakes the system
// monitor, which then polls every 20 µs for a millisecond or more; with
// events closer than that it never backs off. On this project's 2-core VM
// that polling was a quarter of the harness's CPU, more than any of its own
// work. A socket here is non-blocking (the runtime's poller waits for it),
// so its read and write return at once and may be made as raw system
// calls, which leave the scheduler alone; waiting, deadlines and closing
// stay the runtime's, through syscall.RawConn.
package rawio

import (
	"net"
)

// Wrap returns c reading and writing with raw system calls where it can
// (a TCP connection on Linux), else c itself. The result still has
// *net.TCPConn's methods (SetLinger, CloseWrite, ...).
func Wrap(c net.Conn) net.Conn {
	return wrap(c)
}

// Listener wraps every connection l accepts.
func Listener(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// Linger is what a connection that can be reset offers: SetLinger(0)
// before Close sends a RST, as a peer that vanished does.
type Linger interface{ SetLinger(sec int) error }
