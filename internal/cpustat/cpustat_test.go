package cpustat

import (
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
