package rawio

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair is a loopback TCP connection, both ends wrapped.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	ln := Listener(l)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	client, server = Wrap(c), <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	if runtime.GOOS == "linux" {
		require.IsType(t, &Conn{}, client)
		require.IsType(t, &Conn{}, server, "the listener wraps what it accepts")
	}
	return client, server
}

// Megabytes written against a slow reader fill the socket's buffers
// (the write waits and goes on) and arrive whole and in order.
func TestBytesArriveWhole(t *testing.T) {
	client, server := pair(t)
	want := make([]byte, 8<<20)
	_, _ = rand.Read(want)
	wrote := make(chan error, 1)
	go func() {
		n, err := client.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		_ = client.(interface{ CloseWrite() error }).CloseWrite()
		wrote <- err
	}()
	time.Sleep(50 * time.Millisecond) // the buffers fill before anyone reads
	var got bytes.Buffer
	buf := make([]byte, 1000) // small reads: many of them
	for {
		n, err := server.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, <-wrote)
	assert.True(t, bytes.Equal(want, got.Bytes()), "got %d bytes of %d, or in another order", got.Len(), len(want))
}

// Errors read as package net's do: a reset is ECONNRESET, a deadline a
// timeout, a closed connection net.ErrClosed; an empty read is not EOF.
func TestErrorsAsPackageNet(t *testing.T) {
	t.Run("reset", func(t *testing.T) {
		client, server := pair(t)
		require.NoError(t, server.(Linger).SetLinger(0))
		require.NoError(t, server.Close())
		_, err := client.Read(make([]byte, 10))
		assert.ErrorIs(t, err, syscall.ECONNRESET)
		var op *net.OpError
		require.ErrorAs(t, err, &op)
		assert.Equal(t, "read", op.Op)
		_, err = client.Write([]byte("after the reset"))
		assert.Error(t, err, "writing to a reset connection")
	})
	t.Run("deadline", func(t *testing.T) {
		client, _ := pair(t)
		require.NoError(t, client.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, err := client.Read(make([]byte, 10))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("closed while waiting", func(t *testing.T) {
		client, _ := pair(t)
		read := make(chan error, 1)
		go func() {
			_, err := client.Read(make([]byte, 10))
			read <- err
		}()
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, client.Close())
		assert.ErrorIs(t, <-read, net.ErrClosed)
		_, err := client.Write([]byte("x"))
		assert.ErrorIs(t, err, net.ErrClosed)
	})
	t.Run("empty read", func(t *testing.T) {
		client, _ := pair(t)
		n, err := client.Read(nil)
		assert.Zero(t, n)
		assert.NoError(t, err)
	})
}

// What is not a TCP connection is left as it is.
func TestWrapLeavesOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.Same(t, a, Wrap(a))
	if _, ok := Wrap(a).(*Conn); ok {
		t.Fatal("a pipe wrapped")
	}
}
