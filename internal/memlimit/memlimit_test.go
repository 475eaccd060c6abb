package memlimit

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
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
