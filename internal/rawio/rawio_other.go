//go:build !linux

package rawio

import "net"

// Elsewhere the connection keeps package net's reads and writes.
func wrap(c net.Conn) net.Conn { return c }
