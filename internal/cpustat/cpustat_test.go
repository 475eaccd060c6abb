package cpustat

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Spinning one core shows as this process's share, and as busy.
func TestSharesSeeThisProcessWork(t *testing.T) {
	before, err := Read()
	require.NoError(t, err)
	require.Positive(t, before.Cores)
	end := time.Now().Add(300 * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		n++
	}
	after, err := Read()
	require.NoError(t, err)
	s := after.Since(before)
	assert.Positive(t, s.Self, "a core spun for 300 ms (%d rounds)", n)
	assert.GreaterOrEqual(t, s.Busy+0.02, s.Self, "this process's time is part of the busy time")
	assert.InDelta(t, 1, s.Busy+s.Idle+s.Steal, 0.01, "the shares cover all the time")
}

// A process's own figures: this one holds memory; one that is gone is an error.
func TestReadProc(t *testing.T) {
	p, err := ReadProc("self")
	require.NoError(t, err)
	assert.Positive(t, p.RSS)
	_, err = ReadProc("999999999")
	assert.Error(t, err)
}

// A process that has to share the processors with more work than there
// are cores waits for them, and its figures say so.
func TestReadProcSeesRunQueueWait(t *testing.T) {
	if _, err := os.Stat("/proc/self/schedstat"); err != nil {
		t.Skip("this kernel keeps no scheduler statistics")
	}
	var spinners []*exec.Cmd
	for range runtime.NumCPU() + 1 {
		c := exec.Command("sh", "-c", "while :; do :; done")
		require.NoError(t, c.Start())
		spinners = append(spinners, c)
	}
	t.Cleanup(func() {
		for _, c := range spinners {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	pid := strconv.Itoa(spinners[0].Process.Pid)
	before, err := ReadProc(pid)
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	after, err := ReadProc(pid)
	require.NoError(t, err)
	assert.Positive(t, after.Wait-before.Wait, "one of %d spinners on %d cores waited", len(spinners), runtime.NumCPU())
	assert.Positive(t, after.CPU-before.CPU, "and ran")
}
