package sockstat

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	n, err := parse([]byte("sockets: used 1771\nTCP: inuse 1463 orphan 0 tw 23932 alloc 1463 mem 118\nUDP: inuse 0 mem 0\n"))
	require.NoError(t, err)
	assert.Equal(t, 23932, n)
	for _, bad := range []string{"", "sockets: used 3\n", "TCP: inuse 3 tw\n", "TCP: inuse 3 tw lots\n"} {
		_, err := parse([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

// A connection the server closes first leaves its socket in TIME_WAIT,
// and the machine's count shows it.
func TestTimeWaitCountsClosedConnections(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc/net/sockstat is Linux's")
	}
	before, err := TimeWait()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const n = 50
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close() // the server closes first: its side waits
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, _ = c.Read(make([]byte, 1)) // until the server's close
		_ = c.Close()
	}
	after, err := TimeWait()
	require.NoError(t, err)
	// Other processes' sockets come and go; ours are 50 more that stay a minute.
	assert.GreaterOrEqual(t, after-before, n/2, "before %d, after %d", before, after)
}

// Drain returns at once when the count is below the mark, and waits, up
// to a cancelled context, while it is not.
func TestDrain(t *testing.T) {
	dir := t.TempDir()
	old := File
	t.Cleanup(func() { File = old })
	File = filepath.Join(dir, "sockstat")
	require.NoError(t, os.WriteFile(File, []byte("TCP: inuse 3 orphan 0 tw 12 alloc 3 mem 1\n"), 0o644))
	before, after, err := Drain(context.Background(), 1000, time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, [2]int{12, 12}, [2]int{before, after})

	require.NoError(t, os.WriteFile(File, []byte("TCP: inuse 3 orphan 0 tw 5000 alloc 3 mem 1\n"), 0o644))
	done := make(chan struct{})
	go func(path string) {
		defer close(done)
		time.Sleep(20 * time.Millisecond)
		// Whole or not at all, as the kernel's file reads.
		_ = os.WriteFile(path+".new", []byte("TCP: inuse 3 orphan 0 tw 40 alloc 3 mem 1\n"), 0o644)
		_ = os.Rename(path+".new", path)
	}(File)
	before, after, err = Drain(context.Background(), 1000, time.Millisecond)
	<-done
	require.NoError(t, err)
	assert.Equal(t, 5000, before)
	assert.Equal(t, 40, after, "it waited until the count fell")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, os.WriteFile(File, []byte("TCP: inuse 3 orphan 0 tw 5000 alloc 3 mem 1\n"), 0o644))
	_, _, err = Drain(ctx, 1000, time.Millisecond)
	assert.ErrorIs(t, err, context.Canceled)

	File = filepath.Join(dir, "missing")
	_, _, err = Drain(context.Background(), 1000, time.Millisecond)
	assert.Error(t, err)
}

// Whatever the file holds, parse answers with a count or an error.
func FuzzParse(f *testing.F) {
	f.Add([]byte("sockets: used 1771\nTCP: inuse 1463 orphan 0 tw 23932 alloc 1463 mem 118\n"))
	f.Add([]byte("TCP: tw\n"))
	f.Add([]byte("TCP: inuse 1 tw -5\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parse(b)
		if err == nil && !bytes.Contains(b, []byte("tw")) {
			t.Fatalf("a count (%d) from a file without tw", n)
		}
	})
}
