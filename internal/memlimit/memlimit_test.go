package memlimit

import (
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The limit is what is held plus the headroom, and an operator's
// GOMEMLIMIT is left alone.
func TestBound(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	held := make([]byte, 64<<20)
	for i := range held {
		held[i] = byte(i)
	}
	limit := Bound(Headroom)
	assert.GreaterOrEqual(t, limit, int64(len(held)+Headroom), "the held 64 MiB and the headroom")
	assert.Less(t, limit, int64(len(held)+Headroom+32<<20), "and not much more")
	assert.Equal(t, limit, debug.SetMemoryLimit(-1), "set in the runtime")
	runtime.KeepAlive(held)

	t.Setenv("GOMEMLIMIT", "1GiB")
	assert.Zero(t, Bound(Headroom), "the environment's limit stands")
}

// PeakRSS sees this process take 64 MiB more than it held, and a process
// that exited has none to tell. The 64 MiB are mapped outside Go's heap,
// which could otherwise reuse pages it already held.
func TestPeakRSS(t *testing.T) {
	rss, ok := statusBytes(os.Getpid(), "VmRSS:")
	require.True(t, ok)
	m, err := syscall.Mmap(-1, 0, 64<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	require.NoError(t, err)
	defer syscall.Munmap(m)
	for i := 0; i < len(m); i += 4096 {
		m[i] = 1
	}
	peak, ok := PeakRSS(os.Getpid())
	require.True(t, ok)
	assert.GreaterOrEqual(t, peak, rss+int64(len(m))-8<<20, "the resident set before, and the 64 MiB touched (less what the runtime may have handed back meanwhile)")

	child := exec.Command("true")
	require.NoError(t, child.Run())
	_, ok = PeakRSS(child.Process.Pid)
	assert.False(t, ok, "a process that is gone")
}
