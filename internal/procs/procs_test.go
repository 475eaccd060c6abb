package procs

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestHarness(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "") // the operator's choice is tested last
	avail := min(runtime.NumCPU(), runtime.GOMAXPROCS(0))

	got := Harness(0)
	assert.Equal(t, max(1, avail-1), got, "one processor left to the candidate, at least one kept")
	assert.Equal(t, got, runtime.GOMAXPROCS(0), "set in the runtime")

	assert.Equal(t, 3, Harness(3), "an explicit count")
	assert.Equal(t, 3, runtime.GOMAXPROCS(0))

	t.Setenv("GOMAXPROCS", "2")
	assert.Zero(t, Harness(0), "the environment's count stands")
	assert.Equal(t, 3, runtime.GOMAXPROCS(0), "and is not overridden")
}
